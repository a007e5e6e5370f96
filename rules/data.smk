rule prepare_data:
    output:
        directory("results/{dataset}/data"),
    params:
        cfg=lambda w: json.dumps(config["datasets"][w.dataset]),
    resources:
        **rule_resources("prepare_data"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/prepare_data.log",
    benchmark:
        "results/benchmarks/{dataset}/prepare_data.tsv"
    shell:
        "python -m selectbench.cli prepare --dataset-config {params.cfg:q} --out {output} > {log} 2>&1"
