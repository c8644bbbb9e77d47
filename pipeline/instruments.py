"""Instrument registry: scoring keys kept as data, one YAML file per instrument.

The shipped keys live in ``pipeline/instruments/<key>.yaml``. A user adds an instrument
by writing one such file in a folder listed under ``instruments.paths`` in
``params.yaml`` and naming its key under ``instruments.alliance`` or
``instruments.outcome``.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline import yamlfile
from pipeline.errors import PipelineError

BUILTIN_DIR = Path(__file__).parent / "instruments"

#: What to do about a malformed instrument file (appended to every such message).
FIX_HINT = (
    "Correct the file: every field is shown in the shipped pipeline/instruments/wai_sr.yaml "
    "(alliance) and pipeline/instruments/swemwbs.yaml (outcome). Or name a shipped instrument "
    "under instruments.alliance / instruments.outcome in params.yaml."
)


class InstrumentError(PipelineError, ValueError):
    """An instrument key file is missing or malformed (the message names the file)."""


@dataclass(frozen=True)
class Instrument:
    """One questionnaire's scoring key.

    Attributes
    ----------
    key
        Short name, also the prefix of the item columns (``<item_prefix>_<n>``).
    kind
        ``"alliance"`` (scored into subscales such as goal, task, bond) or ``"outcome"``.
    n_items
        Number of items, numbered 1..n_items.
    item_min, item_max
        Valid item range (inclusive). Checked *before* any item is reversed.
    reversed
        Item numbers scored as ``item_min + item_max - x``.
    score
        ``"mean"`` or ``"sum"``.
    subscales
        Subscale name -> item numbers (alliance instruments).
    missing
        Missing-item rule (see each YAML file).
    conversion
        Optional raw-total -> metric table (e.g. SWEMWBS Rasch conversion).
    direction
        ``"higher_better"`` or ``"higher_worse"``.
    construct
        What an outcome measures, as the reports name it (``wellbeing``, ``depression``,
        ``psychological distress``); ``""``: the reports say "the outcome".
    """

    key: str
    name: str
    kind: Literal["alliance", "outcome"]
    n_items: int
    item_prefix: str
    item_min: float
    item_max: float
    reversed: tuple[int, ...] = ()
    score: Literal["mean", "sum"] = "mean"
    subscales: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    missing: Mapping[str, Any] = field(default_factory=dict)
    conversion: Mapping[int, float] | None = None
    multiplier: float = 1.0
    direction: Literal["higher_better", "higher_worse"] = "higher_better"
    construct: str = ""
    rater: str | None = None
    checked: str = ""
    source: str = ""
    path: str = ""

    @property
    def item_columns(self) -> list[str]:
        """Item column names in item order, e.g. ``wai_sr_1`` ... ``wai_sr_12``."""
        return [f"{self.item_prefix}_{i}" for i in range(1, self.n_items + 1)]


#: The fields an instrument file may have (see the shipped files). Any other field is a
#: misspelling that would otherwise be ignored silently (``reverse:`` for ``reversed:``
#: left CORE-10's items 2 and 3 unreversed).
FIELDS = frozenset({
    "key", "name", "kind", "n_items", "item_prefix", "range", "reversed", "score",
    "subscales", "missing", "conversion", "multiplier", "direction", "construct", "rater",
    "checked", "source"})


def _check_fields(raw: Mapping[str, Any], path: Path) -> None:
    """Refuse a field the scorer does not know, naming the closest known one."""
    unknown = sorted(str(k) for k in raw if str(k) not in FIELDS)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(FIELDS), n=1, cutoff=0.8)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise InstrumentError(
        f"{path}: unknown field(s) {', '.join(hints)}: such a field would be ignored, so "
        f"the questionnaire would be scored without it. Known fields: "
        f"{', '.join(sorted(FIELDS))}.")


def _parse(raw: Mapping[str, Any], path: Path) -> Instrument:
    _check_fields(raw, path)
    try:
        lo, hi = raw["range"]
        subscales = {
            str(k): tuple(int(i) for i in v) for k, v in (raw.get("subscales") or {}).items()
        }
        conversion = raw.get("conversion")
        inst = Instrument(
            key=str(raw["key"]),
            name=str(raw.get("name", raw["key"])),
            kind=raw["kind"],
            n_items=int(raw["n_items"]),
            item_prefix=_column_prefix(raw.get("item_prefix", raw["key"])),
            item_min=float(lo),
            item_max=float(hi),
            reversed=tuple(int(i) for i in raw.get("reversed") or ()),
            score=raw.get("score", "mean"),
            subscales=subscales,
            missing=dict(raw.get("missing") or {}),
            conversion=({int(k): float(v) for k, v in conversion.items()} if conversion else None),
            multiplier=float(raw.get("multiplier", 1.0)),
            direction=raw.get("direction", "higher_better"),
            construct=str(raw.get("construct") or ""),
            rater=raw.get("rater"),
            checked=str(raw.get("checked", "")),
            source=str(raw.get("source", "")),
            path=path.name,
        )
    except KeyError as exc:
        raise InstrumentError(
            f"{path}: malformed instrument key file: the required field {exc} is missing."
        ) from exc
    except (TypeError, ValueError) as exc:
        raise InstrumentError(
            f"{path}: malformed instrument key file: a field has the wrong type or form "
            f"({type(exc).__name__}: {exc}); e.g. range must be [min, max] and subscales a "
            "mapping of names to lists of item numbers."
        ) from exc
    if inst.kind not in ("alliance", "outcome"):
        raise InstrumentError(
            f"{path}: kind must be 'alliance' or 'outcome', got {inst.kind!r}.")
    items = set(range(1, inst.n_items + 1))
    bad = [i for i in inst.reversed if i not in items]
    for name, its in inst.subscales.items():
        bad += [i for i in its if i not in items]
        if not its:
            raise InstrumentError(f"{path}: subscale {name!r} has no items.")
    if bad:
        raise InstrumentError(
            f"{path}: item numbers outside 1..{inst.n_items}: {sorted(set(bad))}.")
    if inst.kind == "alliance" and not inst.subscales:
        raise InstrumentError(f"{path}: an alliance instrument needs subscales.")
    if inst.key != path.stem:
        raise InstrumentError(
            f"{path}: key is {inst.key!r}, but the file is named {path.name}; params.yaml "
            "names an instrument by its file, so the key must be the file's name without "
            ".yaml.")
    if inst.kind == "alliance":
        _check_alliance_subscales(inst, path)
    _check_rules(inst, path)
    return inst


#: The subscales every alliance instrument is scored into: the plan's models use them.
ALLIANCE_SUBSCALES = ("goal", "task", "bond")


def _column_prefix(prefix: Any) -> str:
    """``item_prefix`` as the input columns are matched (``validate._column_name``: lower
    case; spaces, hyphens and dots as ``_``): ``WAI-SR`` finds ``wai_sr_1``."""
    return re.sub(r"[\s.\-]+", "_", str(prefix).strip().lower()).strip("_")


def _check_alliance_subscales(inst: Instrument, path: Path) -> None:
    """Goal, task and bond, and each item in exactly one of them."""
    names = list(inst.subscales)
    if sorted(names) != sorted(ALLIANCE_SUBSCALES):
        raise InstrumentError(
            f"{path}: an alliance instrument's subscales must be exactly goal, task and bond "
            f"(the models of the analysis plan use these three, and the total is their mean); "
            f"found {', '.join(names)}.")
    counts = Counter(i for its in inst.subscales.values() for i in its)
    twice = sorted(i for i, n in counts.items() if n > 1)
    nowhere = sorted(set(range(1, inst.n_items + 1)) - set(counts))
    if twice or nowhere:
        what = "; ".join(part for part in (
            f"item(s) {', '.join(map(str, twice))} in more than one subscale" if twice else "",
            f"item(s) {', '.join(map(str, nowhere))} in no subscale" if nowhere else "")
            if part)
        raise InstrumentError(
            f"{path}: each of the {inst.n_items} items must belong to exactly one subscale: "
            f"{what}. Check the item numbers under subscales against the questionnaire's key.")


MISSING_KEYS = frozenset({"max_missing", "max_missing_per_subscale", "method"})
MISSING_METHODS = frozenset({"prorate", "mean_substitute"})


def _check_rules(inst: Instrument, path: Path) -> None:
    """Validate the scoring rules the scorer relies on (score, direction, missing, conversion)."""
    if inst.score not in ("mean", "sum"):
        raise InstrumentError(f"{path}: score must be 'mean' or 'sum', got {inst.score!r}.")
    if inst.direction not in ("higher_better", "higher_worse"):
        raise InstrumentError(
            f"{path}: direction must be 'higher_better' or 'higher_worse', got {inst.direction!r}"
        )
    if inst.item_min >= inst.item_max:
        raise InstrumentError(f"{path}: range must be [min, max] with min < max.")
    unknown = set(inst.missing) - MISSING_KEYS
    if unknown:
        raise InstrumentError(
            f"{path}: unknown missing-rule keys {sorted(unknown)} (known: {sorted(MISSING_KEYS)})"
        )
    method = inst.missing.get("method", "prorate")
    if method not in MISSING_METHODS:
        raise InstrumentError(
            f"{path}: missing.method must be one of {sorted(MISSING_METHODS)}, got {method!r}"
        )
    for rule in ("max_missing", "max_missing_per_subscale"):
        value = inst.missing.get(rule, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InstrumentError(f"{path}: missing.{rule} must be a non-negative integer.")
    fewest = min((len(its) for its in inst.subscales.values()), default=inst.n_items)
    for rule, size, what in (("max_missing", inst.n_items, "the questionnaire"),
                             ("max_missing_per_subscale", fewest, "its smallest subscale")):
        if inst.missing.get(rule, 0) >= size:
            raise InstrumentError(
                f"{path}: missing.{rule} is {inst.missing[rule]}, but {what} has {size} "
                f"items: a score with every item missing would be computed from nothing. "
                f"Give fewer than {size} (the shipped keys allow about a quarter).")
    if inst.conversion is not None:
        if inst.score != "sum":
            raise InstrumentError(f"{path}: a conversion table needs score: sum")
        if inst.missing.get("max_missing", 0) != 0:
            raise InstrumentError(
                f"{path}: a conversion table needs whole raw sums (missing.max_missing: 0)"
            )
        lo = round(inst.n_items * inst.item_min)
        hi = round(inst.n_items * inst.item_max)
        absent = sorted(set(range(lo, hi + 1)) - set(inst.conversion))
        if absent:
            raise InstrumentError(f"{path}: conversion table lacks raw totals {absent}")


def load_instrument(key: str, paths: Iterable[str | Path] = ()) -> Instrument:
    """Load the instrument ``key`` from the user's folders, then the shipped registry.

    Parameters
    ----------
    key
        Instrument key, e.g. ``"wai_sr"`` or ``"swemwbs"``.
    paths
        Extra folders searched first for ``<key>.yaml`` (``instruments.paths`` in params).

    Returns
    -------
    Instrument
    """
    for folder in [*map(Path, paths), BUILTIN_DIR]:
        candidate = folder / f"{key}.yaml"
        if candidate.is_file():
            raw = _read_yaml(candidate)
            if not isinstance(raw, Mapping):
                raise InstrumentError(
                    f"{candidate}: expected a YAML mapping of fields (key, kind, n_items, "
                    f"range, ...), found {type(raw).__name__}. {FIX_HINT}")
            try:
                return _parse(raw, candidate)
            except InstrumentError as exc:
                raise InstrumentError(f"{exc} {FIX_HINT}") from exc
    known = sorted({p.stem for folder in [*map(Path, paths), BUILTIN_DIR]
                    if folder.is_dir() for p in folder.glob("*.yaml")})
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InstrumentError(
        f"unknown instrument {key!r}: no {key}.yaml in {[str(p) for p in paths]} "
        f"or the shipped registry (known: {', '.join(known)}).{hint} Set "
        "instruments.alliance / instruments.outcome in params.yaml to a known key, or add "
        f"{key}.yaml to a folder listed under instruments.paths."
    )


def _read_yaml(path: Path) -> Any:
    """Read an instrument file as plain YAML data; any tag that builds objects is refused."""
    try:
        with path.open(encoding="utf-8") as fh:
            return yamlfile.safe_load(fh)
    except yaml.constructor.ConstructorError as exc:
        raise InstrumentError(
            f"{path}: uses a YAML tag that would build a Python object "
            f"({_first_line(exc.problem or str(exc))}). Instrument files are plain data and "
            f"are never executed: remove the tag. {FIX_HINT}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = _first_line(str(getattr(exc, "problem", "") or exc))
        raise InstrumentError(
            f"{path}: not valid YAML{where} ({problem})."
            f" Check indentation and that lists use [a, b] or '- ' items. {FIX_HINT}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InstrumentError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); save it as UTF-8 text. "
            f"{FIX_HINT}") from exc


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def available_instruments() -> list[str]:
    """Keys of the shipped instruments."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
