"""Model specifications: ``pipeline/models.yaml`` read, checked and parsed.

Random parts are written in lme4 notation and parsed here into :class:`ReTerm` objects
(the engine's input), e.g. ``(1 | therapist_id) + (1 | client_id) + (0 + time |
client_id)`` gives three terms and ``(1 | therapist_id) + (1 + time | client_id)`` two,
the second a correlated 2 x 2 block. lme4's double bar ``(1 + time || client_id)`` is
expanded into uncorrelated terms as lme4 does. Unknown keys are refused with a
:class:`~pipeline.errors.SpecError` that names the file, the model and the key.

R equivalent: ``lme4::findbars`` / ``lme4::mkReTrms``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import SpecError
from pipeline.models.terms import ReTerm

#: Default model specifications.
SPEC_PATH = Path(__file__).resolve().parent.parent / "models.yaml"
#: Data constructions a model may ask for (``data:`` in models.yaml).
DATA_KINDS = ("complete", "lagged", "detrended")
_TOP_KEYS = {"group_labels", "random_parts", "models", "comparisons"}
_MODEL_KEYS = {
    "plan", "title", "description", "formula", "random", "reml", "data", "min_sessions",
    "covariates", "holm", "holm_term", "icc",
}
_RANDOM_KEYS = {"description", "formula"}
_COMPARISON_KEYS = {"name", "reduced", "full", "description"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class RandomPart:
    """A random part of models.yaml.

    Attributes
    ----------
    name
        Key in ``random_parts``.
    formula
        The lme4 notation as written.
    terms
        Parsed terms in the order written.
    labels
        Grouping column -> the project's name of its level (``therapist_id`` ->
        ``therapist``), used for component names.
    description
        Plain-language description.
    """

    name: str
    formula: str
    terms: tuple[ReTerm, ...]
    labels: Mapping[str, str]
    description: str = ""

    @property
    def factors(self) -> tuple[str, ...]:
        """Grouping columns in order of first appearance."""
        return tuple(dict.fromkeys(t.factor for t in self.terms))

    @property
    def variables(self) -> tuple[str, ...]:
        """Random-effect variables other than the intercept (e.g. ``time``)."""
        return tuple(dict.fromkeys(c for t in self.terms for c in t.columns
                                   if c != "(Intercept)"))

    def label(self, factor: str) -> str:
        """Project name of a grouping factor's level."""
        return self.labels.get(factor, factor)

    def component(self, factor: str, column: str) -> str:
        """Project name of a variance component: ``client``, ``client_time``, ..."""
        base = self.label(factor)
        return base if column == "(Intercept)" else f"{base}_{column}"

    @property
    def intercepts(self) -> tuple[str, ...]:
        """Components that are random intercepts (for ICCs)."""
        return tuple(self.component(t.factor, "(Intercept)") for t in self.terms
                     if "(Intercept)" in t.columns)

    def without(self, factors: set[str] | None = None, columns: set[str] | None = None,
                within: str | None = None) -> RandomPart:
        """This random part without the terms of ``factors`` or without ``columns``
        (in the terms of factor ``within`` only, when given)."""
        kept = []
        for t in self.terms:
            if factors and t.factor in factors:
                continue
            drop = columns if within is None or t.factor == within else None
            cols = tuple(c for c in t.columns if not drop or c not in drop)
            if cols:
                kept.append(ReTerm(t.factor, cols))
        return RandomPart(self.name, format_random(kept), tuple(kept), self.labels,
                          self.description)


@dataclass(frozen=True)
class ModelSpec:
    """One model of models.yaml (see the comments at the top of that file)."""

    name: str
    plan: str
    title: str
    description: str
    formula: str
    random: RandomPart
    reml: bool = True
    data: str = "complete"
    min_sessions: int | None = None
    covariates: tuple[str, ...] = ()
    holm: str | None = None
    holm_term: str | None = None
    icc: bool = False

    @property
    def outcome(self) -> str:
        """Left-hand side of the formula."""
        return self.formula.split("~", 1)[0].strip()


