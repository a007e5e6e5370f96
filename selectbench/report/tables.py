"""Aggregation: per-model evaluation rows → one long-format table per dataset, Markdown and LaTeX summaries
(method × ratio rows, benchmark columns, mean ± std over seeds, relative performance vs full data)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev
from typing import Collection

from selectbench.io import atomic_file
from selectbench.evaluation.specs import scoring
from selectbench.evaluation.evaluators import COLUMNS


def read_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                row["ratio"], row["seed"], row["value"] = float(row["ratio"]), int(row["seed"]), float(row["value"])
                row["protocol"] = row.get("protocol") or ""
                rows.append(row)
    if not rows:
        raise ValueError("no evaluation rows to aggregate")
    return rows


# the long table: the evaluation rows and, where per-item scores can recompute a row, its 95% bootstrap interval
# over the items (empty otherwise: sample counts, per-split numbers, metrics an evaluator logs only as a total)
TABLE_COLUMNS = (*COLUMNS, "ci_low", "ci_high")


def write_long(rows: list[dict], out: Path, intervals: dict[tuple, tuple[float, float]] | None = None) -> None:
    intervals = intervals or {}
    with atomic_file(Path(out)) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["method"], r["ratio"], r["seed"], r["benchmark"], r["metric"])):
            ci = intervals.get((row["method"], float(row["ratio"]), int(row["seed"]), row["benchmark"], row["metric"]))
            writer.writerow({**{k: row.get(k, "") for k in COLUMNS},
                             "ci_low": "" if ci is None else round(ci[0], 4),
                             "ci_high": "" if ci is None else round(ci[1], 4)})


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return mean(values), (stdev(values) if len(values) > 1 else None)


def protocols(rows: list[dict], benchmarks: list[str]) -> dict[str, str]:
    """The protocol of each benchmark's rows (run.COLUMNS "protocol"): numbers obtained under different protocols
    never share a column, so a benchmark with rows under two of them is an error."""
    out = {}
    for b in benchmarks:
        found = {r.get("protocol") or "" for r in rows if r["benchmark"] == b}
        if len(found) > 1:
            raise ValueError(f"{b}: rows under different protocols {sorted(found)} cannot share a column")
        out[b] = found.pop() if found else ""
    return out


def at_chance(rows: list[dict], reference: str, benchmarks: list[str], margin: float) -> dict[str, str]:
    """Benchmarks on which the full-data reference is within `margin` points of chance (its benchmark's
    chance_level metric), with the reason: relative to a model that learned nothing, a subset's score is noise."""
    out = {}
    proto = protocols(rows, benchmarks)
    for b in benchmarks:
        level = scoring(b, proto[b]).chance_level
        if level is None:
            continue
        metric, chance = level
        values = [r["value"] for r in rows if r["method"] == reference and r["benchmark"] == b and r["metric"] == metric]
        if values and mean(values) <= chance + margin:
            out[b] = f"{b}: full data {metric} {mean(values):.1f} is within {margin:g} points of chance ({chance:g})"
    return out


