"""One simulated study: design, alliance, the model's predictors, the outcome."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline.instruments import Instrument
from pipeline.simulation.alliance import SUBSCALES, AllianceProcess, alliance_scores
from pipeline.simulation.design import StudyDesign, session_rows
from pipeline.simulation.outcome import ModelTruth, simulate_outcome

#: Builds a model's rows and predictors from scored rows (the project's design code).
DesignBuilder = Callable[[pd.DataFrame], pd.DataFrame]


def simulate_study(
    design: StudyDesign,
    process: AllianceProcess,
    truth: ModelTruth,
    rng: np.random.Generator,
    build: DesignBuilder,
    *,
    instrument: Instrument | None = None,
) -> pd.DataFrame:
    """Simulate a study and return the rows and predictors its model is fitted to.

    The alliance is simulated (as scores, or items scored through ``instrument``), the
    rows with both forms are passed to ``build`` -- the same function that builds the
    model's predictors from real scored data (time, person-mean disaggregation, subsets)
    -- and the outcome is drawn from ``truth`` conditional on those predictors, so the
    model holds exactly on the rows it is fitted to.

    Returns
    -------
    pandas.DataFrame
        ``build``'s output with ``wellbeing`` drawn from the model.
    """
    rows = session_rows(design, rng)
    rows = alliance_scores(rows, process, rng, instrument)
    keep = rows["has_alliance"].to_numpy() & rows["has_outcome"].to_numpy()
    keep &= rows[list(SUBSCALES)].notna().all(axis=1).to_numpy()
    scored = rows.loc[keep, ["client_id", "therapist_id", "session", *SUBSCALES]]
    # The outcome is drawn after the predictors exist; a placeholder keeps the design
    # code's complete-row filter from dropping rows for a missing outcome.
    data = build(scored.assign(wellbeing=0.0).reset_index(drop=True))
    data = data.copy()
    data["wellbeing"] = simulate_outcome(data, truth, rng)
    return data
