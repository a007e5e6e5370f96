"""The suite's numbers beside the published ones (XMAS's ARP, COINCIDE's Table 1), one table per dataset.

A published number was obtained under its paper's protocol (VQAv2 test-dev through a server, LLaVA's own
prompts and scripts, another judge), the suite's under lmms-eval's. They are never comparable cell for cell, so
every source gets its own columns, each header names its protocol, and nothing published ever lands in a suite
column. reference/published.csv holds the numbers (with their source), reference/published_protocols.csv says,
per source and published benchmark, which suite benchmark it stands beside and under which protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from selectbench.io import atomic_file

MISSING = "—"
RELATIVE = "relative"      # the suite_benchmarks value of a published relative-performance figure (ARP, Rel.)
SOURCE_WIDE = "*"          # the protocols file's row that describes a whole source
# published method names the suite calls otherwise: the XMAS figure's "MP" is middle-band perplexity (scored there
# by the full-data target: the suite's perplexity with model target_full; its default scores with the proxy, which
# the published table's note on differing settings covers)
METHODS = {"perplexity_middle": "perplexity"}
LEGEND = ("Columns are never comparable cell for cell across protocols: each header names how its numbers were "
          "obtained (harness, split, prompt, judge), and a suite column and a published column of the same "
          "benchmark differ in at least one of them. A published relative figure (ARP, Rel.) is relative to its "
          "own paper's full-data model, not to the suite's.")


def protocols_path(published_path: Path) -> Path:
    """The protocols file that goes with a published-numbers file (its sibling)."""
    return Path(published_path).with_name("published_protocols.csv")


def load_published(path: Path) -> pd.DataFrame:
    """Published numbers joined with their protocol: one row per number, with the suite's method name
    (`method`, the paper's in `published_method`), the suite benchmarks it stands beside (`suite_benchmarks`,
    a list; ["relative"] for ARP / Rel.), its column `label` and full `protocol`, and its source's protocol
    (`source_protocol`). A number whose source or benchmark has no protocol is an error, not a silent column."""
    numbers = pd.read_csv(path, dtype={"note": str}, keep_default_na=False)
    numbers["value"] = numbers["value"].astype(float)
    numbers["ratio"] = numbers["ratio"].astype(float)
    protocols = pd.read_csv(protocols_path(path), dtype=str, keep_default_na=False)
    wide = protocols[protocols["benchmark"] == SOURCE_WIDE].set_index("source")["protocol"]
    per = protocols[protocols["benchmark"] != SOURCE_WIDE]
    merged = numbers.merge(per, on=["source", "benchmark"], how="left", indicator=True)
    unlabelled = merged[merged["_merge"] != "both"][["source", "benchmark"]].drop_duplicates()
    if len(unlabelled):
        raise ValueError(f"{path}: numbers without a protocol in {protocols_path(path).name}: "
                         + "; ".join(f"{s} / {b}" for s, b in unlabelled.itertuples(index=False)))
    sources = set(merged["source"]) - set(wide.index)
    if sources:
        raise ValueError(f"{protocols_path(path)}: no '{SOURCE_WIDE}' row describing {sorted(sources)}")
    merged = merged.drop(columns="_merge").rename(columns={"method": "published_method"})
    merged["method"] = merged["published_method"].map(lambda m: METHODS.get(m, m))
    merged["suite_benchmarks"] = merged["suite_benchmarks"].str.split()
    merged["source_protocol"] = merged["source"].map(wide)
    twice = merged[merged.duplicated(["source", "dataset", "method", "ratio", "benchmark"], keep=False)]
    if len(twice):
        raise ValueError(f"{path}: more than one number for "
                         + "; ".join(sorted({f"{r.source} / {r.dataset} / {r.method} {r.ratio:g} / {r.benchmark}"
                                             for r in twice.itertuples(index=False)})))
    return merged


def suite_label(benchmark: str, protocol: str) -> str:
    """Short header label of a suite column, e.g. "suite: lmms-eval 0.7.3 vqav2_val, judge gpt-4o"; the full
    protocol goes to the legend."""
    found = re.match(r"lmms-eval (\S+?):", protocol)
    if not found:
        return f"suite: {protocol or 'protocol not recorded'}"
    judge = re.search(r"; judge (\S+)$", protocol)
    return f"suite: lmms-eval {found.group(1)} {benchmark}" + (f", judge {judge.group(1)}" if judge else "")


def _suite_rel_label(proto: dict[str, str], over: list[str]) -> str:
    harnesses = {(m.group(1) if (m := re.match(r"(lmms-eval \S+?):", p)) else p) for p in proto.values()}
    harness = harnesses.pop() if len(harnesses) == 1 else "the protocols below"
    scope = f"over {len(over)} of this table's benchmarks" if over else "undefined here"
    return f"suite: {harness or 'protocol not recorded'}, {scope}"


def _suite_cell(ms: tuple[float, float | None] | None, ci=None) -> str:
    if ms is None:
        return MISSING
    m, s = ms
    if ci == "undefined":
        return f"{m:.1f} [n/a]"
    if ci is not None:
        return f"{m:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"
    return f"{m:.1f}" if s is None else f"{m:.1f} ± {s:.1f}"


def _key(method: str, ratio: float) -> tuple[str, float]:
    return method, round(float(ratio), 6)


def side_by_side(summary: list[dict], published: pd.DataFrame, dataset: str, benchmarks: list[str]) -> pd.DataFrame:
    """One row per (method, ratio) in the suite's summary (report.tables.summarise) or in the published numbers
    of `dataset`; per benchmark the suite's column, then one column per source that published a number beside
    it (headed by the paper's own key, e.g. vqav2_testdev beside vqav2_val); then the suite's Rel. % and each
    source's own relative figure (ARP, Rel.). Every header carries its protocol label; a cell with no number is
    "—", never 0; a published cell with a note is marked *. attrs["columns"] describes each column (kind,
    benchmark, source, protocol) and attrs["legend"] holds the lines the renderers print under the table."""
    pub = published[published["dataset"] == dataset]
    proto = {b: (summary[0].get("protocols", {}).get(b, "") if summary else "") for b in benchmarks}
    entries = {_key(e["method"], e["ratio"]): e for e in summary}
    values = {(s, b, _key(m, r)): (v, n) for s, b, m, r, v, n in
              pub[["source", "benchmark", "method", "ratio", "value", "note"]].itertuples(index=False)}
    sources = list(dict.fromkeys(pub["source"]))
    layout: list[tuple[str, dict]] = []      # (header, description) in column order
    placed: set[tuple[str, str]] = set()     # a published column stands beside the first suite column it maps to

    def published_columns(target: str) -> None:
        for source in sources:
            for row in pub[(pub["source"] == source)].drop_duplicates("benchmark").itertuples(index=False):
                if target in row.suite_benchmarks and (source, row.benchmark) not in placed:
                    placed.add((source, row.benchmark))
                    head = f"{row.benchmark} [{row.label}]"
                    layout.append((head, {"kind": "published", "benchmark": target, "source": source,
                                          "published_benchmark": row.benchmark, "protocol": row.protocol}))

    for b in benchmarks:
        layout.append((f"{b} [{suite_label(b, proto[b])}]",
                       {"kind": "suite", "benchmark": b, "source": "suite", "protocol": proto[b]}))
        published_columns(b)
    over = next((e.get("relative_over", benchmarks) for e in summary), benchmarks)
    layout.append((f"Rel. % [{_suite_rel_label(proto, over)}]",
                   {"kind": "suite", "benchmark": RELATIVE, "source": "suite",
                    "protocol": ("mean over " + ", ".join(over) + " of 100 × subset / the suite's full-data model")
                    if over else "undefined (see the legend)"}))
    published_columns(RELATIVE)

    keys = set(entries) | {_key(m, r) for m, r in pub[["method", "ratio"]].itertuples(index=False)}
    reference = summary[0]["method"] if summary else None
    order = sorted(keys, key=lambda k: (k not in entries, k[0] != reference, k[0], k[1]))
    noted: dict[tuple[str, str, str, str], list[float]] = {}
    records = []
    for key in order:
        e = entries.get(key)
        record = {"method": key[0], "ratio": f"{key[1]:g}", "seeds": str(len(e["seeds"])) if e else MISSING}
        for head, col in layout:
            if col["kind"] == "suite":
                if e is None:
                    record[head] = MISSING
                elif col["benchmark"] == RELATIVE:
                    record[head] = _suite_cell(e.get("relative"), (e.get("ci") or {}).get("relative"))
                else:
                    ci = ((e.get("ci") or {}).get("benchmarks") or {}).get(col["benchmark"])
                    record[head] = _suite_cell(e["benchmarks"].get(col["benchmark"]), ci)
                continue
            found = values.get((col["source"], col["published_benchmark"], key))
            record[head] = MISSING if found is None else f"{found[0]:.1f}" + (" *" if found[1] else "")
            if found is not None and found[1]:
                noted.setdefault((col["source"], key[0], col["published_benchmark"], found[1]), []).append(key[1])
        records.append(record)
    table = pd.DataFrame(records, columns=["method", "ratio", "seeds", *(h for h, _ in layout)])
    table.attrs["columns"] = dict(layout)
    table.attrs["legend"] = _legend(pub, proto, layout, summary, noted)
    return table


def _legend(pub: pd.DataFrame, proto: dict[str, str], layout: list[tuple[str, dict]], summary: list[dict],
            noted: dict) -> list[str]:
    lines = [LEGEND, "—: no number (not run here, or not published for that method, ratio and benchmark)."]
    lines.append("Suite (this run): " + "; ".join(f"{b}: {p or 'protocol not recorded'}" for b, p in proto.items())
                 + ".")
    for source in dict.fromkeys(c["source"] for _, c in layout if c["kind"] == "published"):
        rows = pub[pub["source"] == source]
        lines.append(f"{source}: {rows['source_protocol'].iloc[0]}. Columns: "
                     + "; ".join(f"{c['published_benchmark']}: {c['protocol']}" for _, c in layout
                                 if c["source"] == source) + ".")
        shown = {c["published_benchmark"] for _, c in layout if c["source"] == source}
        unshown = [b for b in dict.fromkeys(rows["benchmark"]) if b not in shown]
        if unshown:
            lines.append(f"{source} also publishes {', '.join(unshown)}: no column of this table stands beside "
                         "them, so they are not shown (its own relative figure counts them).")
    renamed = {p: m for p, m in METHODS.items() if p in set(pub["published_method"])}
    lines.append("Published methods are matched to the suite's by name" + (
        " (" + "; ".join(f"{p} is the suite's {m}" for p, m in renamed.items()) + ")" if renamed else "")
        + "; a paper's method settings (score band, proxy model, subset seed) may differ from the suite's.")
    for (source, method, bench, note), ratios in noted.items():
        lines.append(f"* {source}, {method} at {', '.join(f'{r:g}' for r in ratios)}, {bench}: {note}.")
    missing = sorted({e["relative_missing"] for e in summary if e.get("relative_missing")})
    if missing:
        lines.append("Suite Rel. % is — where it is undefined: " + "; ".join(missing) + ".")
    excluded = sorted({x for e in summary for x in e.get("relative_excluded", [])})
    if excluded:
        lines.append("Suite Rel. % leaves out benchmarks the full-data model did not learn: " + "; ".join(excluded)
                     + ".")
    return lines


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, dataset: str, legend: list[str] | None = None) -> str:
    """Markdown table with its legend under it."""
    legend = table.attrs.get("legend", []) if legend is None else legend
    lines = [f"### {dataset}: the suite beside published numbers", "",
             "| " + " | ".join(_md(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines += [""] + [f"{line}\n" for line in legend]
    return "\n".join(lines).rstrip("\n") + "\n"


def _tex(text: str) -> str:
    text = text.replace("\\", "\x00")
    for old, new in (("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"), ("$", "\\$"), ("{", "\\{"),
                     ("}", "\\}"), ("\x00", "\\textbackslash{}"), ("±", "$\\pm$"), ("—", "---"),
                     ("×", "$\\times$"), ("≈", "$\\approx$"), ("–", "--")):
        text = text.replace(old, new)
    return text


def to_latex(table: pd.DataFrame, dataset: str, legend: list[str] | None = None) -> str:
    """LaTeX tabular (booktabs); each header split into its benchmark and, below it, its protocol label."""
    legend = table.attrs.get("legend", []) if legend is None else legend
    split = [re.match(r"(.*?) \[(.*)\]$", c) for c in table.columns]
    names = [_tex(m.group(1) if m else c) for m, c in zip(split, table.columns)]
    labels = [f"{{\\scriptsize {_tex(m.group(2))}}}" if m else "" for m in split]
    lines = [f"% {dataset}: the suite beside published numbers; never comparable cell for cell across protocols",
             "\\begin{tabular}{" + "l" * 3 + "r" * (len(table.columns) - 3) + "}", "\\toprule",
             " & ".join(names) + " \\\\", " & ".join(labels) + " \\\\", "\\midrule"]
    lines += [" & ".join(_tex(str(v)) for v in row) + " \\\\" for row in table.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"\\par{{\\footnotesize {_tex(line)}}}" for line in legend]
    return "\n".join(lines) + "\n"


def no_published_note(dataset: str, published_path: Path) -> str:
    where = Path(published_path)
    have = sorted(set(pd.read_csv(where, usecols=["dataset"])["dataset"])) if where.exists() else []
    return (f"No published numbers for {dataset}: {where.name} has none for it"
            + (f" (it has {', '.join(have)})" if have else " (the file is missing)")
            + ", so there is nothing to set beside the suite's numbers; see tables/" + f"{dataset}.md for them.")


def write_published(summary: list[dict], published_path: Path, dataset: str, benchmarks: list[str],
                    out_stem: Path) -> None:
    """<out_stem>.md, .tex and .csv (the side-by-side table), each published atomically; for a dataset without
    published numbers the three files carry a note saying so instead of an empty table."""
    out_stem = Path(out_stem)
    published = load_published(Path(published_path)) if Path(published_path).exists() else None
    if published is None or not (published["dataset"] == dataset).any():
        note = no_published_note(dataset, Path(published_path))
        texts = {".md": f"### {dataset}: the suite beside published numbers\n\n{note}\n",
                 ".tex": f"% {dataset}: no published numbers\n\\par{{\\footnotesize {_tex(note)}}}\n",
                 ".csv": pd.DataFrame({"note": [note]}).to_csv(index=False)}
    else:
        table = side_by_side(summary, published, dataset, benchmarks)
        texts = {".md": to_markdown(table, dataset), ".tex": to_latex(table, dataset),
                 ".csv": table.to_csv(index=False)}
    for suffix, text in texts.items():
        path = out_stem.with_name(out_stem.name + suffix)
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
