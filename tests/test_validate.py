"""Tests for pipeline.validate: the input contract, one bad file per rule."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.instruments import Instrument, load_instrument
from pipeline.validate import (
    DEFAULT_SETTINGS,
    IDS_PER_THERAPIST,
    InputError,
    Problem,
    ValidatedInputs,
    build_schema,
    validate_inputs,
)

BAD = Path(__file__).parent / "bad_inputs"
GOOD = BAD / "good"
SETTINGS: dict[str, Any] = {"allow_columns": [], "k_anonymity": 5, "max_examples": 5}


@pytest.fixture(scope="module")
def wai() -> Instrument:
    return load_instrument("wai_sr")


@pytest.fixture(scope="module")
def swemwbs() -> Instrument:
    return load_instrument("swemwbs")


def _paths(**replace: str | Path | None) -> dict[str, str | None]:
    paths: dict[str, str | None] = {k: str(GOOD / f"{k}.csv")
                                    for k in ("alliance", "outcome", "clients")}
    for key, value in replace.items():
        paths[key] = None if value is None else str(value)
    return paths


def _run(wai: Instrument, swemwbs: Instrument, settings: dict[str, Any] | None = None, /,
         **replace: str | Path | None) -> ValidatedInputs:
    return validate_inputs(_paths(**replace), wai, swemwbs, settings or SETTINGS)


def _fail(wai: Instrument, swemwbs: Instrument, settings: dict[str, Any] | None = None, /,
          **replace: str | Path | None) -> InputError:
    with pytest.raises(InputError) as exc:
        _run(wai, swemwbs, settings, **replace)
    return exc.value


def _slot(name: str) -> str:
    return name.split("_", 1)[0]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------ good


def test_good_inputs_pass_and_are_normalised(wai: Instrument, swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs)
    assert out.warnings == []
    assert list(out.alliance.columns) == ["client_id", "therapist_id", "session",
                                          *wai.item_columns]
    assert list(out.outcome.columns) == ["client_id", "session", *swemwbs.item_columns]
    assert out.clients is not None
    assert list(out.clients.columns) == ["client_id", "approach", "modality"]
    assert len(out.alliance) == 20 and len(out.outcome) == 20 and len(out.clients) == 10
    assert out.alliance["session"].dtype == "int64"
    assert (out.alliance[wai.item_columns].dtypes == "float64").all()
    assert all(isinstance(v, str) for v in out.alliance["client_id"])
    # the CSV is written in reverse order; the result is sorted by client and session
    assert out.alliance[["client_id", "session"]].values.tolist()[:3] == [
        ["C01", 1], ["C01", 2], ["C02", 1]]
    assert out.alliance.index.tolist() == list(range(20))
    assert out.outcome[swemwbs.item_columns].isna().sum().sum() == 1  # blank item kept


def test_checks_table_is_tidy_and_holds_counts_only(wai: Instrument,
                                                     swemwbs: Instrument) -> None:
    checks = _run(wai, swemwbs).checks
    assert list(checks.columns) == ["check", "file", "status", "n", "detail"]
    assert set(checks["status"]) <= {"pass", "info"}
    assert set(checks["file"]) == {"alliance", "outcome", "clients"}
    for rule in ("missing_column", "out_of_range", "duplicate_row", "several_therapists",
                 "anonymity_names", "anonymity_content", "k_anonymity"):
        assert rule in set(checks["check"]), rule
    text = checks.to_csv()
    assert "C01" not in text and "T1" not in text and "CBT" not in text
    rows_read = checks.set_index(["check", "file"]).loc[("rows_read", "alliance"), "n"]
    assert rows_read == 20


@pytest.mark.parametrize(
    ("alliance", "outcome", "clients"),
    [
        ("alliance.xlsx", "outcome.sav", "clients.dta"),
        ("alliance.parquet", "outcome.dta", "clients.sav"),
    ],
)
def test_every_format_gives_the_same_validated_data(
    wai: Instrument, swemwbs: Instrument, alliance: str, outcome: str, clients: str
) -> None:
    reference = _run(wai, swemwbs)
    other = _run(wai, swemwbs, alliance=GOOD / alliance, outcome=GOOD / outcome,
                 clients=GOOD / clients)
    pd.testing.assert_frame_equal(other.alliance, reference.alliance)
    pd.testing.assert_frame_equal(other.outcome, reference.outcome)  # SPSS -9 -> missing
    assert other.clients is not None and reference.clients is not None
    pd.testing.assert_frame_equal(other.clients, reference.clients)  # value labels applied


def test_inputs_are_never_modified(wai: Instrument, swemwbs: Instrument) -> None:
    before, before_bad = _digest(GOOD), _digest(BAD)
    _run(wai, swemwbs)
    with pytest.raises(InputError):
        _run(wai, swemwbs, alliance=BAD / "alliance_out_of_range.csv")
    assert _digest(GOOD) == before and _digest(BAD) == before_bad


def test_without_clients_file(wai: Instrument, swemwbs: Instrument) -> None:
    for empty in (None, ""):
        out = validate_inputs(_paths(clients=empty), wai, swemwbs, SETTINGS)
        assert out.clients is None and out.k_anonymity is None


def test_default_settings_when_none_given(wai: Instrument, swemwbs: Instrument) -> None:
    assert validate_inputs(_paths(), wai, swemwbs, {}).warnings == []
    assert DEFAULT_SETTINGS["k_anonymity"] == 5


def test_prescored_alliance(wai: Instrument, swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, alliance=BAD / "alliance_prescored.csv")
    assert list(out.alliance.columns) == ["client_id", "therapist_id", "session", "goal",
                                          "task", "bond"]


def test_prescored_outcome_total(wai: Instrument, swemwbs: Instrument, tmp_path: Path) -> None:
    path = tmp_path / "outcome.csv"
    frame = pd.read_csv(BAD / "outcome_out_of_range.csv", dtype=str)
    frame.loc[19, "swemwbs"] = "35"
    frame.to_csv(path, index=False)
    out = _run(wai, swemwbs, outcome=path)
    assert list(out.outcome.columns) == ["client_id", "session", "swemwbs"]
    assert out.outcome["swemwbs"].max() == 35.0


def test_items_win_over_prescored_columns(wai: Instrument, swemwbs: Instrument,
                                          tmp_path: Path) -> None:
    path = tmp_path / "both.csv"
    pd.read_csv(GOOD / "alliance.csv").assign(goal=9, task=9, bond=9).to_csv(path, index=False)
    out = _run(wai, swemwbs, alliance=path)
    assert "goal" not in out.alliance.columns
    assert any("goal, task, bond ignored" in w for w in out.warnings)


def test_raters(wai: Instrument, swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, alliance=BAD / "alliance_raters.csv")
    assert out.alliance["rater"].value_counts().to_dict() == {"client": 20, "therapist": 20}
    assert list(out.alliance.columns[:4]) == ["client_id", "therapist_id", "session", "rater"]
    assert out.alliance[["client_id", "session", "rater"]].values.tolist()[:2] == [
        ["C01", 1, "client"], ["C01", 1, "therapist"]]
    assert any("20 rows are rated by someone other than the client" in w for w in out.warnings)


def test_messy_but_valid_csv(wai: Instrument, swemwbs: Instrument, tmp_path: Path) -> None:
    """Upper-case names with spaces, 2.0 sessions, blank rows, an extra column."""
    frame = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    frame["session"] = frame["session"] + ".0"
    frame = frame.rename(columns={"client_id": "Client ID", "session": " Session "})
    frame["site"] = "north"
    path = tmp_path / "messy.csv"
    text = frame.to_csv(index=False, lineterminator="\n")
    path.write_text(text.replace("\n", "\n\n", 1) + "\n,,\n")
    out = _run(wai, swemwbs, alliance=path)
    assert out.alliance["session"].tolist()[:2] == [1, 2]
    assert "site" not in out.alliance.columns
    assert any("not used: site" in w for w in out.warnings)
    checks = out.checks.set_index(["check", "file"])
    assert checks.loc[("blank_rows", "alliance"), "n"] == 3  # two blank lines and ",,"
    assert checks.loc[("column_names_normalised", "alliance"), "n"] == 2


def test_numeric_ids_are_text_without_decimals(wai: Instrument, swemwbs: Instrument,
                                               tmp_path: Path) -> None:
    alliance = pd.read_csv(GOOD / "alliance.csv")
    outcome = pd.read_csv(GOOD / "outcome.csv")
    for frame in (alliance, outcome):
        frame["client_id"] = frame["client_id"].str[1:].astype(float)  # 1.0, 2.0, ...
    alliance.to_parquet(tmp_path / "a.parquet")
    outcome.to_csv(tmp_path / "o.csv", index=False)
    (tmp_path / "o.csv").write_text((tmp_path / "o.csv").read_text().replace(".0,", ","))
    out = _run(wai, swemwbs, alliance=tmp_path / "a.parquet", outcome=tmp_path / "o.csv",
               clients=None)
    assert sorted(set(out.alliance["client_id"]))[:3] == ["1", "10", "2"]
    assert set(out.outcome["client_id"]) == set(out.alliance["client_id"])


# ------------------------------------------------------------------------- bad files


BAD_CASES = [
    # file, column, rule, example rows, count
    ("alliance_missing_column.csv", "therapist_id", "missing_column", [], 0),
    ("alliance_unknown_item.csv", "wai_sr_13", "unknown_item", [], 0),
    ("alliance_missing_value.csv", "therapist_id", "missing_value", [5], 1),
    ("alliance_not_a_number.csv", "wai_sr_3", "not_a_number", [6], 1),
    ("alliance_not_whole_number.csv", "session", "not_whole_number", [4], 1),
    ("alliance_session_below_1.csv", "session", "session_below_1", [1, 3, 5, 7, 9], 10),
    ("alliance_invalid_rater.csv", "rater", "invalid_rater", [20], 1),
    ("alliance_duplicate_row.csv", "client_id, session", "duplicate_row", [7, 21], 2),
    ("alliance_several_therapists.csv", "client_id, therapist_id", "several_therapists",
     [1, 2], 2),
    ("alliance_prescored_out_of_range.csv", "goal", "out_of_range", [4], 1),
    ("outcome_out_of_range.csv", "swemwbs", "out_of_range", [20], 1),
    ("outcome_not_a_number.csv", "swemwbs_2", "not_a_number", [1], 1),
    ("outcome_duplicate_row.csv", "client_id, session", "duplicate_row", [1, 21], 2),
    ("outcome_ids_do_not_match.csv", "client_id", "ids_do_not_match", [], 0),
    ("clients_duplicate_row.csv", "client_id", "duplicate_row", [3, 11], 2),
    ("alliance_empty_file.csv", None, "empty_file", [], 0),
    ("alliance_no_data_rows.csv", None, "no_data_rows", [], 0),
    ("alliance_unreadable_file.csv", None, "unreadable_file", [], 0),
    ("alliance_unreadable_file.xlsx", None, "unreadable_file", [], 0),
    ("alliance_unsupported_format.json", None, "unsupported_format", [], 0),
    ("alliance_duplicate_column.csv", None, "duplicate_column", [], 0),
]


@pytest.mark.parametrize(("name", "column", "rule", "rows", "count"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_each_rule_is_reported_with_file_column_rule_and_rows(
    wai: Instrument, swemwbs: Instrument, name: str, column: str | None, rule: str,
    rows: list[int], count: int,
) -> None:
    path = BAD / name
    error = _fail(wai, swemwbs, **{_slot(name): path})
    assert [(p.file, p.column, p.rule, p.rows, p.count) for p in error.problems] == [
        (str(path), column, rule, rows, count)]
    text = str(error)
    assert f"{path}:" in text
    assert f"rule {rule}:" in text
    if column:
        assert f"column '{column}'" in text
    if rows:
        label = "data rows " if len(rows) > 1 else "data row "
        assert label + ", ".join(map(str, rows)) in text
        assert "data row N = line N+1 of the file" in text
    if count > len(rows):
        assert f"and {count - len(rows)} more ({count} rows in all)" in text


def test_row_numbers_point_at_the_line_of_the_csv(wai: Instrument, swemwbs: Instrument) -> None:
    path = BAD / "alliance_not_a_number.csv"
    problem = _fail(wai, swemwbs, alliance=path).problems[0]
    lines = path.read_text().splitlines()
    assert "four" in lines[problem.rows[0]]  # data row N = line N+1 = lines[N]
    assert "four" not in str(_fail(wai, swemwbs, alliance=path))


def test_out_of_range_names_each_column_and_the_range(wai: Instrument,
                                                       swemwbs: Instrument) -> None:
    error = _fail(wai, swemwbs, alliance=BAD / "alliance_out_of_range.csv")
    found = {(p.column, tuple(p.rows)) for p in error.problems}
    assert found == {("wai_sr_5", (3, 10)), ("wai_sr_6", (10,))}
    assert all(p.rule == "out_of_range" for p in error.problems)
    assert "item range 1 to 5" in str(error) and "-99" in str(error)  # the hint, not a value


def test_missing_column_suggests_a_near_miss(wai: Instrument, swemwbs: Instrument) -> None:
    message = _fail(wai, swemwbs, alliance=BAD / "alliance_missing_column.csv").problems[0]
    assert "Did you mean 'therapist' for therapist_id?" in message.message
    assert "wai_sr_1 ... wai_sr_12 or the pre-scored goal, task, bond" in message.message


def test_unknown_item_points_at_the_instrument(wai: Instrument, swemwbs: Instrument) -> None:
    problem = _fail(wai, swemwbs, alliance=BAD / "alliance_unknown_item.csv").problems[0]
    assert "has 12 items" in problem.message and "instruments:" in problem.message


def test_all_problems_of_all_files_are_listed(wai: Instrument, swemwbs: Instrument,
                                              tmp_path: Path) -> None:
    frame = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    frame.loc[0, "wai_sr_1"] = "9"
    frame.loc[1, "wai_sr_2"] = "x"
    frame.loc[2, "client_id"] = None
    frame.loc[3, "session"] = "0"
    path = tmp_path / "many.csv"
    frame.to_csv(path, index=False)
    error = _fail(wai, swemwbs, alliance=path, outcome=BAD / "outcome_not_a_number.csv",
                  clients=BAD / "clients_duplicate_row.csv")
    rules = [(Path(p.file).name, p.rule, p.rows) for p in error.problems]
    assert rules == [
        ("many.csv", "missing_value", [3]),
        ("many.csv", "session_below_1", [4]),
        ("many.csv", "out_of_range", [1]),
        ("many.csv", "not_a_number", [2]),
        ("outcome_not_a_number.csv", "not_a_number", [1]),
        ("clients_duplicate_row.csv", "duplicate_row", [3, 11]),
    ]
    text = str(error)
    assert text.startswith("The input data cannot be used: 6 problems in 3 files.")
    assert text.count("rule ") == 6
    failed = error.checks
    assert failed is not None
    assert set(failed.loc[failed["status"] == "fail", "check"]) == {
        "missing_value", "session_below_1", "out_of_range", "not_a_number", "duplicate_row"}


def test_max_examples_limits_the_rows_named(wai: Instrument, swemwbs: Instrument) -> None:
    settings = {**SETTINGS, "max_examples": 2}
    problem = _fail(wai, swemwbs, settings,
                    alliance=BAD / "alliance_session_below_1.csv").problems[0]
    assert problem.rows == [1, 3] and problem.count == 10
    assert "and 8 more (10 rows in all)" in str(problem)


def test_empty_file_alongside_other_problems(wai: Instrument, swemwbs: Instrument) -> None:
    error = _fail(wai, swemwbs, alliance=BAD / "alliance_empty_file.csv",
                  outcome=BAD / "outcome_out_of_range.csv")
    assert [p.rule for p in error.problems] == ["empty_file", "out_of_range"]


# ------------------------------------------------------------------- cross-file warnings


def test_outcome_rows_without_alliance_are_kept_and_counted(wai: Instrument,
                                                             swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, outcome=BAD / "outcome_no_alliance_rows.csv")
    assert len(out.outcome) == 22 and (out.outcome["client_id"] == "C99").sum() == 2
    assert out.warnings == [
        "outcome file: 2 rows (1 client) of clients with no alliance rows; kept, but they "
        "cannot enter the alliance models"
    ]
    checks = out.checks.set_index(["check", "file"])
    assert list(checks.loc[("no_alliance_rows", "outcome"), ["status", "n"]]) == ["warn", 2]


def test_clients_without_alliance_rows_are_kept_and_counted(wai: Instrument,
                                                             swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, clients=BAD / "clients_no_alliance_rows.csv")
    assert out.clients is not None and "C77" in set(out.clients["client_id"])
    assert any("clients file: 1 row (1 client)" in w for w in out.warnings)


def test_alliance_clients_without_outcome_or_clients_row(wai: Instrument, swemwbs: Instrument,
                                                         tmp_path: Path) -> None:
    outcome = pd.read_csv(GOOD / "outcome.csv")
    outcome[outcome["client_id"] != "C05"].to_csv(tmp_path / "o.csv", index=False)
    clients = pd.read_csv(GOOD / "clients.csv")
    clients[clients["client_id"] != "C06"].to_csv(tmp_path / "c.csv", index=False)
    out = _run(wai, swemwbs, {**SETTINGS, "k_anonymity": 4}, outcome=tmp_path / "o.csv",
               clients=tmp_path / "c.csv")
    assert out.warnings == [
        "alliance file: 1 client without outcome rows; they cannot enter the models",
        "clients file: no row for 1 client of the alliance file; their covariates are missing",
    ]


def test_ids_written_differently_across_files_are_refused(wai: Instrument,
                                                          swemwbs: Instrument,
                                                          tmp_path: Path) -> None:
    """A spreadsheet dropped the leading zeros (or changed the case) of the outcome ids:
    those clients matched nothing and were analysed without outcome, with a warning only."""
    outcome = pd.read_csv(GOOD / "outcome.csv", dtype=str)
    outcome["client_id"] = outcome["client_id"].replace({"C01": "C1", "C02": "c2"})
    outcome.to_csv(tmp_path / "o.csv", index=False)
    error = _fail(wai, swemwbs, outcome=tmp_path / "o.csv")
    assert [(p.column, p.rule, p.count) for p in error.problems] == [
        ("client_id", "ids_written_differently", 4)]
    assert error.problems[0].rows == [  # data rows count from 1
        i + 1 for i in outcome.index[outcome["client_id"].isin(["C1", "c2"])]]
    text = str(error)
    assert "2 client_ids of the outcome file match a client_id of the alliance file only" in text
    assert "leading zeros" in text and "format the id column as text" in text
    assert "C1" not in text.replace("C12", "")  # values are never shown


def test_sessions_given_as_dates_say_so_once_not_as_duplicates(wai: Instrument,
                                                               swemwbs: Instrument,
                                                               tmp_path: Path) -> None:
    """Every row's session is a date: not_a_number with a hint, and no row counted as a
    duplicate of the other unparseable rows (it was "20 rows share their client_id x session")."""
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    alliance["session"] = "week " + alliance["session"]
    alliance.to_csv(tmp_path / "a.csv", index=False)
    error = _fail(wai, swemwbs, alliance=tmp_path / "a.csv")
    assert [(p.column, p.rule, p.count) for p in error.problems] == [
        ("session", "not_a_number", len(alliance))]
    assert "if your export gives session dates, number each client's sessions" in str(error)


def test_therapist_ratings_only_are_refused(wai: Instrument, swemwbs: Instrument,
                                            tmp_path: Path) -> None:
    """Every row rated by the therapist: validation passed, then describe stopped with a
    traceback (no client rows to describe)."""
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    alliance.assign(rater="Therapist").to_csv(tmp_path / "a.csv", index=False)
    error = _fail(wai, swemwbs, alliance=tmp_path / "a.csv")
    assert [(p.column, p.rule) for p in error.problems] == [("rater", "no_client_ratings")]
    assert "if these rows ARE the clients' ratings, set their rater to client" in str(error)
    checks = error.checks.set_index(["check", "file"])
    assert list(checks.loc[("no_client_ratings", "alliance"), ["status", "n"]]) == [
        "fail", len(alliance)]


def test_alliance_and_outcome_at_different_sessions_are_refused(
        wai: Instrument, swemwbs: Instrument, tmp_path: Path) -> None:
    """The outcome numbered from 0 (one below the alliance): no session has both, and the
    steps after validation had no rows at all (a traceback in describe)."""
    outcome = pd.read_csv(GOOD / "outcome.csv")
    outcome.assign(session=outcome["session"] + 10).to_csv(tmp_path / "o.csv", index=False)
    error = _fail(wai, swemwbs, outcome=tmp_path / "o.csv")
    assert [(p.file, p.column, p.rule) for p in error.problems] == [
        (str(tmp_path / "o.csv"), "session", "no_common_sessions")]
    assert "Are the sessions numbered the same way in both files" in str(error)
    # one session in common is enough
    outcome.loc[0:0].to_csv(tmp_path / "one.csv", index=False)
    assert len(_run(wai, swemwbs, outcome=tmp_path / "one.csv").outcome) == 1


def test_a_header_below_a_title_row_is_pointed_at(wai: Instrument, swemwbs: Instrument,
                                                   tmp_path: Path) -> None:
    """A spreadsheet export with a title above the header: the message said only
    "required columns missing" for columns that are all there, one row down."""
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    path = tmp_path / "a.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"Alliance export": ["from the clinic system"]}).to_excel(
            writer, index=False)
        alliance.to_excel(writer, index=False, startrow=2)
    error = _fail(wai, swemwbs, alliance=path)
    problem = next(p for p in error.problems if p.rule == "missing_column")
    assert problem.rows == [2]   # data row 2 = spreadsheet row 3
    assert "The column names are in data row 2: the header must be the file's first row" \
        in str(error)


# ------------------------------------------------------------------------------ settings


def test_covariates_setting_keeps_only_the_listed_covariates(wai: Instrument,
                                                              swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, {**SETTINGS, "covariates": ["approach"]})
    assert out.clients is not None and list(out.clients.columns) == ["client_id", "approach"]
    assert any("not used: modality" in w for w in out.warnings)
    error = _fail(wai, swemwbs, {**SETTINGS, "covariates": ["approach", "age"]})
    assert [(p.rule, p.column) for p in error.problems] == [("missing_column", "age")]


@pytest.mark.parametrize(
    ("settings", "column"),
    [
        ({"k_anonymity": 0}, "validation.k_anonymity"),
        ({"max_examples": "five"}, "validation.max_examples"),
        ({"allow_columns": "postcode"}, "validation.allow_columns"),
        ({"anonymity_rules": "no/such/rules.yaml"}, "validation.anonymity_rules"),
    ],
)
def test_invalid_settings_are_problems(wai: Instrument, swemwbs: Instrument,
                                       settings: dict[str, Any], column: str) -> None:
    error = _fail(wai, swemwbs, {**SETTINGS, **settings})
    assert [(p.file, p.column, p.rule) for p in error.problems] == [
        ("params.yaml", column, "invalid_setting")]


def test_unknown_settings_and_unused_allowances_warn(wai: Instrument,
                                                     swemwbs: Instrument) -> None:
    out = _run(wai, swemwbs, {**SETTINGS, "k_anonimity": 3, "allow_columns": ["postcode"]})
    assert any("unknown setting(s) k_anonimity" in w for w in out.warnings)
    assert any("allow_columns lists 'postcode', which no input file has" in w
               for w in out.warnings)


def test_missing_required_path(wai: Instrument, swemwbs: Instrument) -> None:
    error = _fail(wai, swemwbs, alliance=None)
    assert [(p.file, p.column, p.rule) for p in error.problems] == [
        ("params.yaml", "data.alliance", "missing_path")]


# -------------------------------------------------------------------------- schema


def test_schema_is_declared_from_the_instrument(wai: Instrument) -> None:
    from pipeline.validate import _alliance_spec

    schema = build_schema(_alliance_spec(["client_id", "therapist_id", "session",
                                          *wai.item_columns], wai))
    assert set(schema.columns) == {"client_id", "therapist_id", "session", *wai.item_columns}
    assert not schema.columns["client_id"].nullable
    assert schema.columns["wai_sr_1"].nullable  # blank item = missing item
    assert {c.name for c in schema.columns["wai_sr_1"].checks} == {"not_a_number",
                                                                    "out_of_range"}
    assert {c.name for c in schema.checks} == {"duplicate_row", "several_therapists"}


def test_problem_is_exported_from_validate() -> None:
    assert Problem("f.csv", None, [], "r", "m").rows == []


def test_missing_key_column_is_reported_once_not_as_duplicates(
    wai: Instrument, swemwbs: Instrument, tmp_path: Path
) -> None:
    """A renamed id column gives one missing_column problem, not every row as a duplicate."""
    alliance = pd.read_csv(GOOD / "alliance.csv").rename(columns={"client_id": "ClientID"})
    path = tmp_path / "alliance.csv"
    alliance.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        _run(wai, swemwbs, alliance=path)
    rules = [p.rule for p in err.value.problems]
    assert "missing_column" in rules
    assert "duplicate_row" not in rules


def test_client_ids_numbered_within_each_therapist_are_named_as_such(
        wai: Instrument, swemwbs: Instrument, tmp_path: Path) -> None:
    """Clients numbered 1, 2, ... within each therapist (a common export): the messages
    said "Delete exact copies; otherwise correct the session" and "correct the
    therapist_id", neither of which is the cause; now every such problem names it, in the
    outcome and clients files too, which have no therapist_id."""
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    outcome = pd.read_csv(GOOD / "outcome.csv", dtype=str)
    clients = pd.read_csv(GOOD / "clients.csv", dtype=str)
    first = alliance.drop_duplicates("client_id")
    within = dict(zip(first["client_id"],
                      first.groupby("therapist_id").cumcount().add(1).astype(str), strict=True))
    alliance["client_id"] = alliance["client_id"].map(within)
    outcome["client_id"] = outcome["client_id"].map(within)
    clients["client_id"] = clients["client_id"].map(within)
    for name, frame in (("a", alliance), ("o", outcome), ("c", clients)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    error = _fail(wai, swemwbs, alliance=tmp_path / "a.csv", outcome=tmp_path / "o.csv",
                  clients=tmp_path / "c.csv")
    rules = [(Path(p.file).name, p.rule) for p in error.problems]
    assert rules == [("a.csv", "duplicate_row"), ("a.csv", "several_therapists"),
                     ("o.csv", "duplicate_row"), ("c.csv", "duplicate_row")]
    for problem in error.problems:
        assert problem.message.endswith(IDS_PER_THERAPIST), problem.message
        assert "Delete exact copies" not in problem.message
        assert "correct the therapist_id" not in problem.message
    # a real copy (the same client, therapist and session twice) keeps its advice
    copied = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    copied = pd.concat([copied, copied.head(2)])
    copied.to_csv(tmp_path / "copied.csv", index=False)
    error = _fail(wai, swemwbs, alliance=tmp_path / "copied.csv")
    assert [p.rule for p in error.problems] == ["duplicate_row"]
    assert error.problems[0].message.endswith("Delete exact copies; otherwise correct the "
                                              "session (or rater) of the rows.")


def test_session_numbers_that_mostly_jump_are_warned_about(
        wai: Instrument, swemwbs: Instrument, tmp_path: Path) -> None:
    """Sessions numbered by week (a fortnightly therapy: 1, 3, 5, ...) passed without a
    word, and every change "per session" was per week: half the true one."""
    from pipeline.validate import session_steps

    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    steps = session_steps(alliance)
    assert np.median(steps) == 1
    out = _run(wai, swemwbs)
    assert not any("jumps by two or more" in w for w in out.warnings)
    checks = out.checks.set_index("check")
    assert checks.loc["session_numbering", "status"] == "pass"
    weekly = alliance.assign(session=(2 * alliance["session"].astype(int) - 1).astype(str))
    weekly.to_csv(tmp_path / "a.csv", index=False)
    outcome = pd.read_csv(GOOD / "outcome.csv", dtype=str)
    outcome.assign(session=(2 * outcome["session"].astype(int) - 1).astype(str)).to_csv(
        tmp_path / "o.csv", index=False)
    out = _run(wai, swemwbs, alliance=tmp_path / "a.csv", outcome=tmp_path / "o.csv")
    said = [w for w in out.warnings if "jumps by two or more" in w]
    n_steps = len(steps)
    assert said == [
        "alliance file: the session number jumps by two or more between most consecutive "
        f"rated sessions of a client ({n_steps} of {n_steps} steps; median step 2). Sessions "
        "must be counted 1, 2, 3, ... in order: if these numbers are weeks, days or "
        "appointment slots, the change per session, the lagged model and the rupture windows "
        "are computed per week (or day). Number each client's sessions in order; if many "
        "sessions were really missed, this warning can be ignored"]
    assert out.checks.set_index("check").loc["session_numbering", "status"] == "warn"
    # steps by hand: one client 1, 2, 4 (steps 1, 2); another 5, 6 (1); a blank session out
    frame = pd.DataFrame({"client_id": ["a", "a", "a", "b", "b", "b"],
                          "session": ["4", "1", "2", "6", "5", None]})
    assert sorted(session_steps(frame).tolist()) == [1.0, 1.0, 2.0]
