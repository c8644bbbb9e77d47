"""Readable names of model terms, the one source of them for tables, figures and messages;
and the one mark between a reason and the advice to the analyst (:func:`advised`).

``goal_within`` -> ``Goal (within client)``, ``C(approach)[T.pdt]`` -> ``Approach: pdt``.
Its own module with no dependencies, so that the pre-fit checks
(:mod:`pipeline.models.checks`) write their reasons with the names the reports show,
without importing the table machinery. The result may hold a user's covariate levels:
escape it where it is shown (``pipeline.report.escape``; the tables escape their cells).
"""

from __future__ import annotations

import re

_PARTS = {
    "within_lag": "within client, previous session",
    "within": "within client",
    "between": "between clients",
    "client": "client within therapist",
    "therapist": "therapist mean",
    "lag": "previous session",
}
_CATEGORY = re.compile(r"^C\((?P<var>[^)]+)\)\[T\.(?P<level>.+)\]$")


def term_label(term: str) -> str:
    """Readable name of a model term.

    ``goal_within`` -> ``Goal (within client)``; ``C(approach)[T.CBT]`` -> ``Approach:
    CBT``; interactions are joined with a multiplication sign.
    """
    if ":" in term:
        return " \u00d7 ".join(term_label(part) for part in term.split(":"))
    if term == "Intercept":
        return "Intercept"
    if term == "time":
        return "Time (session \u2212 1)"
    if term == "wellbeing_lag":   # the outcome column is named wellbeing whatever it measures
        return "Outcome (previous session)"
    match = _CATEGORY.match(term)
    if match:
        return f"{match['var'].replace('_', ' ').capitalize()}: {match['level']}"
    for suffix, words in _PARTS.items():
        if term.endswith(f"_{suffix}"):
            stem = term[: -len(suffix) - 1].replace("_", " ")
            stem = "Total alliance" if stem == "total" else stem.capitalize()
            return f"{stem} ({words})"
    return term.replace("_", " ").capitalize()


#: Where a message's reason ends and its advice to the analyst begins. A check that
#: cannot fit a model (:mod:`pipeline.models.checks`, the ruptures models) writes its
#: message with :func:`advised`: the log line and the ``reason`` column of the results
#: tables carry both; the reports show the reason only (:func:`without_advice`, through
#: ``pipeline.report.reason_words``), since they read as the results section of a paper.
FOR_THE_ANALYST = "For the analyst: "


def advised(reason: str, advice: str) -> str:
    """A reason followed by what the analyst can do about it, for the run log:
    ``"the outcome is constant ... For the analyst: check the scoring of the outcome"``
    (``advice`` starts lower case; a full stop is put between the two)."""
    return f"{reason.rstrip('. ')}. {FOR_THE_ANALYST}{advice}"


def without_advice(message: str) -> str:
    """The reason of a message written by :func:`advised` (the advice cut off, with the
    full stop before it); any other message as it is."""
    reason, mark, _ = message.partition(" " + FOR_THE_ANALYST)
    return reason.rstrip(".") if mark else message


def advice_of(message: str) -> str:
    """The advice of a message written by :func:`advised`; ``""`` when it has none."""
    return message.partition(FOR_THE_ANALYST)[2]
