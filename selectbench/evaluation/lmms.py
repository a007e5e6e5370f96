"""Paper-scale evaluation through lmms-eval: refuse what would silently corrupt numbers, build and run the
lmms-eval command, then read lmms-eval's own results and samples files into the same long-format rows as the
built-in evaluator (values in percent), each labelled with its protocol.

Failures lmms-eval does not report are checked here: judge-scored tasks without a judge (mmvet scores every
answer 0, mmbench picks random letters for answers its rules cannot parse), a run that exits 0 without a results
file (the CLI does so when the model fails to load), empty answers (llava_hf returns "" when generation fails,
scored as wrong), counted from the logged samples, and judge calls that failed with a key set (MM-Vet grades 0.0,
MMBench random letters), counted per task.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path

from selectbench.evaluation import responses
from selectbench.evaluation.items import item_rows, write_items
from selectbench.evaluation.specs import TASKS, TaskSpec
from selectbench.models.locate import fingerprint

log = logging.getLogger(__name__)

PINNED_VERSION = "0.7.3"
RESULTS_SUFFIX = "_results.json"
# MMBench's random-letter fallbacks leave no trace in lmms-eval's files: the entry point (lmms_model) records them
# here, in the run's output folder, named by this environment variable
FALLBACKS_FILE = "judge_fallbacks.jsonl"
FALLBACKS_ENV = "SELECTBENCH_JUDGE_FALLBACKS"
# LLaVA evaluates greedily; lmms-eval's mmvet.yaml samples at temperature 0.2 (llava_hf samples when it is > 0)
GREEDY = {"temperature": 0}


class LmmsEvalError(RuntimeError):
    """lmms-eval failed, or its output cannot be trusted; the message says why and where to look."""


@dataclass(frozen=True)
class Judge:
    """An OpenAI-compatible judge for mmvet / mmbench, passed to lmms-eval through its environment variables."""

    model: str
    api_type: str = "openai"            # openai | azure
    api_url: str | None = None          # None: the provider's default endpoint
    api_key_env: str | None = None      # variable holding the key; default OPENAI_API_KEY / AZURE_API_KEY

    def env(self) -> dict[str, str]:
        if self.api_type not in ("openai", "azure"):
            raise ValueError(f"evaluation.lmms_eval.judge.api_type {self.api_type!r}: expected openai or azure")
        key_var = self.api_key_env or ("OPENAI_API_KEY" if self.api_type == "openai" else "AZURE_API_KEY")
        key = os.environ.get(key_var, "")
        if not key:
            raise ValueError(f"evaluation.lmms_eval.judge: the environment variable {key_var} (api_key_env) is not "
                             "set; without a key lmms-eval's judge fails silently and scores answers wrong")
        env = {"API_TYPE": self.api_type, "MODEL_VERSION": self.model}
        if self.api_type == "openai":
            env["OPENAI_API_KEY"] = key
            if self.api_url:
                env["OPENAI_API_URL"] = self.api_url
        else:
            env["AZURE_API_KEY"] = key
            if self.api_url:
                env["AZURE_ENDPOINT"] = self.api_url
        return env


@dataclass(frozen=True)
class LmmsConfig:
    """The evaluation.lmms_eval block of the config."""

    model: str = "llava_hf"
    model_args: dict = field(default_factory=dict)     # besides pretrained (the model directory)
    gen_kwargs: dict = field(default_factory=lambda: dict(GREEDY))  # --gen_kwargs, every task; {}: the task YAMLs'
    judge: Judge | None = None
    max_empty_fraction: float = 0.02
    max_judge_failures: int = 0                         # per task: failed MM-Vet grades, random MMBench letters
    offline: bool = True                                # HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE
    include_path: str | None = None                     # extra task folder (--include_path)
    timeout_s: float | None = None
    # opt-in fixed subsample per task: lmms-eval's --limit, its first N documents (a task with one runs alone)
    limit: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: dict | None) -> LmmsConfig:
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"evaluation.lmms_eval: unknown keys {unknown} (known: {sorted(known)})")
        judge = cfg.get("judge")
        if judge is not None:
            if not isinstance(judge, dict) or "model" not in judge:
                raise ValueError("evaluation.lmms_eval.judge: expected a mapping with at least model "
                                 "(e.g. {model: gpt-4o-2024-11-20, api_type: openai, api_key_env: OPENAI_API_KEY})")
            judge_keys = {f.name for f in fields(Judge)}
            if set(judge) - judge_keys:
                raise ValueError(f"evaluation.lmms_eval.judge: unknown keys {sorted(set(judge) - judge_keys)}")
            cfg["judge"] = Judge(**judge)
        out = cls(**cfg)
        if out.model == "llava_hf" and not str(out.model_args.get("device_map") or "").strip():
            raise ValueError("evaluation.lmms_eval.model_args.device_map is not set: llava_hf's default device_map "
                             "\"\" makes transformers 5 from_pretrained raise; set device_map: auto (one GPU per job) "
                             "or a device such as cuda:0 / cpu")
        if not 0 <= out.max_empty_fraction < 1:
            raise ValueError(f"evaluation.lmms_eval.max_empty_fraction {out.max_empty_fraction}: expected [0, 1)")
        if not isinstance(out.gen_kwargs, dict):
            raise ValueError(f"evaluation.lmms_eval.gen_kwargs {out.gen_kwargs!r}: expected a mapping (e.g. "
                             "{temperature: 0}; {} keeps each task YAML's own settings)")
        if isinstance(out.max_judge_failures, bool) or not isinstance(out.max_judge_failures, int) \
                or out.max_judge_failures < 0:
            raise ValueError(f"evaluation.lmms_eval.max_judge_failures {out.max_judge_failures!r}: expected a count >= 0")
        if not isinstance(out.limit, dict) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                                  for n in out.limit.values()):
            raise ValueError(f"evaluation.lmms_eval.limit {out.limit!r}: expected a document count >= 1 per task "
                             "(e.g. {vqav2_val: 20000})")
        return out


def installed_version() -> str:
    try:
        version = metadata.version("lmms-eval")
    except metadata.PackageNotFoundError:
        raise LmmsEvalError(f"lmms-eval is not installed (pin: lmms-eval=={PINNED_VERSION})") from None
    if version != PINNED_VERSION:
        log.warning("lmms-eval %s is installed, the suite pins %s: rows are labelled %s", version, PINNED_VERSION,
                    version)
    return version


def temperature(spec: TaskSpec, gen_kwargs: dict | None = None) -> float:
    """The temperature a generation task runs at: --gen_kwargs overrides the task YAML's (lmms-eval updates every
    generate_until task's generation_kwargs with it)."""
    gen_kwargs = GREEDY if gen_kwargs is None else gen_kwargs
    return float(gen_kwargs.get("temperature", spec.temperature) or 0)


