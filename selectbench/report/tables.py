"""Aggregation on pandas: per-model evaluation rows → one long-format table per dataset, and its summary (method ×
ratio entries: primary metric per benchmark over seeds, relative performance vs full data) that the Markdown and
LaTeX renderers and the plots read."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Collection, Iterable

import pandas as pd

from selectbench.io import atomic_file
from selectbench.evaluation.specs import scoring
from selectbench.evaluation.evaluators import COLUMNS
from selectbench.report.intervals import (
    RELATIVE, UNDEFINED, ItemTable, Replicates, cell_intervals, holm, paired_differences,
)

_TYPES = {"ratio": float, "seed": int, "value": float}


def as_frame(rows: pd.DataFrame | Iterable[dict]) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("no evaluation rows to aggregate")
    frame = frame.astype(_TYPES)
    frame["protocol"] = frame["protocol"].fillna("").astype(str) if "protocol" in frame else ""
    return frame


def read_rows(paths: list[Path]) -> pd.DataFrame:
    """The evaluation CSVs (COLUMNS; files from before the protocol column read as protocol "") of a dataset, as one
    typed DataFrame."""
    from selectbench.report.results import read_long

    from selectbench.report.results import check_evaluation_rows

    required = tuple(c for c in COLUMNS if c != "protocol")
    frames = [read_long([path], required, "evaluation", path, optional_text=("protocol",)) for path in paths]
    for path, frame in zip(paths, frames):
        check_evaluation_rows(frame, Path(path))
    frame = as_frame(pd.concat(frames, ignore_index=True))
    key = ["dataset", "method", "ratio", "seed", "benchmark", "metric"]
    twice = frame[frame.duplicated(key, keep=False)]
    if len(twice):
        first = twice.iloc[0]
        files = [str(p) for p, f in zip(paths, frames)
                 if ((f[key] == first[key]).all(axis=1)).any()]
        raise ValueError(f"{' and '.join(files)}: the same result twice ({', '.join(f'{k} {first[k]}' for k in key)})")
    return frame


# the long table: the evaluation rows and, where per-item scores can recompute a row, its 95% bootstrap interval
# over the items (empty otherwise: sample counts, per-split numbers, metrics an evaluator logs only as a total)
TABLE_COLUMNS = (*COLUMNS, "ci_low", "ci_high")
_SORT = ["method", "ratio", "seed", "benchmark", "metric"]


def write_long(rows: pd.DataFrame | Iterable[dict], out: Path,
               intervals: dict[tuple, tuple[float, float]] | None = None) -> None:
    frame = as_frame(rows).reindex(columns=list(COLUMNS)).sort_values(_SORT, kind="stable")
    keys = list(zip(*(frame[c] for c in _SORT)))
    ci = [(intervals or {}).get(k) for k in keys]
    frame["ci_low"] = [None if c is None else round(c[0], 4) for c in ci]
    frame["ci_high"] = [None if c is None else round(c[1], 4) for c in ci]
    with atomic_file(Path(out)) as tmp:
        frame.to_csv(tmp, index=False, columns=list(TABLE_COLUMNS), lineterminator="\r\n", float_format=None)


def protocols(rows: pd.DataFrame | Iterable[dict], benchmarks: list[str]) -> dict[str, str]:
    """The protocol of each benchmark's rows (COLUMNS "protocol"): numbers obtained under different protocols
    never share a column, so a benchmark with rows under two of them is an error."""
    frame = as_frame(rows)
    out = {}
    for b in benchmarks:
        found = sorted(set(frame.loc[frame["benchmark"] == b, "protocol"]))
        if len(found) > 1:
            raise ValueError(f"{b}: rows under different protocols {found} cannot share a column")
        out[b] = found[0] if found else ""
    return out


def at_chance(rows: pd.DataFrame | Iterable[dict], reference: str, benchmarks: list[str], margin: float
              ) -> dict[str, str]:
    """Benchmarks on which the full-data reference is within `margin` points of chance (its benchmark's
    chance_level metric), with the reason: relative to a model that learned nothing, a subset's score is noise."""
    frame = as_frame(rows)
    out = {}
    proto = protocols(frame, benchmarks)
    for b in benchmarks:
        level = scoring(b, proto[b]).chance_level
        if level is None:
            continue
        metric, chance = level
        values = frame.loc[(frame["method"] == reference) & (frame["benchmark"] == b) & (frame["metric"] == metric),
                           "value"]
        if len(values) and values.mean() <= chance + margin:
            out[b] = f"{b}: full data {metric} {values.mean():.1f} is within {margin:g} points of chance ({chance:g})"
    return out


