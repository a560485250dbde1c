"""tools/bench_postforward.py: the ratios and table it prints, and a clear error for a bad revision (the timing
itself is a benchmark, not a test)."""
from __future__ import annotations

import pytest

from tools.bench_postforward import OLD, VARIANTS, WORKER, Comparison, main


def test_comparison_ratios_are_medians_over_rounds():
    wall = {OLD[0]: [1.2, 1.0, 5.0], WORKER[0]: [0.2, 0.25, 0.3]}
    cpu = {OLD[0]: [1.1, 1.0, 1.2], WORKER[0]: [0.2, 0.22, 0.5]}
    res = Comparison("abc1234", 3, 40, 16, wall, cpu, {"old": "/tmp/x/core", "new": "core"})
    assert res.ratio(WORKER[0]) == pytest.approx(1.2 / 0.25)  # medians: 1.2 and 0.25
    assert res.ratio(WORKER[0], "cpu") == pytest.approx(1.1 / 0.22)
    assert res.ratio(OLD[0]) == 1.0
    text = res.table()
    assert "| old code: input-size maps, boxes on them | 1.200 | 1.000–5.000 | 1.00 | 1.100 | 1.00 |" in text
    assert "4.80x by wall clock, 5.00x by CPU time" in text
    assert "per-round wall ratios 4.00–16.67" in text  # round by round: 1.2/0.2, 1.0/0.25, 5.0/0.3
    assert VARIANTS[0] == OLD and VARIANTS[-1] == WORKER


def test_bad_revision_is_a_one_line_error(capsys):
    assert main(["--against", "no-such-revision", "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-revision" in err[0] and err[0].startswith("bench_postforward: error:")
