"""The suite's numbers beside published ones, on a results fixture at paper shape: config/paper.yaml's datasets,
methods, ratios, seeds and benchmarks, with the protocol strings lmms-eval runs write (selectbench.evaluation)."""

from __future__ import annotations

import subprocess
import sys
from statistics import mean

import pandas as pd
import pytest
import yaml

from selectbench.evaluation import lmms
from selectbench.evaluation.evaluators import COLUMNS
from selectbench.evaluation.specs import TASKS
from selectbench.report.published import (
    MISSING, RELATIVE, load_published, protocols_path, side_by_side, to_latex, to_markdown, write_published,
)
from selectbench.report.tables import read_published, summarise
from selectbench.selection.registry import discover, expand, reference_method
from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
AVAILABLE = discover(str(ROOT / "methods"))
REFERENCE = reference_method(AVAILABLE)
LABELS = [i.label for i in expand(PAPER["methods"], AVAILABLE)]
JUDGE = lmms.Judge(**PAPER["evaluation"]["lmms_eval"]["judge"])
PUBLISHED = ROOT / "reference" / "published.csv"
XMAS = "XMAS project page (bar chart read by pixel, ±0.15)"
COINCIDE = "COINCIDE Table 1 (reprint)"


def benchmarks(dataset: str) -> list[str]:
    return PAPER["datasets"][dataset]["benchmarks"]


def paper_rows(dataset: str, seeds: list[int] | None = None) -> list[dict]:
    """Long-format rows as lmms-eval runs of the paper grid write them: every metric of every task, its count of
    samples, each labelled with the task's protocol (and the configured judge where the task has one)."""
    ds = PAPER["datasets"][dataset]
    seeds = PAPER["seeds"] if seeds is None else seeds
    runs = [(REFERENCE, 1.0, s) for s in (PAPER["reference_seeds"] if seeds == PAPER["seeds"] else seeds)]
    runs += [(m, float(r), s) for m in LABELS for r in ds["ratios"] for s in seeds]
    rows = []
    for i, (method, ratio, seed) in enumerate(runs):
        for j, bench in enumerate(ds["benchmarks"]):
            task = TASKS[bench]
            label = lmms.protocol(task, lmms.PINNED_VERSION, JUDGE if task.judge else None)
            full = 70.37 + 2 * j
            value = full if method == REFERENCE else full * (0.8 + 0.3 * ratio) - 0.11 * (i % 7) + 0.5 * seed
            for metric in (*task.metrics, "samples"):
                row = {"dataset": dataset, "method": method, "ratio": ratio, "seed": seed, "benchmark": bench,
                       "metric": metric, "value": 1000.0 if metric == "samples" else round(value, 4),
                       "protocol": label}
                assert tuple(row) == COLUMNS
                rows.append(row)
    return rows


def paper_summary(dataset: str, seeds: list[int] | None = None) -> list[dict]:
    return summarise(paper_rows(dataset, seeds), REFERENCE, benchmarks(dataset), PAPER["report"]["chance_margin"])


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return load_published(PUBLISHED)


def cell(table: pd.DataFrame, method: str, ratio: float, column: str) -> str:
    hit = table[(table["method"] == method) & (table["ratio"] == f"{ratio:g}")]
    assert len(hit) == 1, (method, ratio)
    return hit.iloc[0][column]


def columns(table: pd.DataFrame, **match) -> list[str]:
    return [h for h, c in table.attrs["columns"].items() if all(c.get(k) == v for k, v in match.items())]


def test_fixture_is_the_paper_grid():
    for dataset in ("llava665k", "visionflan"):
        summary = paper_summary(dataset)
        ratios = PAPER["datasets"][dataset]["ratios"]
        assert len(summary) == 1 + len(LABELS) * len(ratios)
        assert {e["method"] for e in summary} == {REFERENCE, *PAPER["methods"]}
        proto = summary[0]["protocols"]
        assert all(p.startswith(f"lmms-eval {lmms.PINNED_VERSION}: ") for p in proto.values())
        assert proto["mmvet"].endswith(f"judge {JUDGE.model}; greedy") and "judge" not in proto["vqav2_val"]
        assert all(e["relative"] is not None for e in summary)


