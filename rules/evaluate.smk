rule evaluate:
    """Every benchmark of the dataset on one trained target model → long-format rows."""
    input:
        data="results/{dataset}/data",
        model="results/{dataset}/target/{instance}/r{ratio}_s{seed}/model",
    output:
        rows="results/{dataset}/eval/{instance}/r{ratio}_s{seed}.csv",
        predictions="results/{dataset}/eval/{instance}/r{ratio}_s{seed}.predictions.json",
    params:
        benchmarks=lambda w: config["datasets"][w.dataset]["benchmarks"],
        template=json.dumps(config["models"]["target"]["template"]),
        key=lambda w: json.dumps({"dataset": w.dataset, "method": w.instance,
                                  "ratio": float(w.ratio), "seed": int(w.seed)}),
        batch=config["evaluation"]["batch_size"],
    threads: threads_for("evaluate")
    conda:
        "../envs/selectbench.yaml"
    log:
        "results/logs/{dataset}/evaluate_{instance}_r{ratio}_s{seed}.log",
    benchmark:
        "results/benchmarks/{dataset}/evaluate_{instance}_r{ratio}_s{seed}.tsv"
    shell:
        "python -m selectbench.cli evaluate --model {input.model} --data {input.data} --benchmarks {params.benchmarks}"
        " --template {params.template:q} --key {params.key:q} --out {output.rows}"
        " --predictions {output.predictions} --batch-size {params.batch} --threads {threads} > {log} 2>&1"
