"""Simulation-based power: against an independent R calculation, type-I error, failed fits
counted, byte-identical across worker counts, settings checked."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.errors import SettingsError
from pipeline.models import load_specs
from pipeline.parallel import ExecutionSettings
from pipeline.power.run import TooManyFailedFits, run_power, truth_table
from pipeline.power.settings import power_settings
from pipeline.power.summary import smallest_adequate
from pipeline.power.truth import ASSUMED, planned_components, sd_source, truth_from_fit
from pipeline.simulation.outcome import ModelTruth

ROOT = Path(__file__).resolve().parents[1]

FIXTURES = Path(__file__).parent / "fixtures" / "power"
ALLIANCE = {"mean": [3.7, 3.6, 3.9], "growth": 0.03, "therapist_sd": 0.2, "client_sd": 0.5,
            "session_sd": 0.35, "client_corr": 0.6, "session_corr": 0.5}
TRUTH = ModelTruth(
    fixed={"Intercept": 21.0, "time": 0.15, "goal_within": 0.5, "task_within": 0.0,
           "bond_within": 0.3, "goal_between": 1.2, "task_between": 0.8, "bond_between": 0.5},
    sd={"therapist": 1.0, "client": 2.5, "client_time": 0.1, "residual": 2.0})


def _settings(**overrides: Any) -> Any:
    block = {"designs": [{"therapists": 4, "clients_per_therapist": 3, "sessions": 4}],
             "replications": 6, "seed": 3, **overrides}
    return power_settings(block, ALLIANCE)


def test_power_equals_an_independent_lme4_calculation() -> None:
    """The R fixture (power_reference.R: R's RNG, lme4, lmerTest) and ours agree within
    Monte-Carlo error for every term; the null term's rejection rate is alpha."""
    cfg = yaml.safe_load((FIXTURES / "design.yaml").read_text(encoding="utf-8"))
    reference = pd.read_csv(FIXTURES / "power_reference.csv").set_index("term")
    n = 150
    settings = power_settings({"designs": [cfg["design"]], "replications": n,
                               "seed": cfg["seed"], "alpha": cfg["alpha"]}, cfg["alliance"])
    truth = ModelTruth(fixed=cfg["truth"]["fixed"], sd=cfg["truth"]["sd"])
    table, _ = run_power(settings, truth, ExecutionSettings(workers=1), {})
    ours = table.set_index("term")
    assert (ours["failed"] <= 0.1 * n).all()
    for term, row in reference.iterrows():
        counted = n - int(ours.loc[term, "failed"])
        r_counted = int(row["replications"] - row["failed"])
        p_ours, p_r = float(ours.loc[term, "power"]), float(row["power"])
        pooled = (p_ours * counted + p_r * r_counted) / (counted + r_counted)
        se = np.sqrt(pooled * (1 - pooled) * (1 / counted + 1 / r_counted))
        assert abs(p_ours - p_r) <= 3.5 * max(se, 0.01), (term, p_ours, p_r)
    # Type-I error: task_within has no effect.
    null = float(ours.loc["task_within", "power"])
    assert abs(null - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / n)
    # The power rises with the effect: time (0.15 per session) is detected more often
    # than bond_within (0.3 on a small within-client SD).
    assert ours.loc["time", "power"] > ours.loc["task_within", "power"]


def test_results_are_byte_identical_with_one_or_two_workers(tmp_path: Path) -> None:
    settings = _settings(replications=8)
    one, _ = run_power(settings, TRUTH, ExecutionSettings(workers=1), {})
    two, _ = run_power(settings, TRUTH, ExecutionSettings(workers=2, chunk_size=2), {})
    one.to_csv(tmp_path / "one.csv", index=False)
    two.to_csv(tmp_path / "two.csv", index=False)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert (one["replications"] == 8).all()


def test_adding_replicates_keeps_the_earlier_ones(tmp_path: Path) -> None:
    """Replicate i of a design has the same data however many replicates run."""
    from pipeline.power.run import power_tasks

    few = power_tasks(_settings(replications=3), TRUTH, {}, None)
    many = power_tasks(_settings(replications=9), TRUTH, {}, None)
    assert [t["seed"].generate_state(2).tolist() for t in few] == [
        t["seed"].generate_state(2).tolist() for t in many[:3]]


def test_failed_fits_are_counted_and_too_many_stop_the_run() -> None:
    # One session per client: a client slope on time cannot be estimated.
    settings = _settings(designs=[{"therapists": 4, "clients_per_therapist": 3,
                                   "sessions": 1}], replications=3)
    with pytest.raises(TooManyFailedFits, match=r"3 of 3 simulated studies of design 4x3x1"):
        run_power(settings, TRUTH, ExecutionSettings(), {})
    lenient = _settings(designs=[{"therapists": 4, "clients_per_therapist": 3,
                                  "sessions": 1}], replications=3, max_failed_share=1.0)
    table, target = run_power(lenient, TRUTH, ExecutionSettings(), {})
    assert (table["failed"] == 3).all()
    assert table["power"].isna().all()
    assert (target["design"] == "").all()


def test_smallest_adequate_design() -> None:
    table = pd.DataFrame({
        "term": ["goal_within"] * 3, "design": ["big", "small", "mid"],
        "therapists": [40, 10, 20], "clients_per_therapist": [10, 10, 10],
        "sessions": [10, 10, 10], "power": [0.95, 0.5, 0.85]})
    best = smallest_adequate(table, 0.8).iloc[0]
    assert best["design"] == "mid" and best["planned_sessions"] == 2000
    none = smallest_adequate(table.assign(power=0.1), 0.8).iloc[0]
    assert none["design"] == "" and np.isnan(none["planned_sessions"])


def test_truth_from_the_fitted_model_and_settings() -> None:
    coefs = pd.DataFrame({"model": "primary", "term": ["Intercept", "time", "goal_within"],
                          "estimate": [20.0, 0.1, 0.7]})
    comps = pd.DataFrame({"model": "primary",
                          "component": ["therapist", "client", "client_time", "residual"],
                          "sd": [1.0, 2.0, 0.1, 2.0]})
    truth = truth_from_fit("primary", {"goal_within": 0.3}, coefs, comps)
    assert truth.fixed == {"Intercept": 20.0, "time": 0.1, "goal_within": 0.3}
    assert truth.sd["client"] == 2.0
    with pytest.raises(SettingsError, match="'mood', which is not a term"):
        truth_from_fit("primary", {"mood": 0.3}, coefs, comps)
    with pytest.raises(SettingsError, match="no usable fit"):
        truth_from_fit("primary", {}, coefs, comps, status="not estimable")


def test_a_component_the_fit_could_not_estimate_is_0_and_said() -> None:
    """One therapist: the checks drop the therapist level, so the fit has no therapist
    variance. The studies planned with several therapists got SD 0 silently (the truth
    table had no therapist row); now the row is there, its source says 0 was assumed,
    and power.sd gives a value instead (overriding a fitted SD too)."""
    coefs = pd.DataFrame({"model": "primary", "term": ["Intercept", "time"],
                          "estimate": [20.0, 0.1]})
    comps = pd.DataFrame({"model": "primary", "component": ["client", "client_time",
                                                            "residual"],
                          "sd": [2.0, 0.1, 1.5]})
    planned = planned_components(load_specs().get("primary"))
    assert planned == ("therapist", "client", "client_time", "residual")
    truth = truth_from_fit("primary", {}, coefs, comps, planned=planned)
    assert truth.sd == {"therapist": 0.0, "client": 2.0, "client_time": 0.1, "residual": 1.5}
    assert list(truth.sd) == list(planned)
    table = truth_table(truth, {}, {c: sd_source(c, comps, "primary", {}) for c in truth.sd})
    sources = dict(zip(table["parameter"], table["source"], strict=True))
    assert sources["therapist"] == ASSUMED == ("not estimated on these data: 0 assumed "
                                               "(set power.sd)")
    assert sources["client"] == "fitted model"
    given = {"therapist": 1.2, "client": 1.0}
    truth = truth_from_fit("primary", {}, coefs, comps, sd=given, planned=planned)
    assert truth.sd == {"therapist": 1.2, "client": 1.0, "client_time": 0.1, "residual": 1.5}
    assert sd_source("therapist", comps, "primary", given) == "power.sd"
    with pytest.raises(SettingsError, match=r"power\.sd names 'client_time', which model "
                                            r"'alliance_levels_goal' does not have"):
        truth_from_fit("alliance_levels_goal", {}, coefs.assign(model="alliance_levels_goal"),
                       comps.assign(model="alliance_levels_goal"), sd={"client_time": 0.1},
                       planned=planned_components(load_specs().get("alliance_levels_goal")))


@pytest.mark.parametrize(("block", "message"), [
    ({"designs": [], "replications": 5, "seed": 1}, "power.designs"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 0, "seed": 1}, "power.replications"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "alpha": 5}, "power.alpha"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5}, "power.seed"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}] * 2,
      "replications": 5, "seed": 1}, "same design"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "replicates": 9}, "power.replicates is not a setting"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "effects": {"goal_within": "big"}}, "power.effects"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "sd": {"therapist": -1.0}},
     r"power.sd must map variance components to standard deviations >= 0"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "sd": {"therapists": 1.0}},
     r"power.sd names 'therapists', which is not a variance component \(known: therapist, "),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "sd": {"residual": 0}}, r"power.sd.residual is 0"),
])
def test_bad_power_settings_name_the_setting(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        power_settings(block, ALLIANCE)


def test_one_client_per_therapist_is_refused_when_the_settings_are_read() -> None:
    """Every replicate of such a design failed at run time (the checks drop the therapist
    level: same_grouping), and the stage stopped after fitting them all."""
    good = {"therapists": 20, "clients_per_therapist": 2, "sessions": 8}
    block = {"designs": [good, {"therapists": 40, "clients_per_therapist": 1, "sessions": 8}],
             "replications": 5, "seed": 1}
    with pytest.raises(SettingsError) as caught:
        power_settings(block, ALLIANCE)
    message = str(caught.value)
    assert message.startswith("params.yaml: power.designs[1].clients_per_therapist is 1: "
                              "every therapist of this design would have one client, so "
                              "the therapist and client variances of power.model 'primary' "
                              "((1 | therapist_id) + (1 | client_id) + (0 + time | "
                              "client_id)) cannot be told apart")
    assert "model.checks.same_grouping" in message
    assert message.endswith("Give every therapist at least two clients "
                            "(clients_per_therapist: 2 or more).")
    assert caught.value.exit_status == 2
    # two clients per therapist is a valid design, of any model
    assert power_settings({**block, "designs": [good]}, ALLIANCE).designs[0] \
        .clients_per_therapist == 2
    assert power_settings({**block, "designs": [good], "model": "alliance_levels_goal"},
                          ALLIANCE).model == "alliance_levels_goal"


def test_fewer_therapists_than_min_levels_is_refused_when_the_settings_are_read() -> None:
    """One therapist: the checks drop the therapist level (one_level), so every replicate
    of the planned model would fail at run time."""
    good = {"therapists": 20, "clients_per_therapist": 2, "sessions": 8}
    block = {"designs": [good, {"therapists": 1, "clients_per_therapist": 30, "sessions": 8}],
             "replications": 5, "seed": 1}
    with pytest.raises(SettingsError) as caught:
        power_settings(block, ALLIANCE)
    message = str(caught.value)
    assert message.startswith("params.yaml: power.designs[1].therapists is 1: power.model "
                              "'primary' ((1 | therapist_id) + (1 | client_id) + (0 + time | "
                              "client_id)) estimates a therapist variance, which needs at "
                              "least model.checks.min_levels = 2 therapists.")
    assert message.endswith("Give this design at least 2 therapists, or choose a "
                            "power.model without therapist random effects.")
    assert caught.value.exit_status == 2
    # the threshold is the model checks' setting
    with pytest.raises(SettingsError, match=r"therapists is 3: .*min_levels = 4 "):
        power_settings({**block, "designs": [{**good, "therapists": 3}]}, ALLIANCE,
                       min_levels=4)
    assert power_settings({**block, "designs": [{**good, "therapists": 2}]},
                          ALLIANCE).designs[0].therapists == 2


def test_power_stage_reads_min_levels_from_the_model_checks(tmp_path: Path) -> None:
    """The stage passes model.checks.min_levels: refused before anything is fitted."""
    from pipeline.power.run import power_stage

    params = {"model": {"checks": {"min_levels": 25}},
              "power": {"designs": [{"therapists": 20, "clients_per_therapist": 2,
                                     "sessions": 8}], "replications": 5, "seed": 1}}
    with pytest.raises(SettingsError, match=r"therapists is 20: .*min_levels = 25 "):
        power_stage(params, tmp_path, tmp_path / "replicates.jsonl")


def test_clopper_pearson_equals_r_binom_test() -> None:
    """R 4.x: binom.test(7, 20)$conf.int, binom.test(0, 10), binom.test(10, 10)."""
    from pipeline.power.summary import clopper_pearson

    assert clopper_pearson(7, 20) == pytest.approx((0.1539092047845412, 0.5921885345328282),
                                                   abs=1e-12)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3084971078187607), abs=1e-12)
    assert clopper_pearson(10, 10) == pytest.approx((0.6915028921812392, 1.0), abs=1e-12)
    assert clopper_pearson(37, 100, 0.9) == pytest.approx(
        (0.2893553674409980, 0.4565659065200737), abs=1e-12)
    low, high = clopper_pearson(0, 0)
    assert np.isnan(low) and np.isnan(high)