def generation(spec: TaskSpec, gen_kwargs: dict | None = None) -> str:
    """"greedy", or "temperature 0.2 sampled": how a generation task's answers were decoded."""
    t = temperature(spec, gen_kwargs)
    return "greedy" if t <= 0 else f"temperature {t:g} sampled"


def protocol(spec: TaskSpec, version: str, judge: Judge | None = None, gen_kwargs: dict | None = None,
             subsample: tuple[int, int] | None = None) -> str:
    """Label of a task's numbers, e.g. "lmms-eval 0.7.3: VQAv2 val (not test-dev), VQA soft accuracy; greedy"
    (gen_kwargs None: the default, greedy). subsample: (documents evaluated, documents in the task) of a run
    limited by evaluation.lmms_eval.limit, labelled "first N of M documents"."""
    text = f"lmms-eval {version}: {spec.protocol}"
    if subsample and subsample[0] < subsample[1]:
        text += f"; subsample: first {subsample[0]} of {subsample[1]} documents (lmms-eval --limit)"
    text += f"; judge {judge.model}" if spec.judge and judge else ""
    return text + (f"; {generation(spec, gen_kwargs)}" if spec.generates else "")


def check_tasks(tasks: list[str], cfg: LmmsConfig, specs: dict[str, TaskSpec] = TASKS) -> None:
    """Refuse unknown tasks and judge-scored tasks without a judge (lmms-eval would score them silently wrong)."""
    if not tasks:
        raise ValueError("no lmms-eval tasks to run")
    unknown = [t for t in tasks if t not in specs]
    if unknown:
        raise ValueError(f"lmms-eval tasks {unknown} are not supported (known: {sorted(specs)})")
    unknown = sorted(set(cfg.limit) - set(specs))
    if unknown:
        raise ValueError(f"evaluation.lmms_eval.limit names {unknown}, not lmms-eval tasks the suite knows "
                         f"(known: {sorted(specs)})")
    limited = [t for t in tasks if t in cfg.limit]
    if limited and len(tasks) > 1:
        raise ValueError(f"evaluation.lmms_eval.limit subsamples {limited}, but lmms-eval's --limit applies to every "
                         f"task of a run and this one runs {tasks}: set evaluation.jobs: per_task")
    if cfg.judge is None:
        for t in tasks:
            if specs[t].judge:
                raise ValueError(
                    f"{t} is scored by an LLM judge and evaluation.lmms_eval.judge is not set: without one lmms-eval "
                    "scores MM-Vet answers 0 and picks random letters for MMBench answers its rules cannot parse, "
                    f"with no error. Configure a judge, or drop {t}; alternative: {specs[t].alternative}")
    elif cfg.judge.api_url and cfg.judge.api_type == "openai":
        judged = {t for t in tasks if specs[t].judge}
        if "mmvet" in judged and judged - {"mmvet"}:
            raise ValueError(
                f"tasks {sorted(judged)} with judge.api_url: lmms-eval 0.7.3 reads OPENAI_API_URL as the API base for "
                "mmvet but as the full chat/completions URL for mmbench; evaluate mmvet in a separate run")


