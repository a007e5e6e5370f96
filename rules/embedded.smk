# The embedded default's pretrained parts, rebuilt by the digits recipe (config/embedded_parts.yaml):
#   snakemake --cores all --configfile config/embedded_parts.yaml embedded_parts
# The base models and CLIP come from rules/models.smk with the digits_recipe builders, which train on this
# tokenizer.


rule tokenizer:
    """A tokenizer fitted to the dataset, for builders that train on it (the embedded parts recipe)."""
    input:
        data="results/{dataset}/data",
    output:
        directory("results/{dataset}/tokenizer"),
    params:
        vocab=lambda w: config["tokenizer"]["vocab_size"],
    resources:
        **rule_resources("tokenizer"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/tokenizer.log",
    benchmark:
        "results/benchmarks/{dataset}/tokenizer.tsv"
    shell:
        "python -m selectbench.embedded.tokenizer --data {input.data} --vocab-size {params.vocab} --out {output} > {log} 2>&1"


rule embedded_parts:
    """Target: every dataset's packed parts (install them with python -m selectbench.embedded.parts install)."""
    input:
        [f"results/{dataset}/parts/MANIFEST.json" for dataset in config["datasets"]],


rule pack_parts:
    """Target base, proxy base and CLIP of a dataset, with the sha256 of every file and what built them."""
    input:
        target="results/{dataset}/base/target/model",
        proxy="results/{dataset}/base/proxy/model",
        clip="results/{dataset}/clip/model.json",
    output:
        "results/{dataset}/parts/MANIFEST.json",
    params:
        out=lambda w, output: os.path.dirname(output[0]),
        clip=lambda w: f"results/{w.dataset}/clip/model",
        recipe=lambda w: settings("parts", {"models": config["models"], "clip": config["clip"],
                                            "tokenizer": config.get("tokenizer"), "threads": config["threads"],
                                            "dataset": config["datasets"][w.dataset]}),
        command=f"snakemake --cores all --configfile config/embedded_parts.yaml embedded_parts",
    resources:
        **rule_resources("pack_parts"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/pack_parts.log",
    benchmark:
        "results/benchmarks/{dataset}/pack_parts.tsv"
    shell:
        "python -m selectbench.embedded.parts pack --part target={input.target} --part proxy={input.proxy}"
        " --part clip={params.clip} --config {params.recipe} --built-by {params.command:q} --out {params.out}"
        " > {log} 2>&1"