def test_llava665k_published_numbers_sit_only_in_their_own_labelled_columns(published):
    summary = paper_summary("llava665k")
    bench = benchmarks("llava665k")
    table = side_by_side(summary, published, "llava665k", bench)
    assert len(set(table.columns)) == len(table.columns)
    # every published number of the dataset is in exactly one column, its source's, or shown nowhere when no
    # suite benchmark stands beside it (VizWiz, SQA-I, MME, LLaVA-W)
    for row in published[published["dataset"] == "llava665k"].itertuples(index=False):
        where = columns(table, kind="published", source=row.source, published_benchmark=row.benchmark)
        shown = set(row.suite_benchmarks) & {*bench, RELATIVE}
        assert len(where) == (1 if shown else 0), (row.source, row.benchmark)
        if shown:
            assert cell(table, row.method, row.ratio, where[0]) == f"{row.value:.1f}" + (" *" if row.note else "")
    # suite columns hold the suite's numbers only; methods it did not run are "—" there
    entries = {(e["method"], f"{e['ratio']:g}"): e for e in summary}
    for head in columns(table, kind="suite"):
        b = table.attrs["columns"][head]["benchmark"]
        for r in table.itertuples(index=False):
            e = entries.get((r.method, r.ratio))
            got = table.loc[(table["method"] == r.method) & (table["ratio"] == r.ratio), head].item()
            want = MISSING if e is None else f"{(e['relative'] if b == RELATIVE else e['benchmarks'][b])[0]:.1f}"
            assert got == want, (head, r.method, r.ratio)
    # the same benchmark under two protocols: two columns, two labels, two protocol texts
    suite, paper = columns(table, benchmark="vqav2_val")
    assert suite == f"vqav2_val [suite: lmms-eval {lmms.PINNED_VERSION} vqav2_val]"
    assert paper == "vqav2_testdev [COINCIDE T1, VQAv2 test-dev, LLaVA scripts]"
    assert "VQAv2 val (not test-dev)" in table.attrs["columns"][suite]["protocol"]
    assert "test-dev" in table.attrs["columns"][paper]["protocol"]
    assert cell(table, "full", 1.0, paper) == "79.1" != cell(table, "full", 1.0, suite)
    for b in bench:
        heads = columns(table, benchmark=b)
        assert len({h.split(" [", 1)[1] for h in heads}) == len(heads)                  # distinct labels
        assert len({table.attrs["columns"][h]["protocol"] for h in heads}) == len(heads)  # distinct protocols
    assert columns(table, benchmark="textvqa_val", kind="published") == [
        "textvqa [COINCIDE T1, TextVQA val with OCR tokens, LLaVA scripts]"]
    assert columns(table, benchmark="mmvet", kind="published") == []          # nobody published MM-Vet here
    # relative performance: the suite's, XMAS's ARP and COINCIDE's Rel. in three columns
    rel = columns(table, benchmark=RELATIVE)
    assert [table.attrs["columns"][h]["source"] for h in rel] == ["suite", XMAS, COINCIDE]
    suite_rel, arp, coincide_rel = rel
    assert cell(table, "xmas", 0.1, arp) == "95.4" and cell(table, "xmas", 0.1, coincide_rel) == MISSING
    assert cell(table, "random", 0.2, coincide_rel) == "95.8" and cell(table, "random", 0.2, arp) == "96.3"
    assert cell(table, "perplexity", 0.1, arp) == "92.4 *"                  # the figure's MP, middle perplexity
    # methods the suite did not run: their rows, published numbers only
    for method, ratio in (("coincide", 0.2), ("d2_pruning", 0.1), ("semdedup", 0.5), ("self_sup", 0.2)):
        assert cell(table, method, ratio, "seeds") == MISSING
        assert all(cell(table, method, ratio, h) == MISSING for h in columns(table, kind="suite"))
    assert cell(table, "coincide", 0.2, coincide_rel) == "97.4" and cell(table, "coincide", 0.2, paper) == "76.5"
    # a method nobody published: published columns all "—"
    assert all(cell(table, "gradient", 0.3, h) == MISSING for h in columns(table, kind="published"))
    assert table.iloc[0]["method"] == REFERENCE
    assert not (table == "0.0").any().any() and not (table == "0").any().any()