def check_model_dir(model_dir: Path, cfg: LmmsConfig) -> None:
    """llava_hf needs the processor and a chat template saved with the model; without the template it falls back
    to its own Vicuna template (another system prompt) without a word."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no config.json (not a saved model)")
    if cfg.model != "llava_hf":
        return
    if not any((model_dir / f).exists() for f in ("processor_config.json", "preprocessor_config.json")):
        raise FileNotFoundError(f"{model_dir}: no processor saved with the model (llava_hf loads AutoProcessor)")
    has_template = any((model_dir / f).exists() for f in ("chat_template.jinja", "chat_template.json"))
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = model_dir / name
        if path.exists() and json.loads(path.read_text()).get("chat_template"):
            has_template = True
    if not has_template:
        raise FileNotFoundError(f"{model_dir}: no chat template saved with the processor; llava_hf would fall back "
                                "to its own Vicuna prompt. Save VicunaV1.chat_template() with the processor")


def _arg_string(args: dict, where: str) -> list[str]:
    """key=value items for lmms-eval's argument strings, which it splits on ',' and '='."""
    parts = []
    for key, value in sorted(args.items()):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if any(c in text for c in ",="):
            raise ValueError(f"evaluation.lmms_eval.{where}.{key}={text!r}: lmms-eval splits these arguments on ',' "
                             "and '='")
        parts.append(f"{key}={text}")
    return parts


def model_args(model_dir: Path, cfg: LmmsConfig) -> str:
    """lmms-eval's key=value,key=value string: pretrained first, then the configured arguments. The suite adds
    no device (llava_hf defaults to cuda; a CPU run configures device: cpu); device_map comes from the config."""
    reserved = {"pretrained": "the model directory is passed by the suite",
                "batch_size": "the suite passes --batch_size 1 (llava_hf supports no other)"}
    parts = [f"pretrained={Path(model_dir).resolve()}"]
    for key in sorted(cfg.model_args):
        if key in reserved:
            raise ValueError(f"evaluation.lmms_eval.model_args.{key}: {reserved[key]}")
    parts += _arg_string(cfg.model_args, "model_args")
    if any(c in parts[0][len("pretrained="):] for c in ",="):
        raise ValueError(f"{model_dir}: a model path with ',' or '=' cannot be passed in lmms-eval's model_args")
    return ",".join(parts)