@dataclass(frozen=True)
class Comparison:
    """A likelihood-ratio test between two nested models (ML refits)."""

    name: str
    reduced: str
    full: str
    description: str = ""


@dataclass(frozen=True)
class ModelPlan:
    """All model specifications and comparisons of one models.yaml."""

    models: tuple[ModelSpec, ...]
    comparisons: tuple[Comparison, ...]
    random_parts: Mapping[str, RandomPart]
    path: str = ""

    def get(self, name: str) -> ModelSpec:
        """Return the model called ``name``."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise SpecError(f"{self.path}: no model {name!r} (models: "
                        f"{', '.join(m.name for m in self.models)})")


def _split_top(text: str, sep: str = "+") -> list[str]:
    """Split on ``sep`` outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_random(formula: str, where: str = "random part") -> tuple[ReTerm, ...]:
    """Parse an lme4 random part into terms.

    Parameters
    ----------
    formula
        e.g. ``"(1 | therapist_id) + (1 + time | client_id)"``.
    where
        Named in error messages (file and model).

    Returns
    -------
    tuple of ReTerm
        One term per bar; ``||`` expanded into one term per column as lme4 does.

    Raises
    ------
    SpecError
        On anything that is not ``(expr | factor)`` terms joined by ``+``, where ``expr``
        is ``1``, ``0``/``-1`` and variable names joined by ``+``.
    """
    text = " ".join(str(formula).split())
    if not text:
        raise SpecError(f"{where}: the random part is empty; write lme4 terms such as "
                        "'(1 | therapist_id) + (1 | client_id)'")
    terms: list[ReTerm] = []
    for part in _split_top(text):
        m = re.fullmatch(r"\((?P<expr>[^|()]+)(?P<bar>\|\|?)(?P<group>[^|()]+)\)", part)
        if not m:
            raise SpecError(f"{where}: cannot read {part!r} as an lme4 term; write "
                            "'(1 | group)', '(0 + x | group)' or '(1 + x | group)'")
        group = m["group"].strip()
        if not _NAME.match(group):
            raise SpecError(f"{where}: grouping factor {group!r} must be one column name "
                            "(write nested factors as separate terms with unique ids)")
        intercept = True
        cols: list[str] = []
        for tok in (t.strip() for t in m["expr"].replace("-1", "+ 0 ").split("+")):
            if tok in ("", ):
                continue
            if tok == "1":
                intercept = True
            elif tok == "0":
                intercept = False
            elif _NAME.match(tok):
                cols.append(tok)
            else:
                raise SpecError(f"{where}: {tok!r} in {part!r} is not a column name; "
                                "random slopes take plain variables")
        columns = (("(Intercept)",) if intercept else ()) + tuple(cols)
        if not columns:
            raise SpecError(f"{where}: {part!r} has no random effect")
        if m["bar"] == "||":
            terms.extend(ReTerm(group, (c,)) for c in columns)
        else:
            terms.append(ReTerm(group, columns))
    return tuple(terms)


def format_random(terms: list[ReTerm] | tuple[ReTerm, ...]) -> str:
    """lme4 notation of terms (inverse of :func:`parse_random`)."""
    out = []
    for t in terms:
        cols = [c for c in t.columns if c != "(Intercept)"]
        lhs = " + ".join((["1"] if "(Intercept)" in t.columns else ["0"]) + cols)
        out.append(f"({lhs} | {t.factor})")
    return " + ".join(out)


def _unknown(keys: Any, allowed: set[str], where: str) -> None:
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}. "
                        "Fix the spelling or remove the key.")


