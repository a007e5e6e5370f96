"""load_results / load_items: the long-format files as typed DataFrames, and clear errors for other files."""

import pytest

from selectbench.evaluation.evaluators import COLUMNS
from selectbench.evaluation.items import ITEM_COLUMNS, item_rows, write_items
from selectbench.report import load_items, load_results


def test_items_written_and_loaded_back(tmp_path):
    key = {"dataset": "d", "method": "random", "ratio": 0.1, "seed": 2}
    rows = item_rows(key, "gqa", ["q1", "007"], {"exact_match": [100.0, 0.0]})
    path = tmp_path / "d" / "eval" / "random" / "r0.1_s2.items.csv"
    path.parent.mkdir(parents=True)
    write_items(rows, path)
    frame = load_items(tmp_path)
    assert list(frame.columns) == list(ITEM_COLUMNS)
    assert frame["item"].tolist() == ["q1", "007"]  # ids stay strings
    assert frame["value"].mean() == 50.0 and frame["seed"].tolist() == [2, 2]


def test_results_table_loads_typed(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "d.csv").write_text(",".join(COLUMNS) + "\nd,full,1,0,pope,f1,96.9,builtin\n")
    frame = load_results(tmp_path)
    assert frame.loc[0, "value"] == 96.9 and frame.loc[0, "ratio"] == 1.0 and frame.loc[0, "seed"] == 0


def test_a_file_of_another_kind_is_named(tmp_path):
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: not a long-format table"):
        load_results(bad)
    with pytest.raises(FileNotFoundError, match="no per-item results"):
        load_items(tmp_path / "empty")


def test_mismatched_item_counts_are_an_error():
    with pytest.raises(ValueError, match="gqa: 1 exact_match values for 2 items"):
        item_rows({}, "gqa", ["a", "b"], {"exact_match": [1.0]})


def test_intervals_load_as_numbers_and_missing_ones_as_nan(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "d.csv").write_text(",".join(COLUMNS) + ",ci_low,ci_high\n"
                                               "d,full,1,0,pope,f1,96.9,builtin,95.6,98.0\n"
                                               "d,full,1,0,pope,yes_ratio,51.0,builtin,,\n")
    frame = load_results(tmp_path)
    assert frame.loc[0, "ci_low"] == 95.6 and frame.loc[1, "ci_low"] != frame.loc[1, "ci_low"]  # NaN


def test_tables_made_from_the_long_ones_are_not_read_as_results(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "d.csv").write_text(",".join(COLUMNS) + "\nd,full,1,0,pope,f1,96.9,builtin\n")
    for name in ("d_comparisons.csv", "d_published.csv", "d_costs.csv", "overview.csv"):
        (tmp_path / "tables" / name).write_text("a,b\n1,2\n")
    assert load_results(tmp_path)["dataset"].tolist() == ["d"]


def _eval_file(root, method="random", name="r0.1_s0.csv", rows=None):
    path = root / "d" / "eval" / method / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = rows or [f"d,{method},0.1,0,pope,f1,85.5,builtin", f"d,{method},0.1,0,gqa,accuracy,40.0,builtin"]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("rows, message", [
    (["d,random,0.1,0,pope,f1,150.0,builtin"], r"row 2: pope f1 = 150.0, outside 0–100 percent"),
    (["d,random,0.1,0,pope,samples,-3,lmms"], r"row 2: samples = -3.0 is not a count"),
    (["d,xmas,0.1,0,pope,f1,85.5,builtin"], r"row 2: method 'xmas' in the file of method 'random'"),
    (["d,random,0.2,0,pope,f1,85.5,builtin"], r"row 2: ratio 0.2 in the file of ratio 0.1"),
    (["d,random,0.1,0,pope,f1,85.5,builtin", "d,random,0.1,0,pope,f1,85.5,builtin"], r"row 3: pope f1 given twice"),
    (["d,random,0.1,0,pope,f1,85.5,builtin", "d,random,0.1,0,gqa,accura"], r"row 3 has no value"),
    (["d,random,0.1,0,pope,f1,high,builtin"], r"column value"),
])
def test_edited_or_truncated_evaluation_files_are_named(tmp_path, rows, message):
    """A hand-edited or cut-off evaluation CSV stops the report, naming the file and the row, instead of a table
    showing POPE F1 150 or one method's rows under another's name."""
    from selectbench.report.tables import read_rows

    path = _eval_file(tmp_path, rows=rows)
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        read_rows([path])


def test_the_same_result_in_two_files_is_named(tmp_path):
    from selectbench.report.tables import read_rows

    whole = _eval_file(tmp_path)
    part = _eval_file(tmp_path, name="r0.1_s0.pope.csv", rows=["d,random,0.1,0,pope,f1,85.5,builtin"])
    assert len(read_rows([whole])) == 2 and len(read_rows([part])) == 1
    with pytest.raises(ValueError, match=rf"{whole} and {part}: the same result twice"):
        read_rows([whole, part])
    wrong_part = _eval_file(tmp_path, name="r0.1_s0.gqa.csv", rows=["d,random,0.1,0,pope,f1,85.5,builtin"])
    with pytest.raises(ValueError, match="benchmark 'pope' in the file of benchmark 'gqa'"):
        read_rows([wrong_part])