@pytest.mark.slow
def test_one_therapist_power_says_the_therapist_variance_was_assumed_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's data have one therapist; the planned studies have 20. The stage wrote
    no therapist row and simulated SD 0 silently, and the report's alliance-process line
    repeated one reason three times with a parenthesis left open."""
    import pipeline.models as M
    import pipeline.report as report
    from pipeline.power.run import power_stage
    from tests.test_models import read_data

    monkeypatch.setattr("pipeline.parallel._can_fork", lambda: False)
    scored = read_data("one_therapist")
    scored.to_csv(tmp_path / "scored.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["power"].update(designs=[{"therapists": 6, "clients_per_therapist": 5,
                                     "sessions": 6}], replications=4)
    params["parallel"] = {"workers": 1}
    fit_settings = {k: v for k, v in params["model"].items() if k != "engine"}
    fits = M.fit_all(scored, None, fit_settings, models=["primary"], verbose=False)
    assert fits[0].simplification.startswith("therapist level dropped: 1 therapist")
    M.write_results(fits, tmp_path / "results")
    lines: list[str] = []
    tables = power_stage(params, tmp_path / "results", tmp_path / "power.jsonl",
                         log=lambda step, text: lines.append(text),
                         scored=tmp_path / "scored.csv")
    truth = tables["power_truth"]
    sd = truth[truth["kind"] == "SD"].set_index("parameter")
    assert list(sd.index) == ["therapist", "client", "client_time", "residual"]
    assert sd.loc["therapist", "value"] == 0.0 and sd.loc["therapist", "source"] == ASSUMED
    assert (sd.drop(index="therapist")["source"] == "fitted model").all()
    warning = next(line for line in lines if line.startswith("WARNING"))
    assert "has no therapist variance (therapist level dropped: 1 therapist" in warning
    assert "set power.sd (e.g. {therapist: <SD>})" in warning
    process_source = truth.loc[truth["kind"] == "alliance", "source"].iloc[0]
    assert process_source.startswith("these data (goal, task and bond: therapist level "
                                     "dropped: 1 therapist")
    # the report, on these results
    for name, table in tables.items():
        table.to_csv(tmp_path / "results" / f"{name}.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    report.render_many([(ROOT / "notebooks" / "power.py", tmp_path / "power.html")],
                       {"params_file": str(tmp_path / "params.yaml")}, cwd=ROOT)
    page = (tmp_path / "power.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    assert ("The therapist intercept variance could not be estimated on these data "
            "(therapist level dropped: 1 therapist") in text
    assert "The simulated studies have none (SD 0)" in text and "power.sd" in text
    assert text.count("therapist level dropped") == 2       # the warning, the process
    assert ("grouping factors must have > 1 sampled level); an SD that could not be "
            "estimated is 0 here).") in text
