"""Gradient-based selection, LESS-style (Xia et al. 2024): per-example LoRA gradients of the warmed-up proxy,
Adam-preconditioned and randomly projected (selectbench.features.gradients). Targets:
  none → GraNd: rank by the norm of the example's gradient;
  self → mean cosine of the example's (normalised, projected) gradient to those of its own k-means cluster;
  validation → LESS's influence (ICONS-style, task-aware): per validation task (benchmark), the mean cosine to
      that task's validation gradients (plain SGD direction at the warm-up checkpoint, same projection), and
      the maximum over tasks (aggregate: max). With max, a task whose validation gradients agree with each
      other can take nearly the whole budget; aggregate: balanced gives every task an equal share instead
      (round robin: each task in turn takes its best row not yet taken). It uses evaluation-task data, so its
      subsets and table rows say so.
Keeps the high band by default."""

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection, band_indices, check_band
from selectbench.selection.checks import one_of
from selectbench.selection.clustering import kmeans

TARGETS = ("none", "self", "validation")
AGGREGATES = ("max", "balanced")
TASK_SCORE = "task_score_"  # score arrays f"{TASK_SCORE}<task>": the mean cosine to one task's validation set
STATISTIC = {"none": "gradient norm (GraNd)", "self": "mean cosine to own cluster",
             "validation": "max over validation tasks of the mean cosine to the task's validation gradients (LESS)"}


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def validation_scores(projected: np.ndarray, validation: np.ndarray, tasks: np.ndarray) -> dict[str, np.ndarray]:
    """LESS's task influence: {task: mean over the task's validation examples of cos(train, validation)} for
    every pool row; rows without a gradient (zero or NaN) are NaN, never ranked."""
    unit, val = unit_rows(projected.astype(np.float64)), unit_rows(validation.astype(np.float64))
    unscored = ~np.isfinite(projected).all(axis=1) | (np.linalg.norm(np.nan_to_num(projected), axis=1) == 0)
    out = {}
    for task in dict.fromkeys(tasks.tolist()):
        score = np.nan_to_num(unit) @ val[tasks == task].mean(axis=0)
        score[unscored] = np.nan
        out[task] = score
    return out


def balanced_by_task(task_scores: list[np.ndarray], n: int) -> np.ndarray:
    """n rows, tasks taking turns: each takes its highest-scoring row not yet taken (NaN = unscored, never taken
    while a scored row is left); rows no task scored fill any remainder in index order."""
    orders = [np.argsort(-np.nan_to_num(s, nan=-np.inf), kind="stable") for s in task_scores]
    scored = [np.isfinite(s) for s in task_scores]
    taken = np.zeros(len(task_scores[0]), bool)
    out: list[int] = []
    cursor = [0] * len(orders)
    while len(out) < n:
        progressed = False
        for t, order in enumerate(orders):
            while cursor[t] < len(order) and (taken[order[cursor[t]]] or not scored[t][order[cursor[t]]]):
                cursor[t] += 1
            if cursor[t] < len(order) and len(out) < n:
                taken[order[cursor[t]]] = True
                out.append(int(order[cursor[t]]))
                progressed = True
        if not progressed:
            break
    rest = np.flatnonzero(~taken)[: n - len(out)]
    return np.concatenate([np.array(out, dtype=np.int64), rest]).astype(np.int64)


class Gradient(Method):
    name = "gradient"
    requires = ("lora_gradients",)
    parameters = {"target": "none", "band": "high", "dim": 1024, "precondition": "adam", "projection_seed": 0,
                  "clusters": 20, "aggregate": "max"}

    @classmethod
    def check(cls, params):
        one_of(params, "target", TARGETS)
        check_band(params)
        one_of(params, "aggregate", AGGREGATES)
        if params["aggregate"] == "balanced" and (params["target"] != "validation" or params["band"] != "high"):
            raise ValueError("aggregate: balanced shares the budget among validation tasks: it needs target "
                             "validation and band high")

    @classmethod
    def task_aware(cls, params) -> bool:
        """Whether the instance reads evaluation-task data (validation examples); tables mark such rows."""
        return params["target"] == "validation"

    @classmethod
    def feature_spec(cls, feature, params):
        return {"dim": params["dim"], "precondition": params["precondition"], "seed": params["projection_seed"]}

    def score(self, ctx):
        z = load_npz(ctx.artifacts["lora_gradients"])
        projected, norm = z["projected"][:, 0], z["grad_norm"][:, 0]
        if ctx.params["target"] == "validation":
            if "meta_validation_projected" not in z:
                raise ValueError(f"{ctx.artifacts['lora_gradients']}: no validation gradients; target "
                                 "validation needs task validation sets in the data folder (manifest "
                                 "'task_validation')")
            validation, tasks = z["meta_validation_projected"], z["meta_validation_task"]
        if ctx.params["target"] == "none":
            return {"score": norm.astype(np.float64)}
        if ctx.params["target"] == "validation":
            per_task = validation_scores(projected, validation, tasks)
            score = np.stack(list(per_task.values()), axis=1).max(axis=1)  # NaN stays NaN: unscored
            return {"score": score, **{TASK_SCORE + t: s for t, s in per_task.items()}}
        unit = unit_rows(projected)
        labels = kmeans(unit, ctx.params["clusters"], seed=0)
        score = np.empty(len(unit))
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            score[members] = unit[members] @ unit[members].mean(axis=0)
        return {"score": score, "cluster": labels}

    def select(self, ctx, scores, n, seed):
        target = ctx.params["target"]
        tasks = [k[len(TASK_SCORE):] for k in scores if k.startswith(TASK_SCORE)]
        if target == "validation" and ctx.params["aggregate"] == "balanced":
            rows = balanced_by_task([scores[TASK_SCORE + t] for t in tasks], n)
        else:
            rows = band_indices(scores["score"], n, ctx.params["band"])
        details = {"band": ctx.params["band"], "target": target, "statistic": STATISTIC[target],
                   "task_aware": self.task_aware(ctx.params)}
        if target == "validation":
            details["aggregate"] = ctx.params["aggregate"]
            scored = rows[~np.isnan(scores["score"][rows])]
            best = np.argmax(np.stack([scores[TASK_SCORE + t][scored] for t in tasks], axis=1), axis=1)
            details["validation_tasks"] = tasks
            details["kept_by_best_task"] = {t: int((best == i).sum()) for i, t in enumerate(tasks)}
        return Selection(rows, details)
