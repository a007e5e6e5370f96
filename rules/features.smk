rule feature_shard:
    """One shard of a shared per-example feature (e.g. XMAS trajectories over every proxy checkpoint)."""
    input:
        unpack(feature_inputs),
    output:
        "results/{dataset}/features/{feature}/{spec}/shard{shard}-of-{shards}.npz",
    params:
        spec=lambda w: json.dumps(FEATURE_SPECS[(w.feature, w.spec)]),
        inputs=lambda w: json.dumps(feature_inputs(w)),
        cfg=lambda w: model_config(FEATURES[w.feature].model),
        methods=METHOD_DIRS,
        batch=feature_batch_size,
        device=config["features"].get("device", "auto"),
        dtype=config["features"].get("dtype", "float32"),
    threads: threads_for("feature_shard")
    resources:
        **rule_resources("feature_shard"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/feature_{feature}_{spec}_shard{shard}-of-{shards}.log",
    benchmark:
        "results/benchmarks/{dataset}/feature_{feature}_{spec}_shard{shard}-of-{shards}.tsv"
    shell:
        "python -m selectbench.cli feature-shard --feature {wildcards.feature} --methods-dir {params.methods}"
        " --spec {params.spec:q}"
        " --data {input.pool} --inputs {params.inputs:q} --model-config {params.cfg}"
        " --shard {wildcards.shard} --shards {wildcards.shards} --batch-size {params.batch}"
        " --device {params.device} --dtype {params.dtype} --out {output} --threads {threads} > {log} 2>&1"


rule feature_gather:
    """Shards → one pool-aligned array file, identical whatever the shard count."""
    input:
        data="results/{dataset}/data",
        shards=feature_shards,
    output:
        "results/{dataset}/features/{feature}/{spec}.npz",
    resources:
        **rule_resources("feature_gather"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/feature_{feature}_{spec}_gather.log",
    benchmark:
        "results/benchmarks/{dataset}/feature_{feature}_{spec}_gather.tsv"
    shell:
        "python -m selectbench.cli feature-gather --data {input.data} --shards {input.shards}"
        " --out {output} > {log} 2>&1"
