"""Probe kinds 2, 3, 5 and 6 on a real-shaped data set (tests/fixtures/realshape).

Two sessions per client, one therapist (no therapist_id column), WAI-S client and
therapist forms on 1-7 in one long file, no outcome, one covariate with one level,
``#NULL!`` cells. The Python functions run on it directly; the pipeline steps and both
notebooks run on it from a scratch project whose alliance file has a hostile name.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.describe import (
    alliance_outcome_correlations,
    data_counts,
    rater_agreement,
    rater_summary,
    trajectories,
)
from pipeline.errors import SettingsError
from pipeline.instruments import load_instrument
from pipeline.psychometrics import floor_ceiling, reliability
from pipeline.read import InputError
from pipeline.report import escape
from pipeline.score import score_raters, therapist_form
from pipeline.validate import ASSUMED_THERAPIST, validate_inputs

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).parent / "fixtures" / "realshape"
WAI_S, WAI_S_T = load_instrument("wai_s"), load_instrument("wai_s_t")
HOSTILE = "wai`<script>alert(1)`<img src=x onerror=alert(2)>.csv"


@pytest.fixture(scope="module")
def checked() -> Any:
    return validate_inputs(
        {"alliance": str(REAL / "alliance.csv"), "outcome": None,
         "clients": str(REAL / "clients.csv")},
        WAI_S, None, {}, therapist_instrument=WAI_S_T)


def test_fixture_reproduces(tmp_path: Path) -> None:
    sys.path.insert(0, str(REAL))
    try:
        from make_realshape import write
    finally:
        sys.path.remove(str(REAL))
    for path in write(tmp_path):
        assert path.read_bytes() == (REAL / path.name).read_bytes()


# ------------------------------------------------------------------ validation


def test_real_shape_validates_with_one_therapist_assumed_and_said(checked: Any) -> None:
    assert checked.outcome is None
    assert set(checked.alliance["therapist_id"]) == {ASSUMED_THERAPIST}
    assert set(checked.alliance["rater"]) == {"client", "therapist"}
    assert any("no therapist_id column" in w for w in checked.warnings)
    assert not any("rated by someone other" in w for w in checked.warnings)
    # #NULL! cells are missing items, counted in the notes
    assert checked.alliance["wai_s_7"].isna().sum() == 2
    assert any("spreadsheet error values" in w for w in checked.warnings)
    # one covariate with one level is tabulated (nothing to hide: 40 clients share it)
    assert checked.k_anonymity["n_clients"].tolist() == [40]


def test_wrong_instrument_hint_names_the_registered_one() -> None:
    with pytest.raises(InputError) as exc:
        validate_inputs({"alliance": str(REAL / "alliance.csv")}, load_instrument("wai_sr"),
                        None, {})
    text = str(exc.value)
    assert "set instruments.alliance: wai_s in params.yaml" in text
    assert "wai_sr_1?" not in text  # no rename-to-the-wrong-form suggestion


@pytest.mark.parametrize("session", ["1e20", "99999", "inf"])
def test_absurd_session_numbers_are_refused(tmp_path: Path, session: str) -> None:
    frame = pd.read_csv(REAL / "alliance.csv", dtype=str, keep_default_na=False)
    frame.loc[3, "session"] = session
    path = tmp_path / "alliance.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as exc:
        validate_inputs({"alliance": str(path)}, WAI_S, None, {})
    rules = {p.rule for p in exc.value.problems}
    assert rules & {"session_too_large", "not_whole_number"}
    assert "-9223372036854775808" not in str(exc.value)


def test_therapist_form_is_found_from_the_registry() -> None:
    assert therapist_form({"alliance": "wai_s"}).key == "wai_s_t"
    assert therapist_form({"alliance": "wai_sr"}) is None
    assert therapist_form({"alliance": "wai_s", "alliance_therapist": "wai_s"}).key == "wai_s"


# --------------------------------------------------------------------- scoring


def test_each_rater_is_scored_with_its_own_key(checked: Any) -> None:
    scored, summary = score_raters(checked.alliance, WAI_S, WAI_S_T)
    assert set(summary["instrument"]) == {"wai_s", "wai_s_t"}
    first = checked.alliance.iloc[0]
    goal_items = [first[f"wai_s_{i}"] for i in (4, 6, 10, 11)]
    keyed = [8 - goal_items[0], goal_items[1], 8 - goal_items[2], goal_items[3]]
    assert scored.iloc[0]["goal"] == pytest.approx(np.mean(keyed))
    assert scored["goal"].between(1, 7).all()


def test_reliability_and_keyed_floor_ceiling_per_form(checked: Any) -> None:
    from pipeline.score import as_form

    therapist_rows = checked.alliance[checked.alliance["rater"] == "therapist"]
    rel = reliability(as_form(therapist_rows, WAI_S, WAI_S_T), WAI_S_T)
    assert set(rel["instrument"]) == {"wai_s_t"} and rel["alpha"].notna().all()
    client_rows = checked.alliance[checked.alliance["rater"] == "client"]
    keyed = floor_ceiling(client_rows, WAI_S).set_index("item_number")
    raw = floor_ceiling(client_rows, WAI_S, keyed=False).set_index("item_number")
    # item 4 is reversed: the raw "floor" (answer 1) is the keyed ceiling (score 7)
    assert keyed.loc[4, "n_ceiling"] == raw.loc[4, "n_floor"]
    assert keyed.loc[1, "n_ceiling"] == raw.loc[1, "n_ceiling"]


# ---------------------------------------------------------------- description


def test_describe_without_outcome_and_with_two_raters(checked: Any) -> None:
    raters, _ = score_raters(checked.alliance, WAI_S, WAI_S_T)
    client = raters[raters["rater"] == "client"].drop(columns="rater")
    counts = data_counts(checked.alliance, None, client, checked.clients, 5).set_index("item")
    assert pd.isna(counts.loc["therapists", "count"])  # 1 < min_cell: not shown
    assert "no therapist_id" in counts.loc["therapists", "note"]
    assert "no outcome file" in counts.loc["outcome rows (client x session)", "note"]
    traj = trajectories(client, 5)
    assert set(traj["variable"]) == {"goal", "task", "bond"}
    assert alliance_outcome_correlations(client, (0.0, 0.5), 5).empty
    summary = rater_summary(raters, 5)
    assert set(summary["rater"]) == {"client", "therapist"}
    agreement = rater_agreement(raters, 5).set_index(["scale", "session"])
    pooled = agreement.loc[("goal", "all")]
    assert pooled["n_pairs"] == 80 and -1 <= pooled["r"] <= 1
    c = raters[raters["rater"] == "client"].set_index(["client_id", "session"])["goal"]
    t = raters[raters["rater"] == "therapist"].set_index(["client_id", "session"])["goal"]
    both = pd.concat([c, t], axis=1, keys=["c", "t"]).dropna()
    assert pooled["mean_difference"] == pytest.approx((both["c"] - both["t"]).mean())
    assert pooled["r"] == pytest.approx(np.corrcoef(both["c"], both["t"])[0, 1])
    assert pooled["conf_low"] < pooled["mean_difference"] < pooled["conf_high"]


@pytest.mark.parametrize("level", [95, 0, 1, "95%"])
def test_conf_level_outside_0_1_is_refused_not_blank(checked: Any, level: Any) -> None:
    raters, _ = score_raters(checked.alliance, WAI_S, WAI_S_T)
    with pytest.raises(SettingsError, match=r"model\.conf_level"):
        trajectories(raters, 5, level)
    with pytest.raises(SettingsError):
        rater_agreement(raters, 5, level)


# -------------------------------------------------- the steps and the reports


def _project(tmp: Path, alliance: Path, clients: Path | None, n_clients: int | None = None,
             outcome: Path | None = None, instrument: str = "wai_s") -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = tmp / "data"
    data.mkdir(parents=True)
    frame = pd.read_csv(alliance, dtype=str, keep_default_na=False)
    if n_clients is not None:
        frame = frame[frame["client_id"].isin(sorted(set(frame["client_id"]))[:n_clients])]
    target = data / HOSTILE
    frame.to_csv(target, index=False)
    params["data"] = {"alliance": str(target), "outcome": str(outcome) if outcome else "",
                      "clients": str(clients) if clients else "", "simulated": False}
    params["instruments"]["alliance"] = instrument
    if outcome is None:
        params["instruments"]["outcome"] = ""
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp / "params.yaml"


def _steps(params_file: Path) -> Path:
    from pipeline.cli import main

    root = params_file.parent
    interim, results = root / "interim", root / "results"
    p = ["--params", str(params_file)]
    assert main(["validate", *p, "--out", str(interim / "validated")]) == 0
    assert main(["score", *p, "--validated", str(interim / "validated"),
                 "--out", str(interim / "scored.csv"),
                 "--results", str(results / "scoring")]) == 0
    assert main(["describe", *p, "--validated", str(interim / "validated"),
                 "--scored", str(interim / "scored.csv"),
                 "--out", str(results / "describe")]) == 0
    return results


COUNT_COLUMNS = re.compile(r"^(n|count|n_.*|clients|sessions)$")


def _small_counts(results: Path, min_cell: int) -> list[str]:
    found = []
    for path in sorted(results.rglob("*.csv")):
        frame = pd.read_csv(path)
        for column in frame.columns:
            if not COUNT_COLUMNS.match(column) or column == "n_items":
                continue
            if column in ("n_combinations", "n_obs") or (path.name, column) == (
                    "attendance.csv", "sessions"):  # a number of sessions, not a count
                continue
            values = pd.to_numeric(frame[column], errors="coerce")
            if ((values > 0) & (values < min_cell)).any():
                found.append(f"{path.name}:{column}")
    return found


@pytest.mark.parametrize("n_clients", [3, None])
def test_no_count_below_min_cell_is_published(tmp_path: Path, n_clients: int | None) -> None:
    params_file = _project(tmp_path, REAL / "alliance.csv", REAL / "clients.csv", n_clients)
    results = _steps(params_file)
    assert _small_counts(results, 5) == []
    checks = pd.read_csv(results / "describe" / "checks.csv")
    assert not checks["detail"].fillna("").str.contains(r"\b[1-4] clients?\b").any()


def test_constant_outcome_gives_notes_not_numbers(tmp_path: Path) -> None:
    alliance = pd.read_csv(REAL / "alliance.csv", dtype=str, keep_default_na=False)
    outcome = alliance[alliance["rater"] == "client"][["client_id", "session"]].copy()
    outcome["swemwbs"] = 21.54
    path = tmp_path / "outcome.csv"
    outcome.to_csv(path, index=False)
    params_file = _project(tmp_path / "p", REAL / "alliance.csv", None, outcome=path)
    params = yaml.safe_load(params_file.read_text())
    params["instruments"]["outcome"] = "swemwbs"
    params_file.write_text(yaml.safe_dump(params))
    results = _steps(params_file)
    corr = pd.read_csv(results / "describe" / "alliance_outcome_correlations.csv")
    assert corr["r"].isna().all() and corr["note"].str.contains("no variance").all()
    assert _small_counts(results, 5) == []


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from pipeline.report import render

    tmp = tmp_path_factory.mktemp("realshape")
    params_file = _project(tmp, REAL / "alliance.csv", REAL / "clients.csv")
    _steps(params_file)
    out = {}
    for name in ("overview", "psychometrics"):
        html = render(ROOT / "notebooks" / f"{name}.py", tmp / f"{name}.html",
                      {"params_file": str(params_file)}, cwd=ROOT)
        out[name] = html.read_text()
    return out


@pytest.mark.slow
def test_reports_render_and_say_what_is_absent(rendered: dict[str, str]) -> None:
    overview, psych = rendered["overview"], rendered["psychometrics"]
    for html in (overview, psych):
        assert "Traceback" not in html and "output_error" not in html
        assert "alliance-only analysis" in html
        assert "1\u20135" not in html and "WAI-SR" not in html
        assert "wellbeing" not in html.lower().replace("mental wellbeing", "")
    assert "Working Alliance Inventory - Short form (client)" in overview
    assert "1 (lowest) to 7 (highest)" in overview
    assert "therapist mean" in overview and "client mean" in overview  # rater agreement
    assert "no therapist_id" in overview
    assert "reversed items 4, 10 are scored as 8 minus the answer" in psych
    assert "wai_s_t" in psych


@pytest.mark.slow
def test_hostile_file_name_is_shown_as_text_not_markup(rendered: dict[str, str]) -> None:
    overview = rendered["overview"]
    import html

    assert "<script>alert(1)" not in overview and "<img src=x" not in overview
    # ... and the name is shown as written, as text
    text = html.unescape(re.sub(r"<[^>]+>", "", overview))
    assert HOSTILE in text


def test_escape_makes_user_text_inert() -> None:
    import html

    text = "a`<img src=x onerror=alert(1)>`*b*[c](d).csv"
    out = escape(text)
    assert "<" not in out and "`" not in out and "*" not in out and "[" not in out
    assert html.unescape(out) == text
    from pipeline.tables import styled

    table = styled(pd.DataFrame({"<b>col</b>": ["<script>x</script>"]})).to_html()
    assert "<script>" not in table and "<b>col</b>" not in table


def test_scratch_copy_is_independent(tmp_path: Path) -> None:
    """The real-shaped files are only read (the steps write elsewhere)."""
    before = (REAL / "alliance.csv").read_bytes()
    shutil.copy(REAL / "alliance.csv", tmp_path / "a.csv")
    assert (REAL / "alliance.csv").read_bytes() == before