def summarise(rows: list[dict], reference: str, benchmarks: list[str], chance_margin: float | None = None
              ) -> list[dict]:
    """One entry per (method, ratio): primary metric per benchmark over seeds, and relative performance
    = mean over benchmarks of 100 × subset / full (full = the reference method's mean over its seeds).
    With chance_margin, benchmarks the reference did not learn (see at_chance) are left out of Rel. % and
    the entry says so."""
    proto = protocols(rows, benchmarks)
    primary = {b: scoring(b, proto[b]).primary for b in benchmarks}
    by_key: dict[tuple, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["benchmark"] in primary and r["metric"] == primary[r["benchmark"]]:
            by_key[(r["method"], r["ratio"])][r["seed"]][r["benchmark"]] = r["value"]
    full_runs = [v for (m, _), seeds in by_key.items() if m == reference for v in seeds.values()]
    if not full_runs:
        raise ValueError(f"no rows of the reference method {reference!r}: relative performance is undefined")
    full = {b: mean(run[b] for run in full_runs) for b in benchmarks}
    unlearned = at_chance(rows, reference, benchmarks, chance_margin) if chance_margin is not None else {}
    relative_over = [b for b in benchmarks if b not in unlearned]
    zero = [b for b in relative_over if full[b] == 0]
    summary = []
    for (method, ratio), seeds in sorted(by_key.items(), key=lambda kv: (kv[0][0] != reference, kv[0])):
        entry = {"method": method, "ratio": ratio, "seeds": sorted(seeds), "benchmarks": {}, "protocols": proto}
        rels = []
        for seed, values in seeds.items():
            missing = [b for b in benchmarks if b not in values]
            if missing:
                raise ValueError(f"{method} ratio {ratio} seed {seed}: no {primary[missing[0]]} for {missing}")
            if not zero and relative_over:
                rels.append(mean(100 * values[b] / full[b] for b in relative_over))
        for b in benchmarks:
            entry["benchmarks"][b] = _mean_std([values[b] for values in seeds.values()])
        # undefined (not 0) when the full-data reference scored 0 somewhere: the table says why
        entry["relative"] = _mean_std(rels) if rels else None
        entry["relative_missing"] = f"full data scored 0 on {', '.join(zero)}" if zero else None
        entry["relative_excluded"] = sorted(unlearned.values())
        entry["relative_over"] = [] if zero else relative_over
        summary.append(entry)
    return summary


def _fmt(ms: tuple[float, float | None] | None, tex: bool = False,
         ci: tuple[float, float] | str | None = None) -> str:
    """mean (± std over seeds where there is no interval), with its 95% interval where there is one."""
    if ms is None:
        return "n/a"
    m, s = ms
    if ci == "undefined":
        return f"{m:.1f} [n/a]"
    if ci is not None:
        low, high = ci
        return f"{m:.1f}\\,{{\\scriptsize[{low:.1f}, {high:.1f}]}}" if tex else f"{m:.1f} [{low:.1f}, {high:.1f}]"
    if s is None:
        return f"{m:.1f}"
    return f"{m:.1f} $\\pm$ {s:.1f}" if tex else f"{m:.1f} ± {s:.1f}"


def _mark(entry: dict, bench: str, tex: bool = False) -> str:
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


def to_markdown(summary: list[dict], benchmarks: list[str], dataset: str, published: dict | None = None,
                task_aware: Collection[str] = ()) -> str:
    """task_aware: method labels whose selection used evaluation-task data; marked † with a footnote."""
    proto = _protocols(summary, benchmarks)
    head = ["method", "ratio", "seeds"] + [f"{b} ({scoring(b, proto[b]).primary})" for b in benchmarks] + ["Rel. %"]
    if published:
        head.append("published Rel. % (paper's protocol)")
    lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["method"] + (" †" if e["method"] in task_aware else ""), f"{e['ratio']:g}", str(len(e["seeds"]))]
        cells += [_fmt(e["benchmarks"][b], ci=_ci(e, b)) + _mark(e, b) for b in benchmarks]
        cells.append(_fmt(e["relative"], ci=_ci(e)))
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
                      f"benchmark (paired bootstrap over the same items and seeds; Holm-corrected across the "
                      f"table's {comparisons['tests']} comparisons, family-wise {comparisons['alpha']:g}). Smallest "
                      "difference these items and seeds could detect (median half-width of the paired 95% "
                      "intervals): " + ", ".join(f"{b} {w:.1f}" for b, w in comparisons["detectable"].items())
                      + " points."]
    if any(_ci(e) == "undefined" for e in summary):
        lines += ["", "[n/a]: in some bootstrap draws the full-data model scored 0 on a benchmark, where Rel. % is "
                      "undefined, so that interval is not given."]
    lines += ["", f"Values: {values}, on each benchmark's own scale (percent). Rel. % = mean over "
              "benchmarks of 100 × subset / full data. Chance levels: "
              + "; ".join(f"{b}: {scoring(b, proto[b]).chance or 'n/a'}" for b in benchmarks) + "."]
    lines += ["", "**Protocol** — " + protocol_text(proto)]
    if published:
        lines += ["", ("Published Rel. % is the paper's, under its own protocol (LLaVA's evaluation scripts, VQAv2 "
                       "test-dev, MMBench test); it is shown beside, never mixed into, the numbers measured here.")]
    return "\n".join(lines) + "\n"