def test_visionflan_gets_the_xmas_arp_only(published):
    summary = paper_summary("visionflan")
    table = side_by_side(summary, published, "visionflan", benchmarks("visionflan"))
    (arp,) = columns(table, kind="published")
    assert arp == "ARP [XMAS, paper's benchmark set, chart ±0.15]"
    assert table.attrs["columns"][arp]["benchmark"] == RELATIVE
    assert cell(table, "xmas", 0.15, arp) == "100.2" and cell(table, "el2n", 0.05, arp) == "88.7"
    assert cell(table, "gradient", 0.1, arp) == MISSING and cell(table, "full", 1.0, arp) == MISSING
    assert cell(table, "coincide", 0.1, arp) == "97.0"
    assert all(cell(table, "coincide", 0.05, h) == MISSING for h in columns(table, kind="suite"))
    assert len(table) == len(summary) + 2                    # coincide at 5% and 10%, published only
    assert not any(COINCIDE in line for line in table.attrs["legend"])


def test_markdown_and_latex_carry_the_labels_and_the_legend(published):
    summary = paper_summary("llava665k")
    table = side_by_side(summary, published, "llava665k", benchmarks("llava665k"))
    md = to_markdown(table, "llava665k")
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("| method |"))
    full = next(line for line in lines if line.startswith("| full | 1 |"))
    header, row = head.strip("| ").split(" | "), full.strip("| ").split(" | ")
    assert header == list(table.columns) and row[header.index(
        "vqav2_testdev [COINCIDE T1, VQAv2 test-dev, LLaVA scripts]")] == "79.1"
    assert "never comparable cell for cell across protocols" in md
    assert "vqav2_val: lmms-eval 0.7.3: VQAv2 val (not test-dev), VQA soft accuracy" in md
    assert "VQAv2 test-dev (evaluation server, not val)" in md and f"judge {JUDGE.model}" in md
    assert "perplexity_middle is the suite's perplexity" in md
    assert "el2n at 0.2, Rel: printed as ≈90" in md
    assert "COINCIDE Table 1 (reprint) also publishes vizwiz, sqa_img, mme, llava_w" in md
    tex = to_latex(table, "llava665k")
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")].splitlines()[1:]
    assert len(body) == len(table) and all(line.count(" & ") == len(table.columns) - 1 for line in body)
    assert "vqav2\\_testdev" in tex and "{\\scriptsize COINCIDE T1, VQAv2 test-dev, LLaVA scripts}" in tex
    assert "coincide & 0.2 & --- &" in tex and "chart $\\pm$0.15" in tex and "—" not in tex
    assert "never comparable cell for cell" in tex


def test_seeds_intervals_and_undefined_relative_are_shown_as_such(published):
    summary = paper_summary("llava665k", seeds=[0, 1, 2])
    xmas = next(e for e in summary if e["method"] == "xmas" and e["ratio"] == 0.2)
    xmas["ci"] = {"benchmarks": {"vqav2_val": (60.04, 63.96)}, "relative": "undefined"}
    rnd = next(e for e in summary if e["method"] == "random" and e["ratio"] == 0.2)
    rnd["relative"], rnd["relative_missing"] = None, "full data scored 0 on mmvet"
    table = side_by_side(summary, published, "llava665k", benchmarks("llava665k"))
    (vqa,) = columns(table, kind="suite", benchmark="vqav2_val")
    (rel,) = columns(table, kind="suite", benchmark=RELATIVE)
    assert cell(table, "xmas", 0.2, vqa).endswith("[60.0, 64.0]") and cell(table, "xmas", 0.2, rel).endswith("[n/a]")
    assert "±" in cell(table, "el2n", 0.2, vqa) and cell(table, "el2n", 0.2, "seeds") == "3"
    assert cell(table, "random", 0.2, rel) == MISSING
    assert any("full data scored 0 on mmvet" in line for line in table.attrs["legend"])