def build_command(model_dir: Path, tasks: list[str], cfg: LmmsConfig, output_dir: Path,
                  store: Path | None = None) -> list[str]:
    """The lmms-eval command line. It runs lmms-eval's own CLI through selectbench.evaluation.lmms_model, which
    adds the "selectbench" model to lmms-eval's registry and, given a store folder, resumes from the answers stored
    there (selectbench.evaluation.responses); for llava_hf it is otherwise `python -m lmms_eval`."""
    cmd = [sys.executable, "-m", "selectbench.evaluation.lmms_model", "--model", cfg.model,
           "--model_args", model_args(model_dir, cfg), "--tasks", ",".join(tasks), "--batch_size", "1",
           "--log_samples", "--output_path", str(output_dir)]
    if cfg.gen_kwargs:
        cmd += ["--gen_kwargs", ",".join(_arg_string(cfg.gen_kwargs, "gen_kwargs"))]
    if cfg.include_path:
        cmd += ["--include_path", str(cfg.include_path)]
    limits = {cfg.limit[t] for t in tasks if t in cfg.limit}
    if limits:
        cmd += ["--limit", str(limits.pop())]   # one task per run (check_tasks)
    if store is not None:
        cmd += ["--use_cache", str(store)]      # the suite's per-sample store behind lmms-eval's cache hook
    return cmd


