"""The closed-form recall-precision trade-off printed by the ruptures report."""

from __future__ import annotations

import math

import pytest

from pipeline.ruptures.tradeoff import prior_mean_rule_tradeoff


def _sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_one_prior_session_by_hand() -> None:
    # p = 1: the difference has SD sqrt(2); z(0.8) = 0.8416212; bar = 3 - 0.8416212 * 1.4142136
    # = 1.8097678; an ordinary session passes with P(Z > 1.2796853) = 0.1003255; 12 sessions
    # give 10 ordinary ones: precision 0.8 / (0.8 + 1.003255) = 0.4436422.
    tr = prior_mean_rule_tradeoff(1, 12.0)
    assert tr.bar_for_recall == pytest.approx(1.8097678, abs=1e-6)
    assert tr.false_share == pytest.approx(0.1003255, abs=1e-6)
    assert tr.precision_at_recall == pytest.approx(0.4436422, abs=1e-6)


def test_the_bar_for_precision_gives_that_precision_and_its_recall() -> None:
    pre, n = 3, 10.0
    tr = prior_mean_rule_tradeoff(pre, n)
    sd = math.sqrt(1 + 1 / pre)
    hit = _sf((tr.bar_for_precision - 3) / sd)
    precision = hit / (hit + (n - 2) * _sf(tr.bar_for_precision / sd))
    assert precision == pytest.approx(0.8, abs=1e-9)
    assert tr.recall_at_precision == pytest.approx(hit, abs=1e-12)
    # the squeeze: raising the bar for precision costs recall
    assert tr.bar_for_precision > tr.bar_for_recall and tr.recall_at_precision < 0.8
