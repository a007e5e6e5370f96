rule evaluate:
    """Benchmarks of the dataset on one trained target model → long-format rows (built-in evaluator on the
    embedded sets, or lmms-eval on the real benchmarks: the same rows either way). One job per model runs every
    benchmark (part ""); with evaluation.jobs: per_task one job per benchmark writes its own part
    (".<benchmark>"), and the report reads every part."""
    input:
        data="results/{dataset}/data",
        model="results/{dataset}/target/{instance}/r{ratio}_s{seed}/model",
    output:
        rows="results/{dataset}/eval/{instance}/r{ratio}_s{seed}{part}.csv",
        predictions="results/{dataset}/eval/{instance}/r{ratio}_s{seed}{part}.predictions.json",
        per_item="results/{dataset}/eval/{instance}/r{ratio}_s{seed}{part}.items.csv",
    params:
        benchmarks=lambda w: part_benchmarks(w.dataset, w.part),
        template=settings("models.target.template", config["models"]["target"]["template"]),
        key=lambda w: json.dumps({"dataset": w.dataset, "method": w.instance,
                                  "ratio": float(w.ratio), "seed": int(w.seed)}),
        batch=config["evaluation"].get("batch_size", 1),
        backend=config["evaluation"].get("backend", "builtin"),
        backend_settings=settings("evaluation.backend", config["evaluation"].get("lmms_eval", {})),
    threads: threads_for("evaluate")
    resources:
        **evaluate_resources(),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/evaluate_{instance}_r{ratio}_s{seed}{part}.log",
    benchmark:
        "results/benchmarks/{dataset}/evaluate_{instance}_r{ratio}_s{seed}{part}.tsv"
    shell:
        "python -m selectbench.cli evaluate --model {input.model} --data {input.data} --benchmarks {params.benchmarks}"
        " --template {params.template} --key {params.key:q} --out {output.rows}"
        " --predictions {output.predictions} --items {output.per_item} --batch-size {params.batch} --threads {threads}"
        " --backend {params.backend} --settings {params.backend_settings} > {log} 2>&1"