def _mean_std(values: pd.Series) -> tuple[float, float | None]:
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def summarise(rows: pd.DataFrame | Iterable[dict], reference: str, benchmarks: list[str],
              chance_margin: float | None = None) -> list[dict]:
    """One entry per (method, ratio): primary metric per benchmark over seeds, and relative performance
    = mean over benchmarks of 100 × subset / full (full = the reference method's mean over its seeds).
    With chance_margin, benchmarks the reference did not learn (see at_chance) are left out of Rel. % and
    the entry says so."""
    frame = as_frame(rows)
    proto = protocols(frame, benchmarks)
    primary = {b: scoring(b, proto[b]).primary for b in benchmarks}
    # one value per (method, ratio, seed, benchmark): the benchmark's primary metric
    runs = (frame.merge(pd.DataFrame(primary.items(), columns=["benchmark", "metric"]), on=["benchmark", "metric"])
            .drop_duplicates(["method", "ratio", "seed", "benchmark"], keep="last")
            .pivot(index=["method", "ratio", "seed"], columns="benchmark", values="value"))
    runs = runs.reindex(columns=benchmarks)
    if reference not in runs.index.get_level_values("method"):
        raise ValueError(f"no rows of the reference method {reference!r}: relative performance is undefined")
    full = runs.xs(reference, level="method").mean()
    unlearned = at_chance(frame, reference, benchmarks, chance_margin) if chance_margin is not None else {}
    relative_over = [b for b in benchmarks if b not in unlearned]
    zero = [b for b in relative_over if full[b] == 0]
    rel = None
    if not zero and relative_over:
        rel = (100 * runs[relative_over] / full[relative_over]).mean(axis=1)
    order = sorted(runs.index.droplevel("seed").unique(), key=lambda k: (k[0] != reference, k))
    summary = []
    for method, ratio in order:
        seeds = runs.loc[(method, ratio)]
        missing = seeds.columns[seeds.isna().any()].tolist()
        if missing:
            seed = int(seeds.index[seeds[missing[0]].isna()][0])
            raise ValueError(f"{method} ratio {ratio} seed {seed}: no {primary[missing[0]]} for {missing}")
        summary.append({
            "method": method, "ratio": float(ratio), "seeds": [int(s) for s in seeds.index], "protocols": proto,
            "benchmarks": {b: _mean_std(seeds[b]) for b in benchmarks},
            # undefined (not 0) when the full-data reference scored 0 somewhere: the table says why
            "relative": _mean_std(rel.loc[(method, ratio)]) if rel is not None else None,
            "relative_missing": f"full data scored 0 on {', '.join(zero)}" if zero else None,
            "relative_excluded": sorted(unlearned.values()),
            "relative_over": [] if zero else relative_over,
        })
    return summary


def _fmt(ms: tuple[float, float | None] | None, tex: bool = False,
         ci: tuple[float, float] | str | None = None) -> str:
    """mean (± std over seeds where there is no interval), with its 95% interval where there is one."""
    if ms is None:
        return "n/a"
    m, s = ms
    if ci == UNDEFINED:
        return f"{m:.1f} [n/a]"
    if ci is not None:
        low, high = ci
        return f"{m:.1f}\\,{{\\scriptsize[{low:.1f}, {high:.1f}]}}" if tex else f"{m:.1f} [{low:.1f}, {high:.1f}]"
    if s is None:
        return f"{m:.1f}"
    return f"{m:.1f} $\\pm$ {s:.1f}" if tex else f"{m:.1f} ± {s:.1f}"


def _mark(entry: dict, bench: str = RELATIVE, tex: bool = False) -> str:
    mark = entry.get("marks", {}).get(bench)
    if not mark:
        return ""
    return ("$^{\\uparrow}$" if mark == WIN else "$^{\\downarrow}$") if tex else f" {mark}"


def _ci(entry: dict, bench: str | None = None) -> tuple[float, float] | None:
    ci = entry.get("ci")
    if not ci:
        return None
    return ci["relative"] if bench is None else ci["benchmarks"].get(bench)


TASK_AWARE_NOTE = "task-aware: uses evaluation-task validation examples (not a task-agnostic selection)"


def provenance_text(prov: dict) -> str:
    """One line: which code, config, pool, libraries and machine made the table (the full record is the
    <dataset>.provenance.json beside it)."""
    short = lambda digest: (digest or "not recorded")[:12]  # noqa: E731
    libraries = ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()
                          if k in ("python", "torch", "transformers", "peft", "lmms-eval") and v != "not installed")
    return (f"code {prov.get('code')}; config sha256 {short(prov.get('config_sha256'))}; pool sha256 "
            f"{short(prov.get('pool_sha256'))}; {libraries}; machine {prov.get('machine')}")


