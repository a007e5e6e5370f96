rule prepare_data:
    """The dataset from its source (selectbench.registry), validated and published as one data folder."""
    output:
        directory("results/{dataset}/data"),
    params:
        cfg=lambda w: settings(f"datasets.{w.dataset}", config["datasets"][w.dataset]),
    resources:
        **rule_resources("prepare_data"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/prepare_data.log",
    benchmark:
        "results/benchmarks/{dataset}/prepare_data.tsv"
    shell:
        "python -m selectbench.cli prepare --dataset-config {params.cfg} --out {output} > {log} 2>&1"