def to_latex(summary: list[dict], benchmarks: list[str], dataset: str, task_aware: Collection[str] = ()) -> str:
    cols = "ll" + "r" * (len(benchmarks) + 1)
    head = ["Method", "Ratio"] + [b.replace("_", "\\_") for b in benchmarks] + ["Rel.\\,\\%"]
    spread = "mean [95% bootstrap interval]" if any(e.get("ci") for e in summary) else "mean $\\pm$ std over seeds"
    lines = [f"% {dataset}: {spread}; Rel. = mean of 100 x subset / full",
             f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    for e in summary:
        cells = [e["method"].replace("_", "\\_") + ("$^\\dagger$" if e["method"] in task_aware else ""),
                 f"{e['ratio']:g}"]
        cells += [_fmt(e["benchmarks"][b], tex=True, ci=_ci(e, b)) + _mark(e, b, tex=True) for b in benchmarks]
        cells.append(_fmt(e["relative"], tex=True, ci=_ci(e)))
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


def attach_intervals(summary: list[dict], item_rows, reference: str, benchmarks: list[str],
                     reps: int, seed: int) -> None:
    """Each entry's 95% bootstrap intervals (selectbench.report.intervals) from the per-item scores, as
    entry["ci"]; benchmarks without per-item scores keep their plain cells."""
    from selectbench.report.intervals import ItemTable, cell_intervals

    table = item_rows if isinstance(item_rows, ItemTable) else ItemTable(item_rows)
    primary = {b: scoring(b, e_proto).primary for b, e_proto in summary[0]["protocols"].items() if b in benchmarks}
    ref = next(e for e in summary if e["method"] == reference)
    cells = [(e["method"], float(e["ratio"]), [int(s) for s in e["seeds"]]) for e in summary]
    intervals = cell_intervals(table, cells, (float(ref["ratio"]), [int(s) for s in ref["seeds"]]), reference,
                               primary, ref["relative_over"], reps=reps, seed=seed)
    for e in summary:
        e["ci"] = intervals[(e["method"], float(e["ratio"]))]


WIN, LOSS = "▲", "▼"


def attach_comparisons(summary: list[dict], item_rows, baseline: str, reps: int, seed: int,
                       alpha: float = 0.05) -> None:
    """Each entry against the baseline method at the same ratio, per benchmark: a paired bootstrap over the same
    items (and seeds), Holm-corrected across the whole table. entry["marks"][bench] is WIN or LOSS where the
    difference is significant; summary[0]["detectable"][bench] is the median half-width of the paired 95%
    intervals (differences smaller than that could not be told from 0 with these items and seeds)."""
    from statistics import median

    from selectbench.report.intervals import ItemTable, holm, paired_differences

    table = item_rows if isinstance(item_rows, ItemTable) else ItemTable(item_rows)
    primary = {b: scoring(b, proto).primary for b, proto in summary[0]["protocols"].items()}
    base = {e["ratio"]: e for e in summary if e["method"] == baseline}
    pairs, entries = [], {}
    for e in summary:
        other = base.get(e["ratio"])
        if other is None or e is other or e["method"] == baseline:
            continue
        key = (e["method"], float(e["ratio"]), other["method"], float(other["ratio"]))
        entries[key] = e
        pairs.append(((e["method"], float(e["ratio"]), [int(s) for s in e["seeds"]]),
                      (other["method"], float(other["ratio"]), [int(s) for s in other["seeds"]])))
    results = paired_differences(table, pairs, primary, reps=reps, seed=seed)
    tests = {(key, bench): r["p"] for key, per in results.items() for bench, r in per.items()}
    significant = holm(tests, alpha)
    for key, per in results.items():
        entries[key]["marks"] = {bench: (WIN if r["difference"] > 0 else LOSS)
                                 for bench, r in per.items() if (key, bench) in significant}
    widths = defaultdict(list)
    for per in results.values():
        for bench, r in per.items():
            widths[bench].append((r["interval"][1] - r["interval"][0]) / 2)
    for e in summary:
        e.setdefault("marks", {})
    summary[0]["comparisons"] = {"baseline": baseline, "tests": len(tests), "alpha": alpha,
                                 "detectable": {b: median(w) for b, w in widths.items()}}
