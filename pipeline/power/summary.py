"""Power per design and term, with Monte-Carlo intervals and failed fits counted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.simulation.design import StudyDesign

from .replicate import COUNTED

COLUMNS = ["model", "design", "therapists", "clients_per_therapist", "sessions", "attendance",
           "term", "effect", "replications", "failed", "singular", "rejections", "power",
           "conf_low", "conf_high", "mean_estimate", "alpha"]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for ``k`` successes in ``n`` (NaN when ``n`` is 0).

    The Clopper-Pearson bounds are quantiles of beta distributions, computed directly
    (R: ``binom.test(k, n)$conf.int``, which uses ``qbeta`` in the same way;
    ``scipy.stats.binomtest`` finds the same bounds by root-finding, to about 1e-12).
    """
    from scipy import special

    if n == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, tail))
    high = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1.0 - tail))
    return low, high


def power_table(designs: Sequence[StudyDesign], results: Sequence[Sequence[dict[str, Any]]],
                terms: Sequence[str], effects: dict[str, float], alpha: float,
                model: str = "primary") -> pd.DataFrame:
    """One row per design x term.

    ``power`` = share of counted fits (status fitted or singular) with p < ``alpha``;
    ``failed`` replicates (not converged, not estimable, errors) are counted and excluded
    from the denominator; ``conf_low``/``conf_high`` are the Clopper-Pearson 95% interval
    of the power (Monte-Carlo error only).
    """
    rows = []
    for design, reps in zip(designs, results, strict=True):
        counted = [r for r in reps if r["status"] in COUNTED]
        n_singular = sum(r["status"] == "singular" for r in reps)
        for term in terms:
            p = np.array([r["terms"][term]["p_value"] for r in counted])
            est = np.array([r["terms"][term]["estimate"] for r in counted])
            k = int((p < alpha).sum())
            low, high = clopper_pearson(k, len(counted))
            rows.append({
                "model": model, "design": design.label, "therapists": design.therapists,
                "clients_per_therapist": design.clients_per_therapist,
                "sessions": design.sessions, "attendance": design.attendance, "term": term,
                "effect": effects[term], "replications": len(reps),
                "failed": len(reps) - len(counted), "singular": n_singular, "rejections": k,
                "power": k / len(counted) if counted else float("nan"),
                "conf_low": low, "conf_high": high,
                "mean_estimate": float(est.mean()) if len(est) else float("nan"),
                "alpha": alpha,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


TARGET_COLUMNS = ["term", "target", "design", "planned_sessions", "power"]


def smallest_adequate(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per term, the smallest design (fewest planned sessions in all, then fewest
    therapists) whose power reaches ``target``; ``design`` is empty when none does."""
    out = []
    for term, rows in table.groupby("term", sort=False):
        sized = rows.assign(size=rows["therapists"] * rows["clients_per_therapist"]
                            * rows["sessions"])
        ok = sized[sized["power"] >= target]
        ok = ok.sort_values(["size", "therapists", "design"], kind="mergesort")
        best = ok.iloc[0] if len(ok) else None
        out.append({"term": term, "target": target,
                    "design": "" if best is None else best["design"],
                    "planned_sessions": np.nan if best is None else int(best["size"]),
                    "power": np.nan if best is None else float(best["power"])})
    return pd.DataFrame(out, columns=TARGET_COLUMNS)
