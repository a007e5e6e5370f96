rule score:
    """A method's expensive scoring, once per dataset and method instance (shared by all ratios/seeds)."""
    input:
        unpack(artifact_inputs),
        data="results/{dataset}/data",
    output:
        "results/{dataset}/scores/{instance}.npz",
    params:
        instance=lambda w: instance_settings(w.instance),
        artifacts=lambda w: json.dumps(artifact_inputs(w)),
        methods=METHOD_DIRS,
    threads: threads_for("score")
    resources:
        **rule_resources("score"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/score_{instance}.log",
    benchmark:
        "results/benchmarks/{dataset}/score_{instance}.tsv"
    shell:
        "python -m selectbench.cli score --methods-dir {params.methods} --data {input.data} --dataset {wildcards.dataset}"
        " --instance {params.instance} --artifacts {params.artifacts:q} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule select:
    """Seconds: a subset for one ratio and seed from the stored scores."""
    input:
        data="results/{dataset}/data",
        scores="results/{dataset}/scores/{instance}.npz",
    output:
        "results/{dataset}/subsets/{instance}/r{ratio}_s{seed}.json",
    params:
        instance=lambda w: instance_settings(w.instance),
        methods=METHOD_DIRS,
    resources:
        **rule_resources("select"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/select_{instance}_r{ratio}_s{seed}.log",
    benchmark:
        "results/benchmarks/{dataset}/select_{instance}_r{ratio}_s{seed}.tsv"
    shell:
        "python -m selectbench.cli select --methods-dir {params.methods} --data {input.data} --dataset {wildcards.dataset}"
        " --instance {params.instance} --scores {input.scores} --ratio {wildcards.ratio}"
        " --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule export_subset:
    """A subset's records themselves, in LLaVA format with their original ids, for training outside the suite."""
    input:
        data="results/{dataset}/data",
        subset="results/{dataset}/subsets/{instance}/r{ratio}_s{seed}.json",
    output:
        "results/{dataset}/subsets/{instance}/r{ratio}_s{seed}.records.json",
    resources:
        **rule_resources("export_subset"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/export_subset_{instance}_r{ratio}_s{seed}.log",
    benchmark:
        "results/benchmarks/{dataset}/export_subset_{instance}_r{ratio}_s{seed}.tsv"
    shell:
        "python -m selectbench.cli export-subset --data {input.data} --subset {input.subset} --out {output} > {log} 2>&1"
