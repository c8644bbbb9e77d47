"""Probe kind 1, identifiers that got through: every kind is refused (or withheld) now.

Each test builds the hostile file from the clean fixture set (tests/bad_inputs/good) and
checks the rule, that the message never echoes the value, and that the escape hatches
(``validation.allow_columns``, ``validation.covariate_levels``) still work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.anonymity import check_covariates, load_rules
from pipeline.instruments import load_instrument
from pipeline.outputs import neutralise_formulas, write_csv
from pipeline.validate import InputError, ValidatedInputs, validate_inputs

GOOD = Path(__file__).parent / "bad_inputs" / "good"
WAI, SWEMWBS = load_instrument("wai_sr"), load_instrument("swemwbs")


def _run(tmp_path: Path, settings: dict[str, Any] | None = None,
         **frames: pd.DataFrame) -> ValidatedInputs:
    paths = {k: str(GOOD / f"{k}.csv") for k in ("alliance", "outcome", "clients")}
    for role, frame in frames.items():
        path = tmp_path / f"{role}.csv"
        frame.to_csv(path, index=False)
        paths[role] = str(path)
    return validate_inputs(paths, WAI, SWEMWBS, settings or {})


def _refused(tmp_path: Path, settings: dict[str, Any] | None = None,
             **frames: pd.DataFrame) -> InputError:
    with pytest.raises(InputError) as exc:
        _run(tmp_path, settings, **frames)
    return exc.value


def _clients(**covariates: list[Any]) -> pd.DataFrame:
    frame = pd.read_csv(GOOD / "clients.csv", dtype=str)
    for name, values in covariates.items():
        frame[name] = (values * len(frame))[: len(frame)]
    return frame


def _rules(error: InputError) -> set[str]:
    return {p.rule for p in error.problems}


def _never_echoed(error: InputError, values: list[Any]) -> None:
    text = str(error)
    for value in values:
        assert str(value) not in text


# ---------------------------------------------------------------- names, few values


NAMES = ["Anna Berg", "Peter Olsen", "Maria Lund"]


def test_names_in_a_covariate_with_few_values_are_refused(tmp_path: Path) -> None:
    error = _refused(tmp_path, clients=_clients(referrer=NAMES))
    assert _rules(error) == {"covariate:name_like"}
    assert "covariate_levels.referrer" in str(error)
    _never_echoed(error, NAMES)


def test_declared_levels_and_allow_columns_let_categories_through(tmp_path: Path) -> None:
    levels = ["Person Centred", "In Person"]
    declared = {"covariate_levels": {"style": levels}}
    out = _run(tmp_path, declared, clients=_clients(style=levels))
    assert set(out.clients["style"]) == set(levels)
    assert set(out.k_anonymity["style"]) == set(levels)
    out = _run(tmp_path, {"allow_columns": ["style"]}, clients=_clients(style=levels))
    assert set(out.clients["style"]) == set(levels)
    # a declared list is exact: a value outside it is refused
    error = _refused(tmp_path, {"covariate_levels": {"style": ["In Person"]}},
                     clients=_clients(style=levels))
    assert _rules(error) == {"covariate:undeclared_level"}


def test_lower_case_and_code_categories_pass(tmp_path: Path) -> None:
    out = _run(tmp_path, clients=_clients(group=["in person", "CBT-I", "group (8)", "18-25"]))
    assert "group" in out.k_anonymity.columns


# --------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("values", "rule"),
    [([19850312, 19921130, 20010704], "content:birth_date_number"),
     (["12031985", "30111992", "04072001"], "content:birth_date_number"),
     (["078 05 1120", "219 09 9999", "457 55 5462"], "content:us_ssn"),
     (["078051120", "219099999", "457555462"], "content:us_ssn_digits")],
    ids=["yyyymmdd", "ddmmyyyy", "ssn_spaces", "ssn_digits"],
)
def test_dates_of_birth_and_ssns_written_as_numbers_are_refused(
    tmp_path: Path, values: list[Any], rule: str
) -> None:
    error = _refused(tmp_path, clients=_clients(ref=values))
    assert rule in _rules(error)
    _never_echoed(error, values)


def _thirty_clients() -> pd.DataFrame:
    clients = pd.read_csv(GOOD / "clients.csv", dtype=str)
    clients = pd.concat([clients] * 3, ignore_index=True)
    clients["client_id"] = [f"C{i:02d}" for i in range(1, len(clients) + 1)]
    return clients


def test_many_valued_numeric_covariate_is_used_but_not_tabulated(tmp_path: Path) -> None:
    clients = _thirty_clients()
    clients["age"] = list(range(20, 50))
    out = _run(tmp_path, clients=clients)
    assert out.clients["age"].notna().all()
    assert "age" not in out.k_anonymity.columns
    withheld = out.checks[out.checks["check"] == "k_anonymity_withheld"]
    assert withheld["n"].tolist() == [1]


def test_free_categories_with_many_levels_are_refused(tmp_path: Path) -> None:
    clients = _thirty_clients()
    clients["town"] = [f"town{i}" for i in range(30)]
    error = _refused(tmp_path, clients=clients)
    assert "covariate:too_many_levels" in _rules(error)


# ------------------------------------------------------------------------- ids


@pytest.mark.parametrize("ids", [["Smith", "Jones"], ["smith", "jones"], ["O'Brien", "Berg"]])
def test_surnames_as_therapist_ids_are_refused(tmp_path: Path, ids: list[str]) -> None:
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    alliance["therapist_id"] = alliance["therapist_id"].map({"T1": ids[0], "T2": ids[1]})
    error = _refused(tmp_path, alliance=alliance)
    assert ("therapist_id", "content:word_as_id") in {(p.column, p.rule)
                                                      for p in error.problems}
    _never_echoed(error, ids)


def test_code_ids_pass(tmp_path: Path) -> None:
    alliance = pd.read_csv(GOOD / "alliance.csv", dtype=str)
    alliance["therapist_id"] = alliance["therapist_id"].map({"T1": "th01", "T2": "AB"})
    assert set(_run(tmp_path, alliance=alliance).alliance["therapist_id"]) == {"th01", "AB"}


# --------------------------------------------------------------------- headers


@pytest.mark.parametrize("header", ["anna.berg@example.org", "+44 7700 900123",
                                    "1985-03-12", "Dr Smith"])
def test_identifier_as_a_column_header_is_refused_by_position(
    tmp_path: Path, header: str
) -> None:
    clients = pd.read_csv(GOOD / "clients.csv", dtype=str)
    clients[header] = "x"
    error = _refused(tmp_path, {"allow_columns": [header]}, clients=clients)
    problems = [p for p in error.problems if p.rule.startswith("header:")]
    assert [p.column for p in problems] == ["column 4 (name not shown)"]
    assert header not in str(error) and header.lower() not in str(error)
    assert error.checks is not None
    assert not error.checks["detail"].str.contains(header, regex=False).any()


# -------------------------------------------------------------------- formulas


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+SUM(A1)", "-2+3", "@cmd"])
def test_formula_in_a_covariate_is_refused(tmp_path: Path, value: str) -> None:
    error = _refused(tmp_path, clients=_clients(group=[value, "b"]))
    assert "covariate:not_a_category" in _rules(error)


def test_csv_outputs_never_carry_a_live_formula(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": ["=1+1", "+A1", "-x", "@y", "ok", "-0.5"],
                          "number": [-1.5, -2.0, 3.0, 4.0, 5.0, 6.0]})
    path = write_csv(frame, tmp_path / "out.csv")
    lines = path.read_text().splitlines()
    assert lines[1:] == ["'=1+1,-1.5", "'+A1,-2.0", "'-x,3.0", "'@y,4.0", "ok,5.0", "-0.5,6.0"]
    assert neutralise_formulas(pd.DataFrame({"=x": [1]})).columns.tolist() == ["'=x"]


# ---------------------------------------------------- nothing uncleared is published


def test_every_published_covariate_value_was_cleared(tmp_path: Path) -> None:
    """The k-anonymity table (published with values) carries only values that pass."""
    clients = _thirty_clients()
    clients["group"] = ["in person", "video"] * 15
    clients["age"] = list(range(30))
    out = _run(tmp_path, clients=clients)
    table = out.k_anonymity.drop(columns="n_clients")
    problems, continuous = check_covariates(table, list(table.columns), "k", load_rules())
    assert problems == [] and continuous == []
    assert "age" not in table.columns


def test_known_false_positive_five_digit_covariate_has_the_escape_hatch(
    tmp_path: Path
) -> None:
    incomes = [41000, 52000, 38000, 61000, 45000]
    error = _refused(tmp_path, clients=_clients(income=incomes))
    assert "content:us_zip_code" in _rules(error)
    out = _run(tmp_path, {"allow_columns": ["income"]}, clients=_clients(income=incomes))
    assert out.clients["income"].notna().all()
