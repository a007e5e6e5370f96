rule train_target:
    """Stage-2 instruction tuning of the target's base model on one subset."""
    input:
        data="results/{dataset}/data",
        base="results/{dataset}/base/target/model",
        subset="results/{dataset}/subsets/{instance}/r{ratio}_s{seed}.json",
    output:
        model=directory("results/{dataset}/target/{instance}/r{ratio}_s{seed}/model"),
        summary="results/{dataset}/target/{instance}/r{ratio}_s{seed}/train_summary.json",
    params:
        cfg=model_config("target"),
        out=lambda w, output: os.path.dirname(output.summary),
        base=lambda w, input: os.path.dirname(input.base),
        launch=launcher("train_target"),
        threads=rank_threads("train_target"),
    threads: threads_for("train_target")
    resources:
        **rule_resources("train_target"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/train_target_{instance}_r{ratio}_s{seed}.log",
    benchmark:
        "results/benchmarks/{dataset}/train_target_{instance}_r{ratio}_s{seed}.tsv"
    shell:
        "{params.launch} -m selectbench.cli finetune --data {input.data} --base {params.base} --subset {input.subset}"
        " --model-config {params.cfg} --seed {wildcards.seed} --out {params.out}"
        " --threads {params.threads} > {log} 2>&1"


# The full-data reference is the longest training and every relative number waits for it: start it first.
use rule train_target as train_reference with:
    wildcard_constraints:
        instance=REFERENCE,
        ratio="1",
    priority: 10


ruleorder: train_reference > train_target


rule self_filter_train:
    """Self-Filter's stage 1: the target trained on the whole pool jointly with a score net over CLIP embeddings
    (a full-data training); the score net is what the method keeps."""
    input:
        data="results/{dataset}/data",
        base="results/{dataset}/base/target/model",
        features=default_feature_path("clip_embeddings"),
    output:
        "results/{dataset}/self_filter/scorer.json",
    params:
        cfg=model_config("target"),
        seed=config["reference_seeds"][0],
        out=lambda w, output: os.path.join(os.path.dirname(output[0]), "run"),
        base=lambda w, input: os.path.dirname(input.base),
        launch=launcher("self_filter_train"),
        threads=rank_threads("self_filter_train"),
    threads: threads_for("self_filter_train")
    resources:
        **rule_resources("self_filter_train"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/self_filter_train.log",
    benchmark:
        "results/benchmarks/{dataset}/self_filter_train.tsv"
    shell:
        "{params.launch} -m selectbench.cli self-filter-train --data {input.data} --base {params.base}"
        " --features {input.features} --model-config {params.cfg} --seed {params.seed} --out-dir {params.out}"
        " --out {output} --threads {params.threads} > {log} 2>&1"
