"""Why a rule that compares a session with the ones before it cannot have both recall and
precision: the recall-precision trade-off of such a rule, in closed form.

A rupture rule of the "drop below the mean of the ``p`` sessions before" kind compares a
session's score with that mean. With scores wobbling independently around a client's
level with SD ``sigma`` (the within-client SD), the difference has SD
``sigma * sqrt(1 + 1/p)``. A 3-sigma drop is found with probability
``P(Z > (bar - 3) / sd)`` and an ordinary session passes the bar with probability
``P(Z > bar / sd)`` (bars in units of sigma). A client with ``n`` rated sessions and one
real drop has ``n - 2`` ordinary sessions that could pass (the first session has no
"before", the drop is not ordinary), so precision is
``hit / (hit + (n - 2) * false)``. The ruptures report prints these numbers next to the
simulated detection benchmark, which they explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.distributions import norm_ppf, norm_sf


@dataclass(frozen=True)
class TradeOff:
    """The numbers of the trade-off, bars in within-client SDs."""

    bar_for_recall: float       #: bar that finds ``recall`` of 3-SD drops
    false_share: float          #: share of ordinary sessions passing that bar
    precision_at_recall: float  #: precision at that bar
    bar_for_precision: float    #: bar that gives ``precision``
    recall_at_precision: float  #: recall at that bar


def prior_mean_rule_tradeoff(pre_sessions: int, sessions_per_client: float,
                             drop: float = 3.0, recall: float = 0.8,
                             precision: float = 0.8) -> TradeOff:
    """Recall and precision of a prior-mean rule for a ``drop``-SD rupture (module doc).

    ``sessions_per_client`` is the mean number of rated sessions of a client with one
    real drop. The bar for a given precision is found by bisection (precision rises
    with the bar; the bracket 0-6 SDs holds it for the settings used here).
    """
    sd = float(np.sqrt(1 + 1 / pre_sessions))
    ordinary = sessions_per_client - 2

    def precision_at(bar: float) -> float:
        hit = float(norm_sf((bar - drop) / sd))
        return hit / (hit + ordinary * float(norm_sf(bar / sd)))

    bar_r = drop - float(norm_ppf(recall)) * sd
    false_share = float(norm_sf(bar_r / sd))
    # brentq, as scipy.optimize: monotone function, tolerance well below printed digits.
    from scipy.optimize import brentq

    bar_p = float(brentq(lambda b: precision_at(b) - precision, 0.0, 6.0))
    return TradeOff(
        bar_for_recall=bar_r,
        false_share=false_share,
        precision_at_recall=recall / (recall + ordinary * false_share),
        bar_for_precision=bar_p,
        recall_at_precision=float(norm_sf((bar_p - drop) / sd)),
    )
