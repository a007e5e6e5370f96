rule base_model:
    """The starting model of a role (proxy or target), once per dataset, by the builder its config names: loaded or
    assembled from `pretrained` parts (stage 1 only if configured), or built by a recipe."""
    input:
        unpack(base_model_inputs),
    output:
        model=directory("results/{dataset}/base/{role}/model"),
        summary="results/{dataset}/base/{role}/train_summary.json",
    params:
        cfg=lambda w: model_config(w.role),
        parts=lambda w: parts_fingerprint(config["models"][w.role].get("pretrained")),
        out=lambda w, output: os.path.dirname(output.summary),
        tokenizer=tokenizer_arg,
        launch=launcher("base_model"),
        threads=rank_threads("base_model"),
    threads: threads_for("base_model")
    resources:
        **rule_resources("base_model"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/base_{role}.log",
    benchmark:
        "results/benchmarks/{dataset}/base_{role}.tsv"
    shell:
        "{params.launch} -m selectbench.cli base --data {input.data} {params.tokenizer} --model-config {params.cfg}"
        " --out {params.out} --threads {params.threads} > {log} 2>&1"


rule proxy_finetune:
    """The proxy fine-tuned on the whole pool with checkpoints: shared by every method that needs it."""
    input:
        data="results/{dataset}/data",
        base="results/{dataset}/base/proxy/model",
    output:
        "results/{dataset}/proxy/finetune/checkpoints.json",
    params:
        cfg=model_config("proxy"),
        out=lambda w, output: os.path.dirname(output[0]),
        base=lambda w, input: os.path.dirname(input.base),
        launch=launcher("proxy_finetune"),
        threads=rank_threads("proxy_finetune"),
    threads: threads_for("proxy_finetune")
    resources:
        **rule_resources("proxy_finetune"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/proxy_finetune.log",
    benchmark:
        "results/benchmarks/{dataset}/proxy_finetune.tsv"
    shell:
        "{params.launch} -m selectbench.cli finetune --data {input.data} --base {params.base} --model-config {params.cfg}"
        " --out {params.out} --checkpoint-list {output} --threads {params.threads} > {log} 2>&1"


rule clip_model:
    """CLIP for clip_score, from the CLIP builder the config names: a pretrained one, or one trained here."""
    input:
        unpack(clip_inputs),
    output:
        "results/{dataset}/clip/model.json",
    params:
        cfg=settings("clip", config["clip"]),
        parts=parts_fingerprint({"pretrained": config["clip"].get("pretrained")}),
        model_dir=lambda w, output: os.path.join(os.path.dirname(output[0]), "model"),
        tokenizer=tokenizer_arg,
    threads: threads_for("clip_model")
    resources:
        **rule_resources("clip_model"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/clip_model.log",
    benchmark:
        "results/benchmarks/{dataset}/clip_model.tsv"
    shell:
        "python -m selectbench.cli clip --data {input.data} {params.tokenizer} --config {params.cfg}"
        " --model-dir {params.model_dir} --out {output} --threads {threads} > {log} 2>&1"


rule gradient_warmup:
    """LESS's warm-up: a short LoRA run of the proxy (its base, or a checkpoint of its fine-tune) on a seeded
    fraction of the pool (Adam state kept)."""
    input:
        unpack(gradient_warmup_inputs),
    output:
        "results/{dataset}/gradient/warmup.json",
    params:
        cfg=model_config("proxy"),
        warmup=json.dumps(config["gradient_warmup"]),
        start=gradient_warmup_start,
        out=lambda w, output: os.path.join(os.path.dirname(output[0]), "warmup"),
        launch=launcher("gradient_warmup"),
        threads=rank_threads("gradient_warmup"),
    threads: threads_for("gradient_warmup")
    resources:
        **rule_resources("gradient_warmup"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/gradient_warmup.log",
    benchmark:
        "results/benchmarks/{dataset}/gradient_warmup.tsv"
    shell:
        "{params.launch} -m selectbench.cli gradient-warmup --data {input.data} {params.start} --model-config {params.cfg}"
        " --warmup {params.warmup:q} --out-dir {params.out} --out {output} --threads {params.threads} > {log} 2>&1"
