"""Corrupted or edited intermediate results are refused where they are read, naming the file (and the row): the
evaluation rows the report reads, the per-item scores of its intervals, subsets the fine-tune and the export read,
the published pool and its manifest, feature shards, features and scores (.npz). None becomes a table."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from selectbench.data.datadir import DataDir
from selectbench.data.prepare import prepare
from selectbench.data.validate import PoolError
from selectbench.evaluation.evaluators import COLUMNS
from selectbench.evaluation.items import ITEM_COLUMNS

# Evaluation rows (results/<dataset>/eval/<method>/r<ratio>_s<seed>.csv), read by the report

GOOD_ROWS = ["d,random,0.1,0,pope,f1,85.5,builtin", "d,random,0.1,0,gqa,accuracy,40.0,builtin"]


def _eval_file(root, text, name="r0.1_s0.csv", method="random"):
    path = root / "d" / "eval" / method / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _csv(rows, header=",".join(COLUMNS)):
    return header + "\n" + "".join(r + "\n" for r in rows)


# (case id, file text, file name, message)
EVAL_CASES = [
    ("value_above_100", _csv(["d,random,0.1,0,pope,f1,150.0,builtin"]), "r0.1_s0.csv",
     r"row 2: pope f1 = 150.0, outside 0–100 percent"),
    ("value_negative", _csv(["d,random,0.1,0,gqa,accuracy,-1,builtin"]), "r0.1_s0.csv", r"row 2: gqa accuracy"),
    ("count_negative", _csv(["d,random,0.1,0,pope,samples,-3,lmms"]), "r0.1_s0.csv", r"row 2: samples = -3.0"),
    ("value_not_a_number", _csv(["d,random,0.1,0,pope,f1,high,builtin"]), "r0.1_s0.csv", r"column value"),
    ("method_relabelled", _csv(["d,xmas,0.1,0,pope,f1,85.5,builtin"]), "r0.1_s0.csv",
     r"row 2: method 'xmas' in the file of method 'random'"),
    ("ratio_relabelled", _csv(["d,random,0.2,0,pope,f1,85.5,builtin"]), "r0.1_s0.csv", r"row 2: ratio 0.2"),
    ("seed_relabelled", _csv(["d,random,0.1,3,pope,f1,85.5,builtin"]), "r0.1_s0.csv", r"row 2: seed 3"),
    ("dataset_relabelled", _csv(["e,random,0.1,0,pope,f1,85.5,builtin"]), "r0.1_s0.csv", r"row 2: dataset 'e'"),
    ("benchmark_of_another_part", _csv(["d,random,0.1,0,gqa,accuracy,40.0,builtin"]), "r0.1_s0.pope.csv",
     r"row 2: benchmark 'gqa' in the file of benchmark 'pope'"),
    ("row_twice", _csv([GOOD_ROWS[0], GOOD_ROWS[0]]), "r0.1_s0.csv", r"row 3: pope f1 given twice"),
    ("truncated_mid_row", _csv(GOOD_ROWS)[:-25], "r0.1_s0.csv", r"row 3 has no (value|metric)"),
    ("empty_file", "", "r0.1_s0.csv", r"not a readable evaluation file"),
    ("header_only", _csv([]), "r0.1_s0.csv", r"no rows"),
    ("not_utf8", _csv(GOOD_ROWS).encode().replace(b"gqa", b"gq\xe9"), "r0.1_s0.csv", r"not a readable evaluation"),
    ("another_kind_of_file", "a,b\n1,2\n", "r0.1_s0.csv", r"not a evaluation file \(no \["),
]


@pytest.mark.parametrize("text, name, message", [c[1:] for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES])
def test_an_edited_or_truncated_evaluation_file_is_named(tmp_path, text, name, message):
    from selectbench.report.tables import read_rows

    good = _eval_file(tmp_path, _csv(r.replace(",0.1,0,", ",0.1,1,") for r in GOOD_ROWS), "r0.1_s1.csv")
    read_rows([good])  # the good file reads
    path = _eval_file(tmp_path, text, name)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .*{message}"):
        read_rows([good, path])


def test_the_same_result_in_two_files_is_named(tmp_path):
    from selectbench.report.tables import read_rows

    first = _eval_file(tmp_path, _csv(GOOD_ROWS), "r0.1_s0.csv")
    second = tmp_path / "copy" / "r0.1_s0.csv"  # outside the eval/<method>/ layout: its place says nothing
    second.parent.mkdir()
    shutil.copy(first, second)
    with pytest.raises(ValueError, match=rf"{re.escape(str(first))} and {re.escape(str(second))}: the same result"):
        read_rows([first, second])


# Per-item scores (r<ratio>_s<seed>.items.csv), read for the intervals and paired comparisons

ITEM_ROWS = [f"d,random,0.1,0,gqa,q{i},exact_match,{100.0 * (i % 2)}" for i in range(4)]


# (case id, file text, message)
ITEM_CASES = [
    ("truncated_mid_row", _csv(ITEM_ROWS, ",".join(ITEM_COLUMNS))[:-8], r"row 5 has no value"),
    ("value_not_a_number", _csv(ITEM_ROWS[:3] + ["d,random,0.1,0,gqa,q3,exact_match,yes"], ",".join(ITEM_COLUMNS)),
     r"column value"),
    ("column_missing", _csv([r.rsplit(",", 1)[0] for r in ITEM_ROWS], ",".join(ITEM_COLUMNS[:-1])),
     r"no \['value'\]"),
    ("empty_file", "", r"not a readable"),
    ("item_twice", _csv(ITEM_ROWS + ITEM_ROWS[:1], ",".join(ITEM_COLUMNS)), r"row 6: gqa exact_match item q0 twice"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES])
def test_a_corrupt_items_file_is_named(tmp_path, text, message):
    from selectbench.report.intervals import ItemTable

    seed_1 = [r.replace(",0.1,0,", ",0.1,1,") for r in ITEM_ROWS]
    good = _eval_file(tmp_path, _csv(seed_1, ",".join(ITEM_COLUMNS)), "r0.1_s1.items.csv")
    ItemTable.from_files([good])
    path = _eval_file(tmp_path, text, "r0.1_s0.items.csv")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .*{message}"):
        ItemTable.from_files([good, path])


def test_an_items_file_cut_at_a_line_boundary_loses_its_intervals_with_a_warning(tmp_path, caplog):
    """Accepted by design, named: a run scored on other items than its benchmark's first file is left out of the
    intervals and paired comparisons (its rows show no interval, never one over other items)."""
    from selectbench.report.intervals import ItemTable

    seed_1 = [r.replace(",0.1,0,", ",0.1,1,") for r in ITEM_ROWS]
    good = _eval_file(tmp_path, _csv(seed_1, ",".join(ITEM_COLUMNS)), "r0.1_s1.items.csv")
    cut = _eval_file(tmp_path, _csv(ITEM_ROWS[:3], ",".join(ITEM_COLUMNS)), "r0.1_s0.items.csv")
    table = ItemTable.from_files([good, cut])
    assert table.has("random", 0.1, [1], "gqa", "exact_match") and not table.has("random", 0.1, [0], "gqa",
                                                                                     "exact_match")
    assert f"{cut}: gqa exact_match scored on other items" in caplog.text


def test_an_evaluation_file_cut_at_a_line_boundary_stops_the_table_naming_the_run(tmp_path):
    """A file that lost whole rows passes the row checks; the table then misses a benchmark of that run and stops,
    naming the run (method, ratio, seed: its file's place), instead of averaging Rel. % over fewer benchmarks."""
    from selectbench.report.tables import read_rows, summarise

    rows = [r.replace("accuracy", "exact_match") for r in GOOD_ROWS]  # gqa's primary metric
    full = _eval_file(tmp_path, _csv([r.replace("random,0.1", "full,1") for r in rows]), "r1_s0.csv", "full")
    summarise(read_rows([full, _eval_file(tmp_path, _csv(rows), "r0.1_s0.csv")]), "full", ["pope", "gqa"])
    cut = _eval_file(tmp_path, _csv(rows[:1]), "r0.1_s0.csv")
    with pytest.raises(ValueError, match=r"random ratio 0.1 seed 0: no exact_match for \['gqa'\]"):
        summarise(read_rows([full, cut]), "full", ["pope", "gqa"])


# Subsets ({rows, ids} and their .meta.json), read by the fine-tune and the export through read_subset


@pytest.fixture
def data(pool, tmp_path) -> DataDir:
    prepare(pool.config(), tmp_path / "data")
    return DataDir(tmp_path / "data")


def _subset(tmp_path, content, meta=None):
    path = tmp_path / "r0.5_s0.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    if meta is not None:
        path.with_suffix(".meta.json").write_bytes(meta if isinstance(meta, bytes) else json.dumps(meta).encode())
    return path


GOOD_SUBSET = {"rows": [0, 2, 4], "ids": ["coco-9", "vg-2", "share-4"]}

# (case id, subset content, sidecar content or None, which file the message names, message)
SUBSET_CASES = [
    ("not_json", b'{"rows": [0, 2', None, "subset", r"malformed JSON"),
    ("not_an_object", [0, 2, 4], None, "subset", r"expected a JSON object, got list"),
    ("rows_missing", {"ids": ["coco-9"]}, None, "subset", r"'rows' must be a list of row indices"),
    ("rows_not_integers", {"rows": [0, 2.0]}, None, "subset", r"'rows' must be a list of row indices"),
    ("rows_booleans", {"rows": [True, False]}, None, "subset", r"'rows' must be a list of row indices"),
    ("row_out_of_range", {"rows": [0, 60]}, None, "subset", r"rows \[60\] outside the pool of 6 records"),
    ("row_negative", {"rows": [-1, 2]}, None, "subset", r"rows \[-1\] outside the pool"),
    ("row_repeated", {"rows": [0, 2, 2]}, None, "subset", r"row 2 repeated"),
    ("ids_of_another_pool", {"rows": [0, 2], "ids": ["coco-9", "gqa-1"]}, None, "subset",
     r"row 2 is id 'vg-2' .* the subset says 'gqa-1'"),
    ("ids_and_rows_disagree_in_number", {"rows": [0, 2], "ids": ["coco-9"]}, None, "subset", r"1 ids for 2 rows"),
    ("sidecar_of_another_pool", GOOD_SUBSET, {"pool_sha256": "0" * 64}, "meta", r"pool_sha256 000000000000… differs"),
    ("sidecar_corrupt", GOOD_SUBSET, b'{"pool_sha256": ', "meta", r"malformed JSON"),
]


@pytest.mark.parametrize("content, meta, named, message", [c[1:] for c in SUBSET_CASES],
                         ids=[c[0] for c in SUBSET_CASES])
def test_a_corrupt_or_foreign_subset_is_named(data, tmp_path, content, meta, named, message):
    from selectbench.data.pools import read_subset

    assert read_subset(data, _subset(tmp_path, GOOD_SUBSET, {"pool_sha256": data.pool_hash()})) == [0, 2, 4]
    path = _subset(tmp_path, content, meta)
    if meta is None:
        path.with_suffix(".meta.json").unlink()
    file = path.with_suffix(".meta.json") if named == "meta" else path
    with pytest.raises(PoolError, match=rf"{re.escape(str(file))}: {message}"):
        read_subset(data, path)


def test_the_fine_tune_refuses_a_corrupt_subset_with_a_nonzero_exit(data, tmp_path):
    """Through the command line the rules call: exit status ≠ 0 and the file named, nothing trained."""
    import subprocess
    import sys

    path = _subset(tmp_path, b'{"rows": [0, 2')
    run = subprocess.run([sys.executable, "-m", "selectbench.cli", "finetune", "--data", str(data.path), "--base",
                          str(tmp_path / "base"), "--model-config", "{}", "--subset", str(path), "--out",
                          str(tmp_path / "ft")], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and f"{path}: malformed JSON" in run.stderr
    assert not (tmp_path / "ft").exists()


# The published data folder


def test_a_pool_edited_after_publishing_is_named(data):
    records = json.loads((data.path / "pool.json").read_text())
    records[1]["conversations"][1]["value"] = "No"
    (data.path / "pool.json").write_text(json.dumps(records))
    with pytest.raises(PoolError, match=rf"{re.escape(str(data.path / 'pool.json'))}: changed since the prepare"):
        DataDir(data.path).pool


@pytest.mark.parametrize("raw, message", [
    (b'{"pool": "pool.json", ', "malformed JSON"),
    (b'["pool.json"]', r"expected a JSON object \(the data folder's manifest\), got list"),
], ids=["manifest_truncated", "manifest_not_an_object"])
def test_a_corrupt_manifest_is_named(data, raw, message):
    (data.path / "manifest.json").write_bytes(raw)
    with pytest.raises(ValueError, match=rf"{re.escape(str(data.path / 'manifest.json'))}: {message}"):
        DataDir(data.path)


# Features, feature shards and scores (.npz), written by one job and read by another


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _truncated(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _garbage(path):
    path.write_bytes(b"\x93NUMPY not really" * 8)


def _empty(path):
    path.write_bytes(b"")


def _flipped(path):
    """One byte of the first array's data changed: the zip's CRC no longer matches."""
    raw = bytearray(path.read_bytes())
    raw[120] ^= 0xFF
    path.write_bytes(bytes(raw))


CORRUPTIONS = [("truncated", _truncated), ("garbage", _garbage), ("empty", _empty), ("bit_flip", _flipped)]


@pytest.mark.parametrize("corrupt", [c[1] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_feature_shard_is_named_by_the_gather(tmp_path, corrupt):
    from selectbench.features.sharding import gather

    first = _npz(tmp_path / "shard0-of-2.npz", rows=np.arange(0, 3), loss=np.ones((3, 2)))
    second = _npz(tmp_path / "shard1-of-2.npz", rows=np.arange(3, 6), loss=np.ones((3, 2)))
    corrupt(second)
    with pytest.raises(ValueError, match=rf"{re.escape(str(second))}: not a readable \.npz file"):
        gather([first, second], 6, tmp_path / "feature.npz")
    assert not (tmp_path / "feature.npz").exists()


# (case id, the second shard's arrays, message)
SHARD_CASES = [
    ("no_rows_array", {"loss": np.ones((3, 2))}, r"no 'rows' array"),
    ("rows_of_a_larger_pool", {"rows": np.arange(3, 9), "loss": np.ones((6, 2))},
     r"rows outside the pool of 6"),
    ("rows_covered_twice", {"rows": np.arange(2, 5), "loss": np.ones((3, 2))}, r"rows already covered"),
    ("array_not_row_aligned", {"rows": np.arange(3, 6), "loss": np.ones((2, 2))},
     r"array 'loss' has 2 rows for 3 row indices"),
]


@pytest.mark.parametrize("arrays, message", [c[1:] for c in SHARD_CASES], ids=[c[0] for c in SHARD_CASES])
def test_a_foreign_feature_shard_is_named_by_the_gather(tmp_path, arrays, message):
    from selectbench.features.sharding import gather

    first = _npz(tmp_path / "shard0-of-2.npz", rows=np.arange(0, 3), loss=np.ones((3, 2)))
    second = _npz(tmp_path / "shard1-of-2.npz", **arrays)
    with pytest.raises(ValueError, match=rf"{re.escape(str(second))}: {message}"):
        gather([first, second], 6, tmp_path / "feature.npz")


def _context(data, **artifacts):
    """perplexity's context at its default parameters, as the score step builds it."""
    from selectbench.selection.base import Context
    from selectbench.selection.registry import discover, expand
    from tests.conftest import ROOT

    params = expand({"perplexity": {}}, discover([str(ROOT / "methods")]))[0].param_dict
    return Context(dataset="d", pool=data.pool, image_root=data.image_root, artifacts=artifacts, params=params)


@pytest.mark.parametrize("corrupt", [c[1] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_feature_is_named_by_the_method_that_scores_with_it(data, tmp_path, corrupt):
    from selectbench.selection.registry import discover
    from tests.conftest import ROOT

    feature = _npz(tmp_path / "stats.npz", nll=np.ones((6, 1)), covered=np.ones(6, bool))
    method = discover([str(ROOT / "methods")])["perplexity"]()
    ctx = _context(data, proxy_token_stats=feature)
    assert len(method.score(ctx)["nll"]) == 6
    corrupt(feature)
    with pytest.raises(ValueError, match=rf"{re.escape(str(feature))}: not a readable \.npz file"):
        method.score(ctx)


def test_a_feature_without_the_array_a_method_reads_is_named(data, tmp_path):
    from selectbench.selection.registry import discover
    from tests.conftest import ROOT

    feature = _npz(tmp_path / "stats.npz", covered=np.ones(6, bool))
    method = discover([str(ROOT / "methods")])["perplexity"]()
    with pytest.raises(ValueError, match=rf"{re.escape(str(feature))}: no array \['nll'\]"):
        method.score(_context(data, proxy_token_stats=feature))


@pytest.mark.parametrize("corrupt", [c[1] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_scores_are_named_by_the_select_step(data, tmp_path, corrupt):
    from selectbench.selection.registry import Instance
    from selectbench.selection.run import select
    from tests.conftest import ROOT

    scores = _npz(tmp_path / "scores.npz", score=np.arange(6.0))
    corrupt(scores)
    with pytest.raises(ValueError, match=rf"{re.escape(str(scores))}: not a readable \.npz file"):
        select([str(ROOT / "methods")], data, "d", Instance("random", "random", ()), scores, 0.5, 0,
               tmp_path / "subset.json")
    assert not (tmp_path / "subset.json").exists()


def test_a_corrupt_part_left_for_resuming_is_named(tmp_path):
    """A feature job resumes from the parts a killed run finished; parts are published atomically, so a corrupt
    one means a disk fault, and the resuming job stops naming it."""
    from selectbench.features.sharding import run_parts

    work = tmp_path / "feature.npz.parts"
    run_parts(["ckpt-1"], lambda part: {"sv": np.ones((2, 3))}, work)
    _truncated(work / "part0000.npz")
    with pytest.raises(ValueError, match=rf"{re.escape(str(work / 'part0000.npz'))}: not a readable \.npz"):
        run_parts(["ckpt-1"], lambda part: {"sv": np.ones((2, 3))}, work)


@pytest.mark.parametrize("name, raw", [("eval/pope.json", b'[{"id": "p0", '), ("pool.json", b"")],
                         ids=["evaluation_set_truncated", "pool_emptied"])
def test_a_corrupt_file_of_the_data_folder_is_named(data, name, raw):
    manifest = {**data.manifest, "eval": {"pope": "eval/pope.json"}}
    (data.path / "manifest.json").write_text(json.dumps(manifest))
    (data.path / "eval").mkdir()
    (data.path / "eval" / "pope.json").write_text("[]")
    (data.path / name).write_bytes(raw)
    fresh = DataDir(data.path)
    with pytest.raises(PoolError, match=re.escape(str(data.path / name))):
        fresh.eval_items("pope") if name.startswith("eval/") else fresh.pool


def test_a_corrupt_settings_file_stops_the_step_naming_it(data, tmp_path):
    """Jobs read their configuration from content-addressed files (results/settings/): a damaged one stops the
    step with exit status 2 and the argument and file named (argparse's message)."""
    import subprocess
    import sys

    settings = tmp_path / "instance.random-0123456789ab.json"
    settings.write_text('{"label": "random", ')
    run = subprocess.run([sys.executable, "-m", "selectbench.cli", "select", "--methods-dir", "methods", "--data",
                          str(data.path), "--dataset", "d", "--instance", f"@{settings}", "--scores", "x.npz",
                          "--ratio", "0.5", "--seed", "0", "--out", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert f"argument --instance: invalid read_settings value: '@{settings}'" in run.stderr


def test_scores_of_another_pool_are_named_by_the_select_step(data, tmp_path):
    """Same-shaped scores of a larger or smaller pool would rank the wrong rows without an error."""
    from selectbench.selection.registry import Instance
    from selectbench.selection.run import select
    from tests.conftest import ROOT

    scores = _npz(tmp_path / "scores.npz", nll=np.arange(9.0))
    with pytest.raises(ValueError, match=rf"{re.escape(str(scores))}: score array 'nll' has 9 rows, .* has 6"):
        select([str(ROOT / "methods")], data, "d", Instance("perplexity", "perplexity", (("band", "middle"),)),
               scores, 0.5, 0, tmp_path / "subset.json")


@pytest.mark.parametrize("stamp", ["job.json", "part0000.json"])
def test_a_damaged_resume_stamp_redoes_the_work_instead_of_stopping_every_retry(tmp_path, stamp):
    """Accepted, and recovered: a stamp that does not parse says nothing to trust, so its parts are computed
    again (a JSONDecodeError here would fail the job on every retry until someone deleted the folder)."""
    from selectbench.features.sharding import claim_parts, run_parts

    work = tmp_path / "feature.npz.parts"
    claim_parts(work, "fp-1")
    run_parts(["ckpt-1"], lambda part: {"sv": np.ones((2, 3))}, work)
    (work / stamp).write_text('{"fing')
    claim_parts(work, "fp-1")
    out = run_parts(["ckpt-1"], lambda part: {"sv": np.zeros((2, 3))}, work)  # recomputed: zeros, not the ones
    assert (out["ckpt-1"]["sv"] == 0).all()
