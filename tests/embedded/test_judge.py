"""The MM-Vet-like set's rule-based judge."""

import pytest

from selectbench.embedded.judge import describe_judge


def test_describe_judge_gives_partial_credit():
    facts, count = [[3, "top left"], [5, "center"]], 2
    full = "There are 2 digits: a 3 at the top left and a 5 at the center."
    half = "There are 2 digits: a 3 at the top left and a 6 at the center."
    assert describe_judge(full, facts, count) == pytest.approx(1.0)
    assert describe_judge(half, facts, count) == pytest.approx(0.6 * 0.5 + 0.2 * 0.5 + 0.2)
    assert describe_judge("", facts, count) == 0.0
