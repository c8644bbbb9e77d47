"""The shipped instrument keys equal the reference table, and malformed keys are refused.

The expected keys below are copied by hand from the published sources (each YAML's
``source``, listed in docs/references.yaml); they pin the YAML files so that an accidental
edit of a key fails a test.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from pipeline.instruments import (
    BUILTIN_DIR,
    InstrumentError,
    available_instruments,
    load_instrument,
)
from pipeline.score import outcome_range

WAI36_KEY = {
    "goal": (3, 6, 9, 10, 12, 14, 22, 25, 27, 30, 32, 34),
    "task": (2, 4, 7, 11, 13, 15, 16, 18, 24, 31, 33, 35),
    "bond": (1, 5, 8, 17, 19, 20, 21, 23, 26, 28, 29, 36),
}
WAI36_REVERSED = (1, 3, 7, 9, 10, 11, 12, 15, 20, 27, 29, 31, 33, 34)

ALLIANCE = {
    # key: (n_items, range, subscales, reversed)
    "wai_sr": (12, (1, 5), {"goal": (4, 6, 8, 11), "task": (1, 2, 10, 12),
                            "bond": (3, 5, 7, 9)}, ()),
    "wai_s": (12, (1, 7), {"goal": (4, 6, 10, 11), "task": (1, 2, 8, 12),
                           "bond": (3, 5, 7, 9)}, (4, 10)),
    "wai36": (36, (1, 7), WAI36_KEY, WAI36_REVERSED),
}
THERAPIST = {"wai_s_t": "wai_s", "wai36_t": "wai36"}

OUTCOME = {
    # key: (n_items, range, reversed, direction, max_missing, reported range)
    "wemwbs": (14, (1, 5), (), "higher_better", 0, (14, 70)),
    "swemwbs": (7, (1, 5), (), "higher_better", 0, (7, 35)),
    "who5": (5, (0, 5), (), "higher_better", 0, (0, 100)),
    "core10": (10, (0, 4), (2, 3), "higher_worse", 1, (0, 40)),
    "phq9": (9, (0, 3), (), "higher_worse", 2, (0, 27)),
    "gad7": (7, (0, 3), (), "higher_worse", 0, (0, 21)),
}

ONE_SOURCE = {"wai36", "gad7"}


def test_registry_lists_every_instrument() -> None:
    expected = set(ALLIANCE) | set(THERAPIST) | set(OUTCOME)
    assert expected <= set(available_instruments())


@pytest.mark.parametrize("key", sorted(ALLIANCE))
def test_alliance_keys_match_reference(key: str) -> None:
    n_items, rng, subscales, rev = ALLIANCE[key]
    inst = load_instrument(key)
    assert inst.kind == "alliance"
    assert inst.rater == "client"
    assert inst.n_items == n_items
    assert (inst.item_min, inst.item_max) == rng
    assert dict(inst.subscales) == subscales
    assert inst.reversed == rev
    assert inst.score == "mean"
    assert inst.missing["max_missing_per_subscale"] == 1
    assert inst.item_columns[0] == f"{key}_1"


@pytest.mark.parametrize("key", sorted(ALLIANCE) + sorted(THERAPIST))
def test_alliance_subscales_partition_items(key: str) -> None:
    inst = load_instrument(key)
    numbers = [i for its in inst.subscales.values() for i in its]
    assert sorted(numbers) == list(range(1, inst.n_items + 1))
    assert set(inst.reversed) <= set(numbers)


def test_wai36_has_fourteen_reversed_items() -> None:
    assert len(load_instrument("wai36").reversed) == 14


@pytest.mark.parametrize(("therapist", "client"), sorted(THERAPIST.items()))
def test_therapist_key_is_the_client_key_and_says_so(therapist: str, client: str) -> None:
    t, c = load_instrument(therapist), load_instrument(client)
    assert t.rater == "therapist"
    assert t.item_prefix == therapist != c.item_prefix
    assert dict(t.subscales) == dict(c.subscales)
    assert t.reversed == c.reversed
    assert (t.item_min, t.item_max, t.n_items) == (c.item_min, c.item_max, c.n_items)
    assert t.checked.startswith("assumed")
    assert "ASSUMED KEY" in (BUILTIN_DIR / t.path).read_text(encoding="utf-8")


def test_same_item_text_keyed_differently_across_forms() -> None:
    # WAI-SR item 8 is Goal; WAI-S item 8 is Task (instruments.md).
    assert 8 in load_instrument("wai_sr").subscales["goal"]
    assert 8 in load_instrument("wai_s").subscales["task"]
    assert 24 in load_instrument("wai36").subscales["task"]


@pytest.mark.parametrize("key", sorted(OUTCOME))
def test_outcome_keys_match_reference(key: str) -> None:
    n_items, rng, rev, direction, max_missing, reported = OUTCOME[key]
    inst = load_instrument(key)
    assert inst.kind == "outcome"
    assert inst.n_items == n_items
    assert (inst.item_min, inst.item_max) == rng
    assert inst.reversed == rev
    assert inst.direction == direction
    assert inst.score == "sum"
    assert inst.missing.get("max_missing", 0) == max_missing
    assert outcome_range(inst) == reported


def test_who5_multiplier_and_swemwbs_conversion_table() -> None:
    assert load_instrument("who5").multiplier == 4
    conv = load_instrument("swemwbs").conversion
    assert conv is not None
    assert sorted(conv) == list(range(7, 36))
    assert (conv[7], conv[21], conv[35]) == (7.00, 19.25, 35.00)
    values = [conv[k] for k in sorted(conv)]
    assert all(a < b for a, b in pairwise(values))


@pytest.mark.parametrize(
    "key", sorted(ALLIANCE) + sorted(THERAPIST) + sorted(OUTCOME)
)
def test_checked_field_follows_reference(key: str) -> None:
    checked = load_instrument(key).checked
    if key in THERAPIST:
        assert checked.startswith("assumed")
    elif key in ONE_SOURCE:
        assert "one source" in checked
    else:
        assert checked.startswith("checked")


def test_unknown_instrument_lists_known_keys() -> None:
    with pytest.raises(InstrumentError, match="wai_s"):
        load_instrument("no_such_form")


VALID = """\
key: myform
kind: outcome
n_items: 3
range: [0, 3]
score: sum
"""


def test_user_folder_overrides_and_is_validated(tmp_path: Path) -> None:
    (tmp_path / "myform.yaml").write_text(VALID + "missing: {max_missing: 1, method: prorate}\n")
    inst = load_instrument("myform", [tmp_path])
    assert inst.item_columns == ["myform_1", "myform_2", "myform_3"]
    assert outcome_range(inst) == (0, 9)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("missing: {max_missing_items: 1}\n", "unknown missing-rule keys"),
        ("missing: {max_missing: 1, method: impute}\n", "missing.method"),
        ("missing: {max_missing: -1}\n", "non-negative integer"),
        ("direction: up\n", "direction"),
        ("conversion: {0: 1.0, 1: 2.0}\n", "lacks raw totals"),
        ("conversion: {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}\n"
         "missing: {max_missing: 1}\n", "whole raw sums"),
        ("reversed: [4]\n", "outside 1..3"),
        # a misspelt field was ignored: CORE-10 with `reverse: [2, 3]` scored unreversed
        ("reverse: [2]\n", r"unknown field\(s\) 'reverse' \(did you mean 'reversed'\?\)"),
        ("multiplyer: 4\nnotes: x\n", r"'multiplyer' \(did you mean 'multiplier'\?\), 'notes':"),
    ],
)
def test_malformed_keys_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "myform.yaml").write_text(VALID + extra)
    with pytest.raises(InstrumentError, match=message):
        load_instrument("myform", [tmp_path])


ALLIANCE_VALID = """\
key: mywai
kind: alliance
n_items: 6
range: [1, 5]
subscales: {goal: [1, 4], task: [2, 5], bond: [3, 6]}
missing: {max_missing_per_subscale: 1}
"""


def test_user_alliance_key_with_upper_case_prefix_matches_the_columns(tmp_path: Path) -> None:
    """Input columns are matched lower-cased (`WAI-SR_1` is `wai_sr_1`); the prefix was not,
    so a key written `item_prefix: WAI-SR` never found its items."""
    (tmp_path / "mywai.yaml").write_text(ALLIANCE_VALID + "item_prefix: My-WAI\n")
    inst = load_instrument("mywai", [tmp_path])
    assert inst.item_columns == [f"my_wai_{i}" for i in range(1, 7)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # silently accepted before: goal missing made every model "columns missing"
        (("goal: [1, 4], ", ""), "subscales must be exactly goal, task and bond (the models of "
         "the analysis plan use these three, and the total is their mean); found task, bond."),
        (("bond: [3, 6]", "bond: [3, 6], other: [1]"), "found goal, task, bond, other."),
        (("goal: [1, 4]", "goal: [1, 2]"),
         "each of the 6 items must belong to exactly one subscale: item(s) 2 in more than one "
         "subscale; item(s) 4 in no subscale."),
        (("max_missing_per_subscale: 1", "max_missing_per_subscale: 2"),
         "missing.max_missing_per_subscale is 2, but its smallest subscale has 2 items: a "
         "score with every item missing would be computed from nothing. Give fewer than 2"),
        (("key: mywai", "key: wai_sr"), "key is 'wai_sr', but the file is named mywai.yaml"),
    ],
)
def test_alliance_key_mistakes_are_refused(tmp_path: Path, change: tuple[str, str],
                                           message: str) -> None:
    (tmp_path / "mywai.yaml").write_text(ALLIANCE_VALID.replace(*change))
    with pytest.raises(InstrumentError) as info:
        load_instrument("mywai", [tmp_path])
    assert message in str(info.value)
    assert str(tmp_path / "mywai.yaml") in str(info.value) and "Correct the file" in str(info.value)


def test_outcome_max_missing_must_leave_an_item(tmp_path: Path) -> None:
    (tmp_path / "myform.yaml").write_text(VALID + "missing: {max_missing: 3}\n")
    with pytest.raises(InstrumentError, match=r"missing\.max_missing is 3, but the questionnaire "
                                              "has 3 items"):
        load_instrument("myform", [tmp_path])


@pytest.mark.parametrize(("key", "construct"), [
    ("swemwbs", "wellbeing"), ("wemwbs", "wellbeing"), ("who5", "wellbeing"),
    ("phq9", "depression"), ("gad7", "anxiety"), ("core10", "psychological distress")])
def test_outcomes_name_what_they_measure(key: str, construct: str) -> None:
    """The reports call the outcome by its construct (a PHQ-9 analysis said 'wellbeing')."""
    assert load_instrument(key).construct == construct