def run_env(tasks: list[str], cfg: LmmsConfig, specs: dict[str, TaskSpec] = TASKS) -> dict[str, str]:
    env = dict(os.environ)
    if cfg.offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    else:  # offline: false lets lmms-eval fetch its benchmark data, whatever the steps' offline default
        env.update(HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
        if any(specs[t].hub for t in tasks):
            from huggingface_hub import get_token

            if not get_token():
                raise ValueError("offline lmms-eval on Hub datasets needs a Hugging Face token (HF_TOKEN or a saved "
                                 "login; the task YAMLs load with token: True) and a cache filled for lmms-eval "
                                 f"{PINNED_VERSION}'s datasets; or set evaluation.lmms_eval.offline: false")
    if cfg.judge is not None and any(specs[t].judge for t in tasks):
        env.update(cfg.judge.env())
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def run(cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float | None = None) -> None:
    """Run lmms-eval with its output in log_path; a non-zero exit or a timeout is an error."""
    log.info("running %s (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "w") as fh:
        try:
            proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise LmmsEvalError(f"lmms-eval ran past {timeout_s} s; log {log_path}:\n{_tail(log_path)}") from None
    if proc.returncode != 0:
        raise LmmsEvalError(f"lmms-eval exited with {proc.returncode}; log {log_path}:\n{_tail(log_path)}")


def find_results(output_dir: Path, log_path: Path | None = None) -> Path:
    """The one <output_path>/<model name>/<date>_results.json lmms-eval wrote (it exits 0 without one when the model
    fails to load or a task fails, so a missing file is an error)."""
    found = sorted(Path(output_dir).glob(f"*/*{RESULTS_SUFFIX}"))
    where = f"; log {log_path}:\n{_tail(log_path)}" if log_path else ""
    if not found:
        raise LmmsEvalError(f"lmms-eval wrote no results file under {output_dir} (it exits 0 even when the model "
                            f"fails to load or a task fails){where}")
    if len(found) > 1:
        raise LmmsEvalError(f"{output_dir}: {len(found)} results files ({[p.name for p in found]}); expected the "
                            "one of this run")
    return found[0]


def samples_path(results_path: Path, task: str) -> Path:
    date_id = results_path.name[: -len(RESULTS_SUFFIX)]
    return results_path.parent / f"{date_id}_samples_{task}.jsonl"


def parse_results(results_path: Path, tasks: list[str], specs: dict[str, TaskSpec] = TASKS,
                  gen_kwargs: dict | None = None, limit: dict | None = None) -> dict[str, dict[str, float]]:
    """{task: {metric: value in percent}} from lmms-eval's results file; a task or metric that is missing, not a
    number, or outside 0–100 after scaling is an error naming the file, and so is a generation task whose logged
    config ran at another temperature than gen_kwargs asks for (when given), and a task evaluated on fewer
    documents than it has, unless limit (evaluation.lmms_eval.limit) asks for exactly that many."""
    data = json.loads(Path(results_path).read_text())
    results = data.get("results")
    if not isinstance(results, dict):
        raise LmmsEvalError(f"{results_path}: no 'results' mapping (not an lmms-eval results file?)")
    out = {}
    for task in tasks:
        if task not in results:
            raise LmmsEvalError(f"{results_path}: no results for task {task} (has {sorted(results)})")
        values = {}
        for metric, factor in specs[task].metrics.items():
            raw = results[task].get(f"{metric},none")
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise LmmsEvalError(f"{results_path}: {task} metric {metric!r} is {raw!r}, not a number")
            value = float(raw) * factor
            if not -1e-9 <= value <= 100 + 1e-9:
                raise LmmsEvalError(f"{results_path}: {task} {metric} = {raw!r} × {factor:g} = {value:g} is outside "
                                    "0–100 percent (wrong scale?)")
            values[metric] = value
        logged = ((data.get("configs") or {}).get(task) or {}).get("generation_kwargs")
        if specs[task].generates and isinstance(logged, dict) and gen_kwargs is not None:
            ran, expected = float(logged.get("temperature") or 0), temperature(specs[task], gen_kwargs)
            if ran != expected:
                raise LmmsEvalError(f"{results_path}: {task} ran at temperature {ran:g}, the config asks for "
                                    f"{expected:g} (evaluation.lmms_eval.gen_kwargs): its protocol label would lie")
        counts = data.get("n-samples", {}).get(task, {})
        if counts and counts.get("effective") != counts.get("original"):
            asked = (limit or {}).get(task)
            if asked is None or counts.get("effective") != min(asked, counts.get("original")):
                raise LmmsEvalError(f"{results_path}: {task} was evaluated on {counts.get('effective')} of "
                                    f"{counts.get('original')} documents (a --limit run is not a result unless "
                                    f"evaluation.lmms_eval.limit asks for it: {asked})")
        out[task] = values
    return out


def read_samples(path: Path) -> list[dict]:
    if not Path(path).exists():
        raise LmmsEvalError(f"{path}: no logged samples (run lmms-eval with --log_samples)")
    samples = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                samples.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise LmmsEvalError(f"{path}: line {n} is not JSON ({err})") from None
    return samples


def response(sample: dict):
    """The answer lmms-eval scored: filtered_resps, unwrapped from its one-element lists."""
    resp = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(resp, list) and len(resp) == 1:
        resp = resp[0]
    return resp


def count_empty(samples: list[dict]) -> int:
    """Generation answers that are empty or whitespace."""
    answers = [response(s) for s in samples]
    return sum(1 for a in answers if a is None or (isinstance(a, str) and not a.strip()))


def check_empty(task: str, empty: int, total: int, max_fraction: float, where: str = "") -> None:
    if total == 0:
        raise LmmsEvalError(f"{task}: lmms-eval logged no samples{where}")
    if empty / total > max_fraction:
        raise LmmsEvalError(f"{task}: {empty} of {total} answers are empty ({100 * empty / total:.1f}%), above "
                            f"evaluation.lmms_eval.max_empty_fraction {max_fraction:g} (llava_hf returns '' when "
                            f"generation fails, and an empty answer is scored as wrong){where}")


def read_fallbacks(results_path: Path) -> list[dict]:
    """MMBench's random-letter fallbacks recorded by the entry point in the run's output folder (the folder above
    lmms-eval's model folder); a missing file means the recorder did not run, so nothing can be said."""
    path = Path(results_path).parent.parent / FALLBACKS_FILE
    if not path.exists():
        raise LmmsEvalError(f"{path}: no judge fallback record; MMBench's random letters cannot be counted (run "
                            "lmms-eval through selectbench.evaluation.lmms_model, as build_command does)")
    return read_samples(path)


def judge_failures(task: str, samples: list[dict], fallbacks: list[dict] | None = None) -> list:
    """Ids of the samples whose judge-scored number is not a judge's: MM-Vet samples graded 0.0 because the judge
    call failed (lmms-eval then logs eval_model ""), and MMBench answers given a random letter after the judge
    failed three times (matched to this task's samples by index and question, which differ between EN and CN)."""
    records = [s.get("gpt_eval_score") for s in samples]
    if task == "mmvet":
        return [r.get("question_id", s.get("doc_id")) if isinstance(r, dict) else s.get("doc_id")
                for s, r in zip(samples, records) if not isinstance(r, dict) or not str(r.get("eval_model") or "")]
    mine = {(int(r["index"]), str(r["question"])) for r in records if isinstance(r, dict) and "index" in r}
    return [f["index"] for f in fallbacks or [] if (int(f["index"]), str(f["question"])) in mine]


def check_judge_failures(task: str, failed: list, total: int, max_failures: int, where: str = "") -> None:
    if len(failed) > max_failures:
        what = ("graded 0.0 because the judge call failed" if task == "mmvet"
                else "given a random letter because the judge failed to match them")
        raise LmmsEvalError(f"{task}: {len(failed)} of {total} samples were {what} (above "
                            f"evaluation.lmms_eval.max_judge_failures {max_failures}; e.g. {failed[:5]}); check the "
                            f"judge's key, URL and network from the compute node{where}")


def _yes_no_indicators(samples: list[dict], metric: str) -> dict[str, list[float]] | None:
    """POPE's per-sample records ({score, prediction, ground_truth}) as the indicators its F1 is recomputed from
    (selectbench.report.intervals): lmms-eval's F1 counts an answer as a positive exactly when it is "yes"."""
    records = [s.get(metric) for s in samples]
    if not records or not all(isinstance(r, dict) and {"prediction", "ground_truth"} <= set(r) for r in records):
        return None
    return {"predicted_yes": [float(str(r["prediction"]) == "yes") for r in records],
            "label_yes": [float(str(r["ground_truth"]) == "yes") for r in records]}


def sample_scores(samples: list[dict], spec: TaskSpec) -> dict[str, list[float]]:
    """Per-sample values of the task's metrics, in percent, where lmms-eval logged a plain number for every sample
    (its mean-aggregated metrics: exact_match, the VQA scores), and POPE's yes/no indicators from its per-sample
    records (its F1 is recomputed from them). Other records for a custom aggregation (judge scores) are left out
    rather than guessed: their mean is not the metric."""
    out = {}
    for metric, factor in spec.metrics.items():
        if metric == "pope_f1_score":
            out.update(_yes_no_indicators(samples, metric) or {})
            continue
        values = []
        for sample in samples:
            value = sample.get(metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                break
            values.append(factor * float(value))
        else:
            if values:
                out[metric] = values
    return out


def collect(results_path: Path, tasks: list[str], cfg: LmmsConfig, key: dict, version: str,
            specs: dict[str, TaskSpec] = TASKS) -> tuple[list[dict], dict, list[dict]]:
    """Rows (COLUMNS of run.py), predictions {task: [{id, output}]} and per-item rows
    (selectbench.evaluation.items) from a finished run's files."""
    values = parse_results(results_path, tasks, specs, cfg.gen_kwargs, cfg.limit)
    counts = json.loads(Path(results_path).read_text()).get("n-samples", {})
    rows, predictions, per_item = [], {}, []
    fallbacks = read_fallbacks(results_path) if any(specs[t].judge and t != "mmvet" for t in tasks) else []
    for task in tasks:
        spec = specs[task]
        n = counts.get(task) or {}
        subsample = (n["effective"], n["original"]) if task in cfg.limit and "effective" in n else None
        label = protocol(spec, version, cfg.judge, cfg.gen_kwargs, subsample)
        samples = read_samples(samples_path(results_path, task))
        for metric, value in values[task].items():
            rows.append({**key, "benchmark": task, "metric": metric, "value": round(value, 4), "protocol": label})
        rows.append({**key, "benchmark": task, "metric": "samples", "value": len(samples), "protocol": label})
        if spec.generates:
            empty = count_empty(samples)
            check_empty(task, empty, len(samples), cfg.max_empty_fraction, f" ({samples_path(results_path, task)})")
            if empty:
                log.warning("%s: %d of %d answers are empty", task, empty, len(samples))
            rows.append({**key, "benchmark": task, "metric": "empty_answers", "value": empty, "protocol": label})
        if spec.judge:
            failed = judge_failures(task, samples, fallbacks)
            check_judge_failures(task, failed, len(samples), cfg.max_judge_failures,
                                 f" ({samples_path(results_path, task)})")
            if failed:
                log.warning("%s: %d judge failures (e.g. %s)", task, len(failed), failed[:5])
            rows.append({**key, "benchmark": task, "metric": "judge_failures", "value": len(failed),
                         "protocol": label})
        predictions[task] = [{"id": s.get("doc_id"), "output": response(s)} for s in samples]
        per_item += item_rows(key, task, [s.get("doc_id") for s in samples], sample_scores(samples, spec))
    return rows, predictions, per_item


def run_job(job) -> list[dict]:
    """The "lmms_eval" evaluator (selectbench.evaluation.evaluators): lmms-eval on the job's leaf tasks."""
    return evaluate_lmms(job.model, job.benchmarks, job.settings, job.key, job.out, job.predictions,
                         items_out=job.items)


def evaluate_lmms(model_dir: Path, tasks: list[str], lmms_cfg: dict, key: dict, out_csv: Path,
                  predictions_out: Path, specs: dict[str, TaskSpec] = TASKS,
                  items_out: Path | None = None) -> list[dict]:
    """Evaluate a saved model with lmms-eval on its leaf tasks → long-format rows in percent (also written to out_csv,
    with the per-sample answers in predictions_out). lmms-eval's own files stay in <out_csv without .csv>.lmms/,
    every answer in <out_csv without .csv>.responses/ as it is given, where a rerun of the same model resumes
    (selectbench.evaluation.responses).
    Besides each task's metrics, rows hold its sample count ("samples"), for generation tasks the number of
    empty answers ("empty_answers") and for judge-scored tasks the number of judge failures ("judge_failures"):
    counts, not percent."""
    from selectbench.evaluation.run import write_outputs

    cfg = LmmsConfig.from_dict(lmms_cfg)
    check_tasks(tasks, cfg, specs)
    check_model_dir(Path(model_dir), cfg)
    version = installed_version()
    env = run_env(tasks, cfg, specs)
    output_dir = Path(out_csv).with_suffix(".lmms")
    if output_dir.exists():
        shutil.rmtree(output_dir)   # results of an earlier run must not be read as this run's
    output_dir.mkdir(parents=True)
    log_path = output_dir / "lmms_eval.log"
    env[FALLBACKS_ENV] = str(output_dir / FALLBACKS_FILE)
    store = Path(out_csv).with_suffix(".responses")
    kept = responses.prepare(store, {"model": cfg.model, "model_args": model_args(Path(model_dir), cfg),
                                     "model_files": fingerprint(str(Path(model_dir).resolve())),
                                     "lmms_eval": version})
    if kept:
        log.info("%s: resuming with %d stored answers", store, kept)
    env[responses.STORE_ENV] = str(store)
    run(build_command(Path(model_dir), tasks, cfg, output_dir, store), env, log_path, cfg.timeout_s)
    rows, predictions, per_item = collect(find_results(output_dir, log_path), tasks, cfg, key, version, specs)
    if items_out is not None:
        write_items(per_item, Path(items_out))
    write_outputs(rows, predictions, Path(out_csv), Path(predictions_out))
    return rows
