import pytest

from selectbench.evaluation import metrics as M


def test_vqa_normalisation():
    assert M.normalize_vqa_answer("Three.") == "3"
    assert M.normalize_vqa_answer("the number 1,234!") == "number 1234"
    assert M.normalize_vqa_answer("  Yes ") == "yes"


def test_vqa_soft_accuracy_matches_the_official_leave_one_out_formula():
    refs = ["7"] * 2 + ["1"] * 8
    # each leave-one-out subset: matches of "7" are 2 (if a "1" is held out) or 1 (if a "7" is held out)
    expected = (8 * min(1, 2 / 3) + 2 * min(1, 1 / 3)) / 10
    assert M.vqa_soft_accuracy("7", refs) == pytest.approx(expected)
    assert M.vqa_soft_accuracy("seven", ["7"] * 10) == 1.0
    assert M.vqa_soft_accuracy("4", ["7"] * 10) == 0.0


def test_pope_metrics():
    preds = ["Yes", "No", "yes, there is", "There is no 4."]
    labels = ["yes", "yes", "no", "no"]
    m = M.pope_metrics(preds, labels)
    assert m["accuracy"] == 0.5 and m["yes_ratio"] == 0.5
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert M.pope_metrics(["Yes"] * 4, labels)["f1"] == pytest.approx(2 / 3)


def test_circular_eval_requires_every_rotation():
    rotations = M.circular_rotations(["a", "b", "c", "d"], 1)
    assert [opts[ans] for opts, ans in rotations] == ["b"] * 4
    assert M.circular_accuracy([[True] * 4, [True, True, True, False]]) == (0.5, 1.0)
