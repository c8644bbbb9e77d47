"""Tests for the anonymisation guard: every rule refuses, and never echoes the value."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.anonymity import (
    RULES_PATH,
    check_anonymity,
    check_column_content,
    check_column_names,
    k_anonymity_table,
    load_rules,
    name_words,
    rare_combinations,
)
from pipeline.instruments import Instrument, load_instrument
from pipeline.validate import InputError, ValidatedInputs, validate_inputs

BAD = Path(__file__).parent / "bad_inputs"
GOOD = BAD / "good"
SETTINGS: dict[str, Any] = {"allow_columns": [], "k_anonymity": 5, "max_examples": 5}

sys.path.insert(0, str(BAD))
from make_files import SECRETS  # noqa: E402

sys.path.remove(str(BAD))


@pytest.fixture(scope="module")
def instruments() -> tuple[Instrument, Instrument]:
    return load_instrument("wai_sr"), load_instrument("swemwbs")


def _validate(instruments: tuple[Instrument, Instrument],
              settings: dict[str, Any] | None = None, /, **replace: Path) -> ValidatedInputs:
    paths: dict[str, str | None] = {k: str(GOOD / f"{k}.csv")
                                    for k in ("alliance", "outcome", "clients")}
    paths.update({k: str(v) for k, v in replace.items()})
    return validate_inputs(paths, *instruments, settings or SETTINGS)


def _refused(instruments: tuple[Instrument, Instrument], path: Path,
             settings: dict[str, Any] | None = None) -> InputError:
    with pytest.raises(InputError) as exc:
        _validate(instruments, settings, **{path.stem.split("_", 1)[0]: path})
    return exc.value


# ------------------------------------------------------------------------- by name


NAME_CASES = [
    ("clients_name_person_name.csv", "Client Name", "name:person_name"),
    ("clients_name_email_address.csv", "E-mail", "name:email_address"),
    ("clients_name_phone_number.csv", "Mobile", "name:phone_number"),
    ("clients_name_postcode.csv", "Postcode", "name:postcode"),
    ("clients_name_address.csv", "home_address", "name:address"),
    ("clients_name_birth_date.csv", "DOB", "name:birth_date"),
    ("clients_name_calendar_date.csv", "intake_date", "name:calendar_date"),
    ("clients_name_national_id.csv", "NHSNumber", "name:national_id"),
    ("clients_name_free_text.csv", "Comments", "name:free_text"),
]


@pytest.mark.parametrize(("name", "column", "rule"), NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_identifying_column_names_are_refused(
    instruments: tuple[Instrument, Instrument], name: str, column: str, rule: str
) -> None:
    path = BAD / name
    error = _refused(instruments, path)
    assert [(p.file, p.column, p.rule, p.rows) for p in error.problems] == [
        (str(path), column, rule, [])]
    text = str(error)
    assert f"column '{column}', rule {rule}:" in text
    assert "list it under validation.allow_columns" in text


@pytest.mark.parametrize(
    "column",
    ["client_id", "therapist_id", "session", "rater", "goal", "task", "bond", "approach",
     "modality", "age", "gender", "wai_sr_1", "swemwbs", "phq9_1", "core10_3", "filename",
     "context", "hotel", "site", "attendance"],
)
def test_harmless_column_names_pass(column: str) -> None:
    assert check_column_names([column], load_rules()) == []


@pytest.mark.parametrize(
    ("column", "words"),
    [("DateOfBirth", "date of birth"), ("client-E_mail", "client e mail"),
     ("NHSNumber", "nhs number"), ("wai_sr_12", "wai sr 12"), (" Post Code ", "post code")],
)
def test_name_words(column: str, words: str) -> None:
    assert name_words(column) == words


# ----------------------------------------------------------------------- by content


CONTENT_CASES = [
    ("clients_content_email.csv", "contact", "content:email_address", [1, 3, 4, 6, 7], 7),
    ("clients_content_phone.csv", "contact", "content:phone_number", [1, 3, 4, 6, 7], 7),
    ("clients_content_postcode.csv", "area", "content:uk_postcode", [1, 3, 4, 6, 7], 7),
    ("clients_content_zip.csv", "area", "content:us_zip_code", [1, 2, 3, 4, 5], 10),
    ("clients_content_nhs_number.csv", "reference", "content:nhs_number", [1, 3, 4, 6, 7], 7),
    ("clients_content_ssn.csv", "reference", "content:us_ssn", [1, 3, 4, 6, 7], 7),
    ("clients_content_date.csv", "intake", "content:calendar_date", [1, 3, 4, 6, 7], 7),
    ("clients_content_titled_name.csv", "gp", "content:titled_name", [1, 3, 4, 6, 7], 7),
    ("clients_content_person_name.csv", "referrer", "content:person_name", [1, 2, 3, 4, 5],
     10),
    ("clients_content_free_text.csv", "reason", "content:free_text_long", [1, 3, 4, 6, 7], 7),
    ("clients_content_free_text_words.csv", "topic", "content:free_text_words",
     [1, 2, 3, 4, 5], 10),
    ("alliance_content_person_name_in_id.csv", "client_id", "content:person_name_in_id",
     [1, 2, 3, 4], 4),
]


@pytest.mark.parametrize(("name", "column", "rule", "rows", "count"), CONTENT_CASES,
                         ids=[c[0] for c in CONTENT_CASES])
def test_identifying_content_is_refused_without_echoing_it(
    instruments: tuple[Instrument, Instrument], name: str, column: str, rule: str,
    rows: list[int], count: int,
) -> None:
    path = BAD / name
    error = _refused(instruments, path)
    assert [(p.file, p.column, p.rule, p.rows, p.count) for p in error.problems] == [
        (str(path), column, rule, rows, count)]
    text = str(error)
    assert f"column '{column}', rule {rule}:" in text
    assert "data rows " + ", ".join(map(str, rows)) in text
    assert "values are not shown" in text
    for secret in SECRETS[name]:
        assert secret not in text
        # nor a part of it: names, places, numbers (titles are named in the rule's label)
        for word in secret.split():
            if word in ("Client", "Dr"):
                continue
            if word[0].isupper() or any(ch.isdigit() for ch in word):
                assert word not in text, word
    assert error.checks is not None
    assert all(s not in error.checks.to_csv() for s in SECRETS[name])


@pytest.mark.parametrize("name", ["clients_content_date.xlsx", "clients_content_date.parquet"])
def test_cells_stored_as_dates_are_refused(instruments: tuple[Instrument, Instrument],
                                           name: str) -> None:
    path = BAD / name
    error = _refused(instruments, path)
    assert [(p.column, p.rule, p.rows, p.count) for p in error.problems] == [
        ("intake", "content:calendar_date", [1, 2, 3, 4, 5], 10)]
    assert "stored as calendar dates" in str(error) and "2023" not in str(error)


def test_value_labels_are_checked(instruments: tuple[Instrument, Instrument]) -> None:
    path = BAD / "clients_value_labels.sav"
    error = _refused(instruments, path)
    rules = {(p.column, p.rule) for p in error.problems}
    assert ("gp_code", "content:titled_name:value_labels") in rules
    text = str(error)
    assert "case N in SPSS" not in text  # no rows: the labels are metadata
    assert all(secret not in text for secret in SECRETS[path.name])


def test_a_refused_column_in_an_otherwise_dropped_position_still_stops_the_run(
    instruments: tuple[Instrument, Instrument], tmp_path: Path
) -> None:
    frame = pd.read_csv(GOOD / "outcome.csv")
    frame["note"] = "rang her sister"
    frame.to_csv(tmp_path / "outcome.csv", index=False)
    error = _refused(instruments, tmp_path / "outcome.csv")
    assert [p.rule for p in error.problems] == ["name:free_text"]


# ------------------------------------------------------------------- false positives


def test_contract_values_and_codes_pass() -> None:
    rules = load_rules()
    samples: dict[str, list[Any]] = {
        "client_id": ["C0001", "C0002", "10001", "10002", "007"],
        "therapist_id": ["T01", "T02"],
        "session": ["1", "2", "12"],
        "wai_sr_1": [1.0, 5.0, 3.0],
        "approach": ["CBT", "psychodynamic", "humanistic", "Person Centred", "In Person"],
        "modality": ["in person", "video"],
        "score": ["0.25", "21.54", "35"],
    }
    for column, values in samples.items():
        frame = pd.DataFrame({column: values}, index=pd.RangeIndex(1, len(values) + 1))
        problems = check_anonymity(frame, "f.csv", rules,
                                   contract_columns={"client_id", "therapist_id", "session",
                                                     "wai_sr_1", "score"})
        assert problems == [], (column, [p.rule for p in problems])


def test_five_digit_client_ids_are_not_zip_codes(instruments: tuple[Instrument, Instrument],
                                                  tmp_path: Path) -> None:
    for name in ("alliance", "outcome", "clients"):
        frame = pd.read_csv(GOOD / f"{name}.csv")
        frame["client_id"] = frame["client_id"].str[1:].astype(int) + 10000
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    out = _validate(instruments, alliance=tmp_path / "alliance.csv",
                    outcome=tmp_path / "outcome.csv", clients=tmp_path / "clients.csv")
    assert out.alliance["client_id"].iloc[0] == "10001"


def test_few_title_case_names_do_not_trigger_the_name_rule() -> None:
    rule = next(r for r in load_rules().content if r.kind == "person_name")
    labels = pd.Series(["Cognitive Behavioural", "Person Centred", "Emotion Focused"] * 3)
    assert not check_column_content(labels, rule).any()
    names = pd.Series(SECRETS["clients_content_person_name.csv"])
    assert check_column_content(names, rule).all()


@pytest.mark.parametrize(
    ("value", "kind"),
    [("+44 7700 900123", "phone_number"), ("(555) 123-4567", "phone_number"),
     ("B33 8TH", "uk_postcode"), ("12345-6789", "us_zip_plus4"),
     ("943 476 5919", "nhs_number"), ("078-05-1120", "us_ssn"),
     ("March 15, 2024", "calendar_date"), ("15 Mar 2024", "calendar_date"),
     ("2024-03-15T10:30", "calendar_date"), ("see j.doe@nhs.net today", "email_address")],
)
def test_content_patterns(value: str, kind: str) -> None:
    rule = next(r for r in load_rules().content if r.kind == kind)
    assert check_column_content(pd.Series([value]), rule).all()


# --------------------------------------------------------------------- allow_columns


def test_allow_columns_is_the_only_way_through(instruments: tuple[Instrument, Instrument]
                                               ) -> None:
    path = BAD / "clients_allowed.csv"
    error = _refused(instruments, path)
    assert [(p.column, p.rule) for p in error.problems] == [("comment_count", "name:free_text")]
    out = _validate(instruments, {**SETTINGS, "allow_columns": ["comment_count"]},
                    clients=path)
    assert out.clients is not None
    assert list(out.clients.columns) == ["client_id", "approach", "modality", "comment_count"]
    assert out.clients["comment_count"].dtype == "float64"


def test_allow_columns_matches_the_spelling_in_the_file(
    instruments: tuple[Instrument, Instrument]
) -> None:
    path = BAD / "clients_name_email_address.csv"
    for spelling in ("E-mail", "e_mail"):
        out = _validate(instruments, {**SETTINGS, "allow_columns": [spelling]}, clients=path)
        assert out.clients is not None and "e_mail" in out.clients.columns


def test_allowing_one_column_does_not_allow_another(instruments: tuple[Instrument, Instrument],
                                                    tmp_path: Path) -> None:
    frame = pd.read_csv(BAD / "clients_content_email.csv")
    frame["DOB"] = "x"
    frame.to_csv(tmp_path / "clients.csv", index=False)
    error = _refused(instruments, tmp_path / "clients.csv", {**SETTINGS,
                                                             "allow_columns": ["DOB"]})
    assert [p.rule for p in error.problems] == ["content:email_address"]


def test_custom_rules_file(instruments: tuple[Instrument, Instrument], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_PATH.read_text() .replace(
        "column_names:\n", "column_names:\n  site:\n    label: clinic sites\n"
        "    patterns: ['\\bmodality\\b']\n", 1))
    with pytest.raises(InputError) as exc:
        _validate(instruments, {**SETTINGS, "anonymity_rules": str(rules)})
    assert [(p.column, p.rule) for p in exc.value.problems] == [("modality", "name:site")]


@pytest.mark.parametrize(
    "text",
    ["content:\n  x:\n    pattern: '('\n", "content:\n  x:\n    pattern: a\n    scope: rows\n",
     "content:\n  x:\n    pattern: a\n    typo: 1\n", "column_names:\n  x:\n    patterns: []\n"],
)
def test_malformed_rules_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        load_rules(path)


# ----------------------------------------------------------------------- k-anonymity


def test_k_anonymity_table_counts_combinations_only() -> None:
    clients = pd.DataFrame({
        "client_id": ["C1", "C2", "C3", "C4"],
        "approach": ["CBT", "CBT", "humanistic", None],
        "age": [30.0, 30.0, 41.0, 30.0],
    })
    table = k_anonymity_table(clients, ["approach", "age"])
    assert table.to_dict("records") == [
        {"approach": "(missing)", "age": "30", "n_clients": 1},
        {"approach": "CBT", "age": "30", "n_clients": 2},
        {"approach": "humanistic", "age": "41", "n_clients": 1},
    ]
    assert "client_id" not in table.columns
    assert rare_combinations(table, 2)["n_clients"].tolist() == [1, 1]
    assert list(k_anonymity_table(clients, []).columns) == ["n_clients"]


def test_k_anonymity_of_the_good_set(instruments: tuple[Instrument, Instrument]) -> None:
    out = _validate(instruments)
    assert out.k_anonymity is not None
    assert out.k_anonymity.to_dict("records") == [
        {"approach": "CBT", "modality": "in person", "n_clients": 5},
        {"approach": "humanistic", "modality": "video", "n_clients": 5},
    ]


@pytest.mark.parametrize(("k", "warned"), [(5, True), (2, True), (1, False)])
def test_rare_combinations_warn_at_the_threshold(instruments: tuple[Instrument, Instrument],
                                                 k: int, warned: bool) -> None:
    out = _validate(instruments, {**SETTINGS, "k_anonymity": k},
                    clients=BAD / "clients_k_anonymity.csv")
    warnings = [w for w in out.warnings if "combinations" in w]
    assert bool(warnings) is warned
    if k == 5:
        assert warnings == [
            "clients file: 2 of 3 combinations of approach x modality are shared by fewer "
            "than 5 clients (5 clients in all). Such clients could be singled out: merge "
            "rare categories, or do not publish tables split by these covariates"
        ]
    status = out.checks.set_index(["check", "file"]).loc[("k_anonymity", "clients"), "status"]
    assert status == ("warn" if warned else "pass")