def test_write_published_writes_the_table_or_a_note(tmp_path, published):
    summary = paper_summary("llava665k")
    stem = tmp_path / "tables" / "llava665k_published"
    write_published(summary, PUBLISHED, "llava665k", benchmarks("llava665k"), stem)
    table = side_by_side(summary, published, "llava665k", benchmarks("llava665k"))
    back = pd.read_csv(stem.with_suffix(".csv"), dtype=str, keep_default_na=False)
    assert list(back.columns) == list(table.columns) and (back.values == table.values).all()
    assert stem.with_suffix(".md").read_text() == to_markdown(table, "llava665k")
    assert stem.with_suffix(".tex").read_text() == to_latex(table, "llava665k")
    assert sorted(p.name for p in stem.parent.iterdir()) == [f"llava665k_published.{x}" for x in ("csv", "md", "tex")]
    # the embedded dataset: no published numbers, a note in each file and no table
    digits = tmp_path / "tables" / "digits_published"
    write_published(summary, PUBLISHED, "digits", benchmarks("llava665k"), digits)
    for suffix in (".md", ".tex", ".csv"):
        text = digits.with_suffix(suffix).read_text()
        assert "No published numbers for digits" in text and "llava665k, visionflan" in text
        assert "| method |" not in text and "tabular" not in text and "—" not in text
    assert list(pd.read_csv(digits.with_suffix(".csv")).columns) == ["note"]
    write_published(summary, tmp_path / "absent.csv", "llava665k", benchmarks("llava665k"), tmp_path / "x")
    assert "the file is missing" in (tmp_path / "x.md").read_text()


def test_reference_files_give_every_number_its_source_and_protocol(published, tmp_path):
    assert published["label"].str.len().gt(0).all() and published["protocol"].str.len().gt(0).all()
    assert published["source_protocol"].str.len().gt(0).all()
    assert set(published["source"]) == {XMAS, COINCIDE}
    # the existing reader still sees exactly the ARP figures
    arp = published[published["benchmark"] == "ARP"]
    for dataset in ("llava665k", "visionflan"):
        old = read_published(PUBLISHED, dataset)
        assert len(old) == (arp["dataset"] == dataset).sum() and old[("xmas", 0.1 if dataset == "llava665k" else 0.05)]
    assert read_published(PUBLISHED, "llava665k")[("perplexity_middle", 0.1)] == 92.4
    # COINCIDE's Rel. is the mean over its 10 columns of 100 × method / full: the transcription agrees with it
    coincide = published[published["source"] == COINCIDE].pivot(index="method", columns="benchmark", values="value")
    ten = [b for b in coincide.columns if b != "Rel"]
    assert len(ten) == 10
    for method, row in coincide.iterrows():
        recomputed = mean(100 * row[b] / coincide.loc["full", b] for b in ten)
        if method == "el2n":   # printed as ≈90 in the reprint, and its note says so
            note = published[(published["method"] == "el2n") & (published["benchmark"] == "Rel")].iloc[0].note
            assert "≈90" in note
            continue
        assert recomputed == pytest.approx(row["Rel"], abs=0.051), method
    # a number whose benchmark has no protocol, or given twice, is refused
    bad = tmp_path / "published.csv"
    protocols_path(bad).write_text(protocols_path(PUBLISHED).read_text())
    bad.write_text(PUBLISHED.read_text() + f"{COINCIDE},llava665k,llava-1.5-7b,full,1.0,vizwiz_val,50.0,\n")
    with pytest.raises(ValueError, match="without a protocol.*vizwiz_val"):
        load_published(bad)
    bad.write_text(PUBLISHED.read_text() + f'"{XMAS}",llava665k,llava-1.5-7b,perplexity,0.1,ARP,92.0,\n')
    with pytest.raises(ValueError, match="more than one number.*perplexity 0.1 / ARP"):
        load_published(bad)


def test_the_published_table_writer_does_not_import_torch():
    code = "import sys, selectbench.report.published\nprint('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