def to_markdown(summary: list[dict], benchmarks: list[str], dataset: str, published: dict | None = None,
                task_aware: Collection[str] = (), provenance: dict | None = None) -> str:
    """task_aware: method labels whose selection used evaluation-task data; marked † with a footnote."""
    proto = _protocols(summary, benchmarks)
    head = ["method", "ratio", "seeds"] + [f"{b} ({scoring(b, proto[b]).primary})" for b in benchmarks] + ["Rel. %"]
    if published:
        head.append("published Rel. % (paper's protocol)")
    lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["method"] + (" †" if e["method"] in task_aware else ""), f"{e['ratio']:g}", str(len(e["seeds"]))]
        cells += [_fmt(e["benchmarks"][b], ci=_ci(e, b)) + _mark(e, b) for b in benchmarks]
        cells.append(_fmt(e["relative"], ci=_ci(e)) + _mark(e))
        if published:
            value = published.get((e["method"], e["ratio"]))
            cells.append("—" if value is None else f"{value:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if any(e["method"] in task_aware for e in summary):
        lines += ["", f"† {TASK_AWARE_NOTE}."]
    missing = {e["relative_missing"] for e in summary if e["relative_missing"]}
    if missing:
        lines += ["", "Rel. % is n/a: " + "; ".join(sorted(missing)) + "."]
    excluded = sorted({x for e in summary for x in e.get("relative_excluded", [])})
    if excluded:
        lines += ["", "**Rel. % leaves out benchmarks the full-data model did not learn** (" + "; ".join(excluded)
                  + "): their columns are shown but are noise."]
    with_ci = any(e.get("ci") for e in summary)
    values = ("mean over seeds [95% bootstrap interval over evaluation items, and over seeds where there are several; "
              "Rel. % resampled with the full-data model's items]" if with_ci else "mean ± std over seeds")
    comparisons = summary[0].get("comparisons") if summary else None
    if comparisons:
        lines += ["", f"{WIN} / {LOSS}: better / worse than {comparisons['baseline']} at the same ratio on that "
                      "benchmark or on Rel. % (paired bootstrap over the same items and seeds; Holm-corrected "
                      f"across the table's {comparisons['tests']} comparisons, family-wise {comparisons['alpha']:g}). Smallest "
                      "difference these items and seeds could detect (median half-width of the paired 95% "
                      "intervals): " + ", ".join(f"{b} {w:.1f}" for b, w in comparisons["detectable"].items())
                      + " points."]
    if any(_ci(e) == UNDEFINED for e in summary):
        lines += ["", "[n/a]: in some bootstrap draws the full-data model scored 0 on a benchmark, where Rel. % is "
                      "undefined, so that interval is not given."]
    lines += ["", f"Values: {values}, on each benchmark's own scale (percent). Rel. % = mean over "
              "benchmarks of 100 × subset / full data. Chance levels: "
              + "; ".join(f"{b}: {scoring(b, proto[b]).chance or 'n/a'}" for b in benchmarks) + "."]
    lines += ["", "**Protocol** — " + protocol_text(proto)]
    if provenance:
        lines += ["", f"**Made by** — {provenance_text(provenance)} (all of it: `{dataset}.provenance.json`)."]
    if published:
        lines += ["", ("Published Rel. % is the paper's, under its own protocol (LLaVA's evaluation scripts, VQAv2 "
                       "test-dev, MMBench test); it is shown beside, never mixed into, the numbers measured here.")]
    return "\n".join(lines) + "\n"


def to_latex(summary: list[dict], benchmarks: list[str], dataset: str, task_aware: Collection[str] = (),
             provenance: dict | None = None) -> str:
    cols = "ll" + "r" * (len(benchmarks) + 1)
    head = ["Method", "Ratio"] + [b.replace("_", "\\_") for b in benchmarks] + ["Rel.\\,\\%"]
    spread = "mean [95% bootstrap interval]" if any(e.get("ci") for e in summary) else "mean $\\pm$ std over seeds"
    lines = [f"% {dataset}: {spread}; Rel. = mean of 100 x subset / full",
             f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    for e in summary:
        cells = [e["method"].replace("_", "\\_") + ("$^\\dagger$" if e["method"] in task_aware else ""),
                 f"{e['ratio']:g}"]
        cells += [_fmt(e["benchmarks"][b], tex=True, ci=_ci(e, b)) + _mark(e, b, tex=True) for b in benchmarks]
        cells.append(_fmt(e["relative"], tex=True, ci=_ci(e)) + _mark(e, tex=True))
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    text = protocol_text(_protocols(summary, benchmarks))
    for old, new in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"),
                     ("$", "\\$")):
        text = text.replace(old, new)
    lines.append(f"\\par{{\\footnotesize Protocol: {text}}}")
    comparisons = summary[0].get("comparisons") if summary else None
    if comparisons:
        baseline = comparisons["baseline"].replace("_", "\\_")
        lines.append(f"\\par{{\\footnotesize $\\uparrow$/$\\downarrow$: better/worse than {baseline} at the same "
                     f"ratio (paired bootstrap, Holm over {comparisons['tests']} comparisons).}}")
    if any(e["method"] in task_aware for e in summary):
        lines.append(f"\\par{{\\footnotesize $^\\dagger${TASK_AWARE_NOTE}.}}")
    excluded = sorted({x for e in summary for x in e.get("relative_excluded", [])})
    if excluded:
        lines.append("% Rel. leaves out benchmarks the full-data model did not learn: " + "; ".join(excluded))
    if provenance:
        lines.append(f"% made by: {provenance_text(provenance)}")
    return "\n".join(lines) + "\n"


def _protocols(summary: list[dict], benchmarks: list[str]) -> dict[str, str]:
    proto = summary[0].get("protocols", {}) if summary else {}
    return {b: proto.get(b, "") for b in benchmarks}


def protocol_text(proto: dict[str, str]) -> str:
    """One line naming how the numbers of each column were obtained (grouped when several share a protocol)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for b, p in proto.items():
        groups[p or "not recorded (rows without a protocol column)"].append(b)
    return "; ".join(f"{', '.join(bs)}: {p}" for p, bs in groups.items()) + "."


def read_published(path: Path, dataset: str) -> dict[tuple[str, float], float]:
    """Published relative performance (ARP) for a dataset: {(method, ratio): value}."""
    out = {}
    if not Path(path).exists():
        return out
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["dataset"] == dataset and row["benchmark"] == "ARP":
                out[(row["method"], float(row["ratio"]))] = float(row["value"])
    return out


def replicates(items, reps: int, seed: int):
    """The bootstrap replicates (selectbench.report.intervals.Replicates) of per-item rows, an ItemTable, or
    replicates already drawn (returned as they are: intervals and comparisons then share one draw)."""
    if isinstance(items, Replicates):
        return items
    return Replicates(items if isinstance(items, ItemTable) else ItemTable(items), reps=reps, seed=seed)


def attach_intervals(summary: list[dict], items, reference: str, benchmarks: list[str],
                     reps: int = 1000, seed: int = 0) -> None:
    """Each entry's 95% bootstrap intervals (selectbench.report.intervals) from the per-item scores, as
    entry["ci"]; benchmarks without per-item scores keep their plain cells."""
    boot = replicates(items, reps, seed)
    primary = {b: scoring(b, e_proto).primary for b, e_proto in summary[0]["protocols"].items() if b in benchmarks}
    ref = next(e for e in summary if e["method"] == reference)
    cells = [(e["method"], float(e["ratio"]), [int(s) for s in e["seeds"]]) for e in summary]
    intervals = cell_intervals(boot, cells, (float(ref["ratio"]), [int(s) for s in ref["seeds"]]), reference,
                               primary, ref["relative_over"])
    for e in summary:
        e["ci"] = intervals[(e["method"], float(e["ratio"]))]


WIN, LOSS = "▲", "▼"


def parse_pair(text: str) -> tuple[str, float, str, float]:
    """A requested comparison, "method@ratio vs method@ratio" (report.compare in the config)."""
    try:
        left, right = (side.strip().split("@") for side in text.split(" vs "))
        return left[0], float(left[1]), right[0], float(right[1])
    except (ValueError, IndexError):
        raise ValueError(f"report.compare: {text!r} is not 'method@ratio vs method@ratio'") from None


def attach_comparisons(summary: list[dict], items, baseline: str, reps: int = 1000, seed: int = 0,
                       alpha: float = 0.05, reference: str | None = None,
                       requested: Iterable[tuple[str, float, str, float]] = ()) -> None:
    """Each entry against the baseline method at the same ratio, and each requested pair (a, b), per benchmark
    and on Rel. % (with the full-data reference): a paired bootstrap over the same items (and seeds),
    Holm-corrected across all of them. entry["marks"][bench or RELATIVE] is WIN or LOSS where the difference from
    the baseline is significant; summary[0]["comparisons"] holds every comparison ("rows") and, per benchmark, the
    median half-width of the paired 95% intervals ("detectable": differences smaller than that could not be told
    from 0 with these items and seeds)."""
    from statistics import median

    boot = replicates(items, reps, seed)
    primary = {b: scoring(b, proto).primary for b, proto in summary[0]["protocols"].items()}
    cells = {(e["method"], float(e["ratio"])): e for e in summary}
    base = {e["ratio"]: e for e in summary if e["method"] == baseline}
    wanted: dict[tuple, bool] = {}  # (a, b) → requested by the user (else: against the baseline)
    for e in summary:
        other = base.get(e["ratio"])
        if other is not None and e["method"] != baseline:
            wanted[(e["method"], float(e["ratio"]), baseline, float(e["ratio"]))] = False
    for ma, ra, mb, rb in requested:
        for m, r in ((ma, ra), (mb, rb)):
            if (m, float(r)) not in cells:
                raise ValueError(f"report.compare: no results for {m} at ratio {r:g} (have: "
                                 f"{', '.join(f'{k[0]}@{k[1]:g}' for k in cells)})")
        wanted.setdefault((ma, float(ra), mb, float(rb)), True)
    pairs = [((ma, ra, cells[(ma, ra)]["seeds"]), (mb, rb, cells[(mb, rb)]["seeds"])) for ma, ra, mb, rb in wanted]
    relative = None
    if reference is not None and reference in {e["method"] for e in summary}:
        ref = next(e for e in summary if e["method"] == reference)
        relative = (reference, float(ref["ratio"]), [int(s) for s in ref["seeds"]], ref["relative_over"])
    results = paired_differences(boot, pairs, primary, relative=relative)
    tests = {(key, bench): r["p"] for key, per in results.items() for bench, r in per.items()}
    significant = holm(tests, alpha)
    for e in summary:
        e["marks"] = {}
    rows = []
    for key, per in results.items():
        for bench, r in per.items():
            won = (key, bench) in significant
            if won and not wanted[key]:
                cells[key[:2]]["marks"][bench] = WIN if r["difference"] > 0 else LOSS
            rows.append({"a": key[0], "a_ratio": key[1], "b": key[2], "b_ratio": key[3], "benchmark": bench,
                         "difference": r["difference"], "ci_low": r["interval"][0], "ci_high": r["interval"][1],
                         "p": r["p"], "significant": won, "requested": wanted[key]})
    widths = defaultdict(list)
    for per in results.values():
        for bench, r in per.items():
            if bench != RELATIVE:
                widths[bench].append((r["interval"][1] - r["interval"][0]) / 2)
    summary[0]["comparisons"] = {"baseline": baseline, "tests": len(tests), "alpha": alpha, "rows": rows,
                                 "detectable": {b: median(w) for b, w in widths.items()}}


COMPARISON_COLUMNS = ["a", "a_ratio", "b", "b_ratio", "benchmark", "difference", "ci_low", "ci_high", "p",
                      "significant", "requested"]


def comparisons_frame(summary: list[dict]) -> pd.DataFrame:
    """Every paired comparison of the table (against the baseline, and the requested ones): difference a − b of
    the primary metric or of Rel. %, its paired 95% interval, p-value, and whether it survives Holm's correction."""
    rows = (summary[0].get("comparisons") or {}).get("rows", []) if summary else []
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparisons_markdown(summary: list[dict], dataset: str) -> str:
    frame = comparisons_frame(summary)
    info = summary[0].get("comparisons") if summary else None
    if info is None or frame.empty:
        return f"### {dataset}: paired comparisons\n\nNo comparisons: no per-item scores or no baseline rows.\n"
    lines = [f"### {dataset}: paired comparisons", "",
             "| a | b | benchmark | a − b | 95% interval | p | Holm |", "|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        lines.append(f"| {r.a}@{r.a_ratio:g} | {r.b}@{r.b_ratio:g}{' (requested)' if r.requested else ''} | "
                     f"{r.benchmark} | {r.difference:+.1f} | [{r.ci_low:.1f}, {r.ci_high:.1f}] | {r.p:.3g} | "
                     f"{'significant' if r.significant else '—'} |")
    lines += ["", f"Paired bootstrap over the same evaluation items (and seeds); Holm's correction across all "
                  f"{info['tests']} comparisons, family-wise {info['alpha']:g}. Rel. % differences are taken with "
                  "the full-data model drawn on the same items."]
    return "\n".join(lines) + "\n"
