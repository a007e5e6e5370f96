# Shared helpers: method discovery, instance expansion, artifact paths, and the list of final outputs.
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from selectbench import cluster, registry
from selectbench.config import check_seams, settings_file
from selectbench.features import spec_label, with_plugins
from selectbench.models.locate import fingerprint
from selectbench.selection.registry import Instance, discover, expand, reference_method

# Jobs call `python -m selectbench.cli`: by default that is the interpreter running Snakemake (its bin folder goes
# first on PATH, so a virtual environment works unactivated); with --use-conda, the rule's conda env's python.
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
if not USE_CONDA:
    shell.prefix(f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')
# methods/ and any folders the config adds (`method_dirs`, e.g. a lab's own plug-ins kept outside this repo)
METHOD_DIRS = [str(Path(workflow.basedir) / "methods"), *(str(Path(d).resolve()) for d in config.get("method_dirs", []))]
# With --use-conda every job runs in this env (relative to rules/): the CPU one, or envs/paper.yaml at scale.
CONDA_ENV = config.get("conda_env", "../envs/selectbench.yaml")
AVAILABLE = discover(METHOD_DIRS)
# built-in per-example features and those the method plug-ins declare
FEATURES = with_plugins(AVAILABLE)
REFERENCE = reference_method(AVAILABLE)
INSTANCES = {i.label: i for i in expand(config["methods"], AVAILABLE)}
INSTANCES.setdefault(REFERENCE, Instance(REFERENCE, REFERENCE, ()))


def _check_benchmarks():
    """Benchmarks must have a scorer on the evaluation backend (selectbench/evaluation/specs.py); judge-scored
    lmms-eval tasks need a judge. Checked when the DAG is planned, so a bad setting stops the run before any model
    is trained."""
    from selectbench.evaluation.specs import check_backend

    backend = config["evaluation"].get("backend", "builtin")
    for name, ds in config["datasets"].items():
        where = f"datasets.{name}.benchmarks"
        check_backend(ds["benchmarks"], backend, where)
        if backend == "lmms_eval":
            from selectbench.evaluation import lmms

            lmms_cfg = lmms.LmmsConfig.from_dict(config["evaluation"].get("lmms_eval"))
            per_task = config["evaluation"].get("jobs", "per_model") == "per_task"
            try:  # the tasks of each evaluate job (one run of lmms-eval)
                for tasks in ([[b] for b in ds["benchmarks"]] if per_task else [ds["benchmarks"]]):
                    lmms.check_tasks(tasks, lmms_cfg)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            judge = lmms_cfg.judge
            if judge and any(lmms.TASKS[t].judge for t in ds["benchmarks"]):
                try:
                    judge.env()
                except ValueError as err:  # the jobs, not the planner, need the key: warn, do not stop a dry run
                    sys.stderr.write(f"warning: {name}: {err}\n")


_check_benchmarks()
check_seams(config)

# Instances that select with evaluation-task data (e.g. gradient target=validation): marked in the tables.
TASK_AWARE = sorted(label for label, inst in INSTANCES.items()
                    if AVAILABLE[inst.method].task_aware(inst.param_dict))

# Shared artifacts a method can require (selectbench.selection.base.ARTIFACTS): computed once per dataset.
# The full-data target is the reference run of the first reference seed (the table's own "full" row).
REFERENCE_RUN = f"results/{{dataset}}/target/{REFERENCE}/r1_s{config['reference_seeds'][0]}"
ARTIFACT_PATHS = {
    "pool": "results/{dataset}/data",
    "proxy_checkpoints": "results/{dataset}/proxy/finetune/checkpoints.json",
    "clip_model": "results/{dataset}/clip/model.json",
    "gradient_warmup": "results/{dataset}/gradient/warmup.json",
    "target_full": f"{REFERENCE_RUN}/train_summary.json",
    "self_filter_scorer": "results/{dataset}/self_filter/scorer.json",
}
FEATURE_PATH = "results/{dataset}/features/{feature}/{spec}.npz"
# Features read by the job making an artifact (at their default spec), e.g. CLIP embeddings by Self-Filter's
# score net
ARTIFACT_FEATURES = {"self_filter_scorer": ("clip_embeddings",)}


def required(label):
    """The artifacts and features scoring the instance reads (Method.required of its parameters)."""
    inst = INSTANCES[label]
    return AVAILABLE[inst.method].required(inst.param_dict)


def feature_spec(label, feature):
    inst = INSTANCES[label]
    return FEATURES[feature].spec(AVAILABLE[inst.method].feature_spec(feature, inst.param_dict))


def default_feature_path(feature):
    """The file of a feature at its defaults (what an artifact's rule reads)."""
    return FEATURE_PATH.format(dataset="{dataset}", feature=feature, spec=spec_label(FEATURES[feature].spec()))


# Every (feature, spec) some instance or artifact needs, by path label: instances asking for the same spec
# share it.
FEATURE_SPECS = {}
for _label, _inst in INSTANCES.items():
    for _name in required(_label):
        if _name in FEATURES:
            _spec = feature_spec(_label, _name)
            FEATURE_SPECS[(_name, spec_label(_spec))] = _spec
        for _feature in ARTIFACT_FEATURES.get(_name, ()):
            FEATURE_SPECS[(_feature, spec_label(FEATURES[_feature].spec()))] = FEATURES[_feature].spec()


wildcard_constraints:
    # the configured names only: "digits_costs.csv" must not read as a dataset called digits_costs
    dataset="|".join(re.escape(d) for d in config["datasets"]),
    instance=r"[A-Za-z0-9_.=+-]+",
    ratio=r"[0-9.]+",
    feature="|".join(FEATURES),
    spec=r"[A-Za-z0-9_.+-]+",
    shard=r"[0-9]+",
    seed=r"[0-9]+",
    role=r"proxy|target",
    # the benchmark of a per-task evaluate job's files (".<benchmark>"), empty for a per-model job (EVAL_PARTS)
    part=r"(\.(" + "|".join(re.escape(b) for b in sorted({b for d in config["datasets"].values()
                                                           for b in d["benchmarks"]})) + r"))?",


RESOURCES = config.get("resources", {})
for _role, _model in config["models"].items():
    if _model.get("stage1"):
        cluster.require_gpu(RESOURCES, "base_model", f"models.{_role}.stage1 trains the {_role} base in base_model")


def rule_resources(rule_name):
    return cluster.rule_resources(RESOURCES, rule_name)


def threads_for(rule_name):
    return cluster.threads(RESOURCES, config["threads"], rule_name)


def launcher(rule_name):
    return cluster.launcher(RESOURCES, rule_name, config.get("launcher"))


def rank_threads(rule_name):
    """Params function: torch threads per process of a launched job (the job's threads over its ranks)."""
    ranks = cluster.ranks(RESOURCES, rule_name)
    return lambda wildcards, threads: cluster.threads_per_process(threads, ranks)


def ratios_for(dataset):
    return config["datasets"][dataset].get("ratios", config["ratios"])


def fmt_ratio(ratio):
    return f"{float(ratio):g}"


def instance_settings(label):
    inst = INSTANCES[label]
    return settings(f"instance.{label}", {"label": inst.label, "method": inst.method, "params": inst.param_dict})


def artifact_inputs(wildcards):
    out = {}
    for name in required(wildcards.instance):
        if name in FEATURES:
            label = spec_label(feature_spec(wildcards.instance, name))
            out[name] = FEATURE_PATH.format(dataset=wildcards.dataset, feature=name, spec=label)
        else:
            out[name] = ARTIFACT_PATHS[name].format(dataset=wildcards.dataset)
    return out


def feature_inputs(wildcards):
    """The artifacts a feature's extraction reads."""
    return {name: ARTIFACT_PATHS[name].format(dataset=wildcards.dataset)
            for name in FEATURES[wildcards.feature].requires}


def feature_shards(wildcards):
    n = config["features"]["shards"]
    return [f"results/{wildcards.dataset}/features/{wildcards.feature}/{wildcards.spec}/shard{i}-of-{n}.npz"
            for i in range(n)]


def runs(dataset):
    """(instance, ratio, seed) of every target model the dataset's table needs."""
    out = [(REFERENCE, "1", seed) for seed in config["reference_seeds"]]
    for label in INSTANCES:
        if label != REFERENCE:
            out += [(label, fmt_ratio(r), s) for r in ratios_for(dataset) for s in config["seeds"]]
    return out


# evaluation.jobs: per_model runs every benchmark of a model in one evaluate job (the embedded default: one Python
# start-up per model); per_task runs one job per model and benchmark, sized by resources.evaluate_runtime (paper
# scale: a 7B model's ~250k answers do not fit one job's time limit, and a retry then repeats one task at most).
EVAL_JOBS = config["evaluation"].get("jobs", "per_model")


def eval_parts(dataset):
    """The part of each evaluate job's file names for one model: "" (one job, every benchmark) or ".<benchmark>"."""
    if EVAL_JOBS == "per_task":
        return [f".{b}" for b in config["datasets"][dataset]["benchmarks"]]
    return [""]


def part_benchmarks(dataset, part):
    """The benchmarks an evaluate job runs: its part's one, or every benchmark of the dataset."""
    return [part[1:]] if part else config["datasets"][dataset]["benchmarks"]


def eval_files(wildcards):
    return [f"results/{wildcards.dataset}/eval/{i}/r{r}_s{s}{p}.csv"
            for i, r, s in runs(wildcards.dataset) for p in eval_parts(wildcards.dataset)]


def item_files(wildcards):
    return [f"results/{wildcards.dataset}/eval/{i}/r{r}_s{s}{p}.items.csv"
            for i, r, s in runs(wildcards.dataset) for p in eval_parts(wildcards.dataset)]


def evaluate_resources():
    """evaluate's resources, its runtime per job where resources.evaluate_runtime sizes it per benchmark."""
    from selectbench.evaluation.specs import BENCHMARKS

    unknown = sorted(set(RESOURCES.get("evaluate_runtime") or {}) - set(BENCHMARKS))
    if unknown:  # a misspelt task would silently get the rule's runtime
        raise ValueError(f"resources.evaluate_runtime: {unknown} are not benchmarks (known: {sorted(BENCHMARKS)})")
    minutes = {(d, p): cluster.evaluate_runtime(RESOURCES, part_benchmarks(d, p))
               for d in config["datasets"] for p in eval_parts(d)}
    if None in minutes.values():
        return rule_resources("evaluate")
    return cluster.rule_resources(RESOURCES, "evaluate",
                                  per_job={"runtime": (lambda w: minutes[(w.dataset, w.part)], set(minutes.values()))})


def final_outputs():
    out = []
    for dataset in config["datasets"]:
        if config.get("export_subsets"):
            out += [f"results/{dataset}/subsets/{i}/r{r}_s{s}.records.json"
                    for i, r, s in runs(dataset) if i != REFERENCE]
        out += [f"results/tables/{dataset}.{ext}" for ext in ("csv", "md", "tex", "provenance.json")]
        out += [f"results/tables/{dataset}_comparisons.{ext}" for ext in ("csv", "md")]
        out += [f"results/tables/{dataset}_published.{ext}" for ext in ("csv", "md", "tex")]
        out += [f"results/plots/{dataset}_relative.{ext}" for ext in ("png", "pdf")]
    out += [f"results/tables/overview.{ext}" for ext in ("csv", "md")]
    out += [f"results/plots/overview.{ext}" for ext in ("png", "pdf")]
    return out


def _with_tokenizer(wildcards, needed):
    """The data folder, and the dataset's tokenizer where a builder trains on it (pretrained ones bring their own)."""
    out = {"data": f"results/{wildcards.dataset}/data"}
    if needed:
        out["tokenizer"] = f"results/{wildcards.dataset}/tokenizer"
    return out


def base_model_inputs(wildcards):
    return _with_tokenizer(wildcards, registry.needs_tokenizer("builder", config["models"][wildcards.role].get("builder")))


def clip_inputs(wildcards):
    return _with_tokenizer(wildcards, registry.needs_tokenizer("clip_builder", config["clip"].get("builder")))


def parts_fingerprint(section):
    """Digests of the pretrained parts a section names (shipped or local folders by content), so that a rebuilt or
    replaced part re-runs what was built from it."""
    names = [v for v in (section or {}).values() if isinstance(v, str)]
    return {name: fingerprint(name) for name in sorted(names)}


def tokenizer_arg(wildcards, input):
    """--tokenizer for a job whose inputs include the dataset's tokenizer, else nothing."""
    return f"--tokenizer {input.tokenizer}" if "tokenizer" in input.keys() else ""


def config_digest():
    """sha256 of the effective configuration (every config file and --config merged), recorded with the tables."""
    import hashlib

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def settings(name, section):
    """A config section for a job: "@<file>" naming its content-addressed settings file (selectbench.config)."""
    return f"@{settings_file(name, section)}"


def model_config(role):
    return settings(f"models.{role}", config["models"][role])


def feature_batch_size(wildcards):
    """Examples per batch of a feature pass: features.batch_size, or for the per-example gradients (a backward pass
    that keeps every layer's activations and each example's full LoRA gradient) features.gradient_batch_size where
    set."""
    if wildcards.feature == "lora_gradients":
        return config["features"].get("gradient_batch_size", config["features"]["batch_size"])
    return config["features"]["batch_size"]


def gradient_warmup_inputs(wildcards):
    """The data and the warm-up's start (gradient_warmup.start): the proxy base, or the proxy fine-tune's checkpoint
    list (the warm-up then waits for the fine-tune and starts from one of its checkpoints, connector trained)."""
    out = {"data": f"results/{wildcards.dataset}/data"}
    if config["gradient_warmup"].get("start", "base") == "proxy_checkpoint":
        out["checkpoints"] = ARTIFACT_PATHS["proxy_checkpoints"].format(dataset=wildcards.dataset)
    else:
        out["base"] = f"results/{wildcards.dataset}/base/proxy/model"
    return out


def gradient_warmup_start(wildcards, input):
    """--base (the proxy base's folder) or --checkpoints (the fine-tune's checkpoint list)."""
    if "checkpoints" in input.keys():
        return f"--checkpoints {input.checkpoints}"
    return f"--base {os.path.dirname(input.base)}"


def _job(name, rule):
    """A job of the cost plan: its benchmark record's name (results/benchmarks/<dataset>/<name>.tsv), its rule and
    the GPUs that rule asks for (0 where the config's resources request none, as on a laptop)."""
    return {"job": name, "rule": rule, "gpus": int(cluster.resource_spec(RESOURCES, rule).get("gpu", 0))}


def _base_jobs(role):
    tokenizer = [_job("tokenizer", "tokenizer")] if registry.needs_tokenizer(
        "builder", config["models"][role].get("builder")) else []
    return tokenizer + [_job(f"base_{role}", "base_model")]


def _artifact_jobs(name, label):
    """Every job that produces a shared artifact or feature an instance requires, its own inputs first."""
    if name in FEATURES:
        return _feature_jobs(name, spec_label(feature_spec(label, name)), label)
    clip_tokenizer = registry.needs_tokenizer("clip_builder", config["clip"].get("builder"))
    jobs = {  # built on demand: an artifact's jobs may include another artifact's
        "pool": lambda: [],  # prepared for every run, the full-data training included: not a selection cost
        "proxy_checkpoints": lambda: _base_jobs("proxy") + [_job("proxy_finetune", "proxy_finetune")],
        "clip_model": lambda: (([_job("tokenizer", "tokenizer")] if clip_tokenizer else [])
                               + [_job("clip_model", "clip_model")]),
        "gradient_warmup": lambda: (_base_jobs("proxy") + warmup_start_jobs()
                                    + [_job("gradient_warmup", "gradient_warmup")]),
        # the full-data training is the reference row's own job: counted again in every instance scored with it
        "target_full": lambda: [_job(f"train_target_{REFERENCE}_r1_s{config['reference_seeds'][0]}", "train_target")],
        "self_filter_scorer": lambda: ([j for f in ARTIFACT_FEATURES["self_filter_scorer"]
                                        for j in _feature_jobs(f, spec_label(FEATURES[f].spec()), label)]
                                       + [_job("self_filter_train", "self_filter_train")]),
    }
    return jobs[name]()


def _feature_jobs(name, spec, label):
    """A feature's extraction jobs (its own inputs' jobs first): shards and gather."""
    n = config["features"]["shards"]
    return ([j for need in FEATURES[name].requires for j in _artifact_jobs(need, label)]
            + [{**_job(f"feature_{name}_{spec}_shard{i}-of-{n}", "feature_shard"), "feature": name}
               for i in range(n)]
            + [_job(f"feature_{name}_{spec}_gather", "feature_gather")])


def warmup_start_jobs():
    """The jobs the gradient warm-up's start weights come from beyond the proxy base: the whole proxy fine-tune
    when it starts from one of its checkpoints (gradient_warmup.start: proxy_checkpoint), counted in full like
    every shared job, though the warm-up reads only one of its checkpoints."""
    if config["gradient_warmup"].get("start", "base") == "proxy_checkpoint":
        return [_job("proxy_finetune", "proxy_finetune")]
    return []


def cost_plan(dataset):
    """Which job records make up each instance's cost (selectbench.report.costs): the shared jobs its scoring
    needs (each counted in full for every instance that needs it, once per instance), its score, and per ratio
    and seed its select, target training and evaluation; "common" jobs serve every run alike."""
    common = [_job("prepare_data", "prepare_data"), *_base_jobs("target")]
    jobs = [{**j, "stage": "common"} for j in common]
    for label, inst in INSTANCES.items():
        shared = {}
        for name in required(label):
            shared.update({j["job"]: j for j in _artifact_jobs(name, label)})
        for j in common:
            shared.pop(j["job"], None)
        jobs += [{**j, "stage": "shared", "instance": label} for j in shared.values()]
        jobs.append({**_job(f"score_{label}", "score"), "stage": "score", "instance": label})
        for i, r, s in runs(dataset):
            if i == label:
                run = {"instance": label, "ratio": float(r), "seed": int(s)}
                jobs += [{**_job(f"select_{label}_r{r}_s{s}", "select"), "stage": "select", **run},
                         {**_job(f"train_target_{label}_r{r}_s{s}", "train_target"), "stage": "train", **run}]
                jobs += [{**_job(f"evaluate_{label}_r{r}_s{s}{p}", "evaluate"), "stage": "evaluate", **run}
                         for p in eval_parts(dataset)]
    return {"dataset": dataset, "reference": REFERENCE, "jobs": jobs}


def cost_outputs():
    """Every dataset's cost table and plot (rule costs)."""
    return [path for dataset in config["datasets"]
            for path in (f"results/tables/{dataset}_costs.csv", f"results/tables/{dataset}_costs.md",
                         f"results/plots/{dataset}_cost.png", f"results/plots/{dataset}_cost.pdf")]
