"""The power analysis's alliance process estimated from the data: recovery of a known
process, levels the checks drop, where the values came from, and the settings' rules."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SettingsError
from pipeline.models.design import prepare
from pipeline.power.process import CORR_RANGE, PARAMETERS, estimate_process, process_table
from pipeline.power.run import with_alliance_process
from pipeline.power.settings import power_settings
from pipeline.simulation.alliance import AllianceProcess, alliance_scores
from pipeline.simulation.design import StudyDesign, session_rows

TRUE = AllianceProcess(mean=(3.7, 3.6, 3.9), growth=0.03, therapist_sd=0.2, client_sd=0.5,
                       session_sd=0.35, client_corr=0.6, session_corr=0.5)
DESIGN = {"designs": [{"therapists": 4, "clients_per_therapist": 3, "sessions": 4}],
          "replications": 5, "seed": 1}


def _rows(process: AllianceProcess, seed: int, therapists: int = 60, clients: int = 10,
          sessions: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = session_rows(StudyDesign(therapists=therapists, clients_per_therapist=clients,
                                    sessions=sessions), rng)
    rows = alliance_scores(rows, process, rng, None)
    rows = rows[rows["has_alliance"]].dropna(subset=["goal", "task", "bond"])
    return prepare(rows[["client_id", "therapist_id", "session", "goal", "task", "bond"]]
                   .reset_index(drop=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_known_process_is_recovered(seed: int) -> None:
    """7,200 simulated sessions (60 therapists x 10 clients x 12 sessions): every value
    within a few standard errors of the truth (the SEs judged from repeated draws)."""
    est, notes = estimate_process(_rows(TRUE, seed))
    assert notes == []
    assert np.allclose(est.mean, TRUE.mean, atol=0.1)
    assert est.growth == pytest.approx(TRUE.growth, abs=0.004)
    assert est.therapist_sd == pytest.approx(TRUE.therapist_sd, abs=0.06)
    assert est.client_sd == pytest.approx(TRUE.client_sd, rel=0.08)
    assert est.session_sd == pytest.approx(TRUE.session_sd, rel=0.04)
    assert est.client_corr == pytest.approx(TRUE.client_corr, abs=0.06)
    assert est.session_corr == pytest.approx(TRUE.session_corr, abs=0.04)


def test_independent_subscales_give_correlations_near_zero() -> None:
    """The between-client correlation is corrected for the session noise in client means
    (without the correction, correlated session noise would show up as client_corr)."""
    process = AllianceProcess(mean=(3.0, 3.0, 3.0), growth=0.0, therapist_sd=0.0,
                              client_sd=0.4, session_sd=0.6, client_corr=0.0,
                              session_corr=0.8)
    est, _ = estimate_process(_rows(process, 3, clients=10, sessions=4))
    assert est.session_corr == pytest.approx(0.8, abs=0.03)
    assert est.client_corr == pytest.approx(0.0, abs=0.08)
    assert CORR_RANGE[0] <= est.client_corr <= CORR_RANGE[1]


def test_one_therapist_has_no_therapist_sd_and_says_why() -> None:
    est, notes = estimate_process(_rows(TRUE, 4, therapists=1, clients=40))
    assert est.therapist_sd == 0.0
    assert len(notes) == 1 and notes[0].startswith(
        "goal, task and bond: therapist level dropped: 1 therapist"), notes
    assert est.client_sd == pytest.approx(TRUE.client_sd, rel=0.25)


def test_settings_without_a_process_leave_it_to_the_data(tmp_path: Path) -> None:
    """No power.alliance: the process comes from the scored rows and the table says so;
    power.alliance given: it is used as set."""
    rows = _rows(TRUE, 5, therapists=20, clients=6, sessions=8)
    scored = tmp_path / "scored.csv"
    rows[["client_id", "therapist_id", "session", "goal", "task", "bond"]].assign(
        wellbeing=20.0 + np.random.default_rng(0).normal(size=len(rows))).to_csv(
        scored, index=False)
    settings = power_settings(DESIGN)
    assert settings.alliance is None
    estimated, table = with_alliance_process(settings, {}, scored, None)
    assert estimated.alliance is not None
    assert list(table["parameter"]) == list(PARAMETERS)
    assert set(table["source"]) == {"these data"}
    assert table["value"].iloc[0] == pytest.approx(estimated.alliance.mean[0])

    given = {"mean": [3.0, 3.1, 3.2], "growth": 0.0, "therapist_sd": 0.1, "client_sd": 0.3,
             "session_sd": 0.2, "client_corr": 0.5, "session_corr": 0.4}
    explicit, table = with_alliance_process(power_settings({**DESIGN, "alliance": given}),
                                            {}, None, None)
    assert explicit.alliance is not None and explicit.alliance.session_sd == 0.2
    assert set(table["source"]) == {"power.alliance"}
    assert table.loc[table["parameter"] == "alliance_mean_task", "value"].item() == 3.1


def test_item_level_power_needs_the_latent_process() -> None:
    with pytest.raises(SettingsError) as err:
        power_settings({**DESIGN, "level": "items"})
    assert "power.alliance" in str(err.value) and "power.level" in str(err.value)
    with pytest.raises(SettingsError, match=r"power\.alliance must be a mapping"):
        power_settings({**DESIGN, "alliance": [1, 2]})


def test_process_table_lists_every_value_in_order() -> None:
    table = process_table(TRUE, "power.alliance")
    assert table["value"].tolist() == [3.7, 3.6, 3.9, 0.03, 0.2, 0.5, 0.35, 0.6, 0.5]
    assert set(table["kind"]) == {"alliance"}


def test_power_report_shows_the_process_it_simulated_from(root: Path, tmp_path: Path) -> None:
    """The power report's alliance-process table is results/power_truth.csv's rows of
    kind `alliance`, labelled, in the report's number format, with their origin."""
    from pipeline.report import render
    from pipeline.tables import number

    truth = pd.read_csv(root / "results" / "power_truth.csv")
    process = truth[truth["kind"] == "alliance"]
    assert list(process["parameter"]) == list(PARAMETERS)
    out = tmp_path / "power.html"
    render(root / "notebooks" / "power.py", out, {"params_file": str(root / "params.yaml")},
           cwd=root)
    page = out.read_text(encoding="utf-8")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for parameter, value in zip(process["parameter"], process["value"], strict=True):
        # correlations without the leading zero (table_style.yaml: no_leading_zero)
        kind = "simulated_correlation" if parameter.endswith("_corr") else "simulated"
        shown = number(value, kind)
        assert f"{PARAMETERS[parameter]} {shown}" in text, parameter
        assert not parameter.endswith("_corr") or shown.startswith("."), shown
    assert "The alliance process was estimated from these data" in text