def load_specs(path: str | Path | None = None) -> ModelPlan:
    """Read, check and parse the model specifications.

    Parameters
    ----------
    path
        A models.yaml file; ``None`` reads ``pipeline/models.yaml``.

    Returns
    -------
    ModelPlan
        Models in file order, comparisons and random parts.

    Raises
    ------
    SpecError
        On unknown keys (naming file, model and key), unparsable random parts, unknown
        random parts or data kinds, and comparisons of models with different rows or
        random parts.
    """
    file = Path(path or SPEC_PATH)
    shown = file.name if path is None else str(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{shown}: cannot read the model specifications ({exc})") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{shown}: expected a mapping with random_parts, models, comparisons")
    _unknown(raw, _TOP_KEYS, shown)
    labels = {str(k): str(v) for k, v in (raw.get("group_labels") or {}).items()}
    parts: dict[str, RandomPart] = {}
    for name, entry in (raw.get("random_parts") or {}).items():
        where = f"{shown}, random part {name}"
        if not isinstance(entry, dict) or "formula" not in entry:
            raise SpecError(f"{where}: give 'formula' in lme4 notation")
        _unknown(entry, _RANDOM_KEYS, where)
        terms = parse_random(str(entry["formula"]), where)
        parts[str(name)] = RandomPart(str(name), " ".join(str(entry["formula"]).split()),
                                      terms, labels,
                                      " ".join(str(entry.get("description", "")).split()))
    models = []
    for name, entry in (raw.get("models") or {}).items():
        where = f"{shown}, model {name}"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a mapping of settings")
        _unknown(entry, _MODEL_KEYS, where)
        for key in ("formula", "random"):
            if key not in entry:
                raise SpecError(f"{where}: '{key}' is required")
        if entry["random"] not in parts:
            raise SpecError(f"{where}: unknown random part {entry['random']!r} (known: "
                            f"{sorted(parts)})")
        if "~" not in str(entry["formula"]):
            raise SpecError(f"{where}: formula must read 'outcome ~ predictors'")
        kind = str(entry.get("data", "complete"))
        if kind not in DATA_KINDS:
            raise SpecError(f"{where}: data must be one of {DATA_KINDS}, not {kind!r}")
        if bool(entry.get("holm")) != bool(entry.get("holm_term")):
            raise SpecError(f"{where}: give both holm and holm_term, or neither")
        min_sessions = entry.get("min_sessions")
        models.append(ModelSpec(
            name=str(name),
            plan=str(entry.get("plan", "")),
            title=str(entry.get("title", name)),
            description=" ".join(str(entry.get("description", "")).split()),
            formula=" ".join(str(entry["formula"]).split()),
            random=parts[entry["random"]],
            reml=bool(entry.get("reml", True)),
            data=kind,
            min_sessions=None if min_sessions is None else int(min_sessions),
            covariates=tuple(str(c) for c in entry.get("covariates", []) or []),
            holm=entry.get("holm"),
            holm_term=entry.get("holm_term"),
            icc=bool(entry.get("icc", False)),
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise SpecError(f"{shown}: model names must be unique")
    comparisons = []
    for entry in raw.get("comparisons", []) or []:
        where = f"{shown}, comparison {entry.get('name', '?')}"
        _unknown(entry, _COMPARISON_KEYS, where)
        comp = Comparison(name=str(entry["name"]), reduced=str(entry["reduced"]),
                          full=str(entry["full"]),
                          description=" ".join(str(entry.get("description", "")).split()))
        for side in (comp.reduced, comp.full):
            if side not in names:
                raise SpecError(f"{where}: unknown model {side!r}")
        red, full = models[names.index(comp.reduced)], models[names.index(comp.full)]
        if (red.random.name, red.data, red.min_sessions) != (
                full.random.name, full.data, full.min_sessions):
            raise SpecError(f"{where}: the models differ in random part or data; a "
                            "likelihood-ratio test needs the same rows and random part")
        comparisons.append(comp)
    return ModelPlan(models=tuple(models), comparisons=tuple(comparisons),
                     random_parts=parts, path=shown)
