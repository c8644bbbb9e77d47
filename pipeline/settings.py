"""Checking ``params.yaml`` against its declared schema before anything is read or written.

The rules are data, in ``pipeline/params_schema.yaml`` (one line per setting; the file's
header documents the rule vocabulary). :func:`check_settings` walks ``params.yaml`` and the
schema side by side and collects **every** broken rule, then raises one
:class:`pipeline.errors.SettingsError` whose message names each setting, the rule and what
to do. The CLI calls it at the start of every step, so a wrong setting stops the run before
any data file is opened or any output is touched.

Why a small validator of our own rather than JSON Schema, pydantic or pandera: the schema
must be a one-line-per-setting YAML file that a researcher can read next to
``params.yaml``; the messages must speak the project's language (setting, rule, what to
do, did-you-mean); three rules are domain checks no generic library knows (an instrument key
is loaded from the registry; a model name must be one of ``pipeline/models.yaml``; an input
path must exist only for steps that read data); and
none of those libraries is a declared dependency of the project (jsonschema and pydantic
are only present as dependencies of Jupyter and DVC). The whole validator is about 150
lines. The R analogue would be a ``checkmate``-based assertion of a ``config::get()`` list.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import yamlfile
from pipeline.errors import PipelineError, SettingsError

#: Where the rules for params.yaml are declared.
SCHEMA_FILE = Path(__file__).with_name("params_schema.yaml")
#: The model plan, whose model names the ``model`` rule accepts.
MODELS_FILE = Path(__file__).with_name("models.yaml")

#: Leaf types the schema may use.
TYPES = frozenset({"str", "int", "float", "bool", "path", "instrument", "model", "list",
                   "mapping", "any"})
#: Rule keys a leaf may carry.
RULES = frozenset({"type", "required", "empty", "choices", "gt", "ge", "lt", "le", "of", "len",
                   "min_len", "exists", "help"})


@dataclass(frozen=True)
class SettingProblem:
    """One broken rule: the setting's dotted name, the rule, what is wrong, what to do."""

    setting: str
    rule: str
    message: str
    todo: str = ""

    def __str__(self) -> str:
        todo = f" What to do: {self.todo}." if self.todo else ""
        return f"setting '{self.setting}' [rule {self.rule}]: {self.message}.{todo}"


def load_schema(path: str | Path = SCHEMA_FILE) -> dict[str, Any]:
    """Read the settings schema and check that it uses only known types and rules.

    Raises
    ------
    SettingsError
        When the schema itself is malformed (a developer error, named with its line).
    """
    with Path(path).open(encoding="utf-8") as fh:
        schema = yamlfile.safe_load(fh)
    if not isinstance(schema, Mapping):
        raise SettingsError(f"{path}: the settings schema must be a YAML mapping.")
    _check_schema(schema, "", Path(path))
    return dict(schema)


def _is_leaf(node: Any) -> bool:
    return isinstance(node, Mapping) and isinstance(node.get("type"), str)


def _check_schema(node: Mapping[str, Any], prefix: str, path: Path) -> None:
    for key, spec in node.items():
        name = f"{prefix}{key}"
        if _is_leaf(spec):
            bad = set(spec) - RULES
            if spec["type"] not in TYPES or bad or (
                    "of" in spec and spec["of"] not in TYPES):
                raise SettingsError(
                    f"{path}: the rule line for '{name}' uses an unknown type or rule "
                    f"({spec}); types: {sorted(TYPES)}; rules: {sorted(RULES)}.")
        elif isinstance(spec, Mapping):
            _check_schema(spec, f"{name}.", path)
        else:
            raise SettingsError(
                f"{path}: '{name}' must be a rule line {{type: ..., ...}} or a section.")


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {
    "str": "a text", "int": "a whole number", "float": "a number", "bool": "true or false",
    "path": "a path (text)", "instrument": "an instrument key (text)",
    "model": "a model name (text)", "list": "a list",
    "mapping": "a mapping",
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("str", "path", "instrument", "model"):
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list)
    if kind == "mapping":
        return isinstance(value, Mapping)
    return False


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Checker:
    def __init__(self, params: Mapping[str, Any], check_files: bool) -> None:
        self.params = params
        self.check_files = check_files
        self.problems: list[SettingProblem] = []

    def add(self, setting: str, rule: str, message: str, spec: Mapping[str, Any]) -> None:
        self.problems.append(SettingProblem(setting, rule, message, str(spec.get("help", ""))))

    def section(self, values: Any, schema: Mapping[str, Any], prefix: str) -> None:
        where = prefix.rstrip(".") or "params.yaml"
        if not isinstance(values, Mapping):
            self.problems.append(SettingProblem(
                where, "section", f"must be a mapping of settings, got {_type_name(values)}",
                f"indent the settings of '{where}' under it, as in the shipped params.yaml"))
            return
        for key in values:
            if key not in schema:
                known = [str(k) for k in schema]
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
                self.problems.append(SettingProblem(
                    f"{prefix}{key}", "unknown_setting",
                    f"not a setting of this pipeline{hint}",
                    f"remove or correct it; the settings of '{where}' are "
                    f"{', '.join(known)} (declared in pipeline/params_schema.yaml)"))
        for key, spec in schema.items():
            name = f"{prefix}{key}"
            if key not in values:
                if _is_leaf(spec) and spec.get("required"):
                    self.add(name, "required", "is missing", spec)
                elif not _is_leaf(spec) and isinstance(spec, Mapping) and any(
                        _is_leaf(s) and s.get("required") for s in spec.values()):
                    self.problems.append(SettingProblem(
                        name, "required", "the section is missing",
                        "copy it from the shipped params.yaml"))
                continue
            if _is_leaf(spec):
                self.leaf(values[key], spec, name)
            else:
                self.section(values[key], spec, f"{name}.")

    def leaf(self, value: Any, spec: Mapping[str, Any], name: str) -> None:
        kind = spec["type"]
        if _is_empty(value) and kind != "str":
            if spec.get("empty") or (value is None and not spec.get("required")):
                return
            self.add(name, "not_empty", f"must be given, got {_type_name(value)}", spec)
            return
        if not _type_ok(kind, value):
            self.add(name, "type", f"must be {_EXPECTED.get(kind, kind)}, got "
                                   f"{_type_name(value)}", spec)
            return
        if kind == "list":
            self.list_rules(value, spec, name)
            return
        self.value_rules(value, spec, name, kind)

    def list_rules(self, value: list[Any], spec: Mapping[str, Any], name: str) -> None:
        if "len" in spec and len(value) != int(spec["len"]):
            self.add(name, "length", f"must have exactly {spec['len']} elements, got "
                                     f"{len(value)}", spec)
        if "min_len" in spec and len(value) < int(spec["min_len"]):
            self.add(name, "length", f"must have at least {spec['min_len']} element(s), got "
                                     f"{len(value)}", spec)
        of = spec.get("of", "any")
        for i, item in enumerate(value):
            if not _type_ok(of, item):
                self.add(name, "type", f"element {i + 1} must be {_EXPECTED.get(of, of)}, "
                                       f"got {_type_name(item)}", spec)
                continue
            self.value_rules(item, spec, f"{name}[{i + 1}]", of)

    def value_rules(self, value: Any, spec: Mapping[str, Any], name: str, kind: str) -> None:
        choices = spec.get("choices")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.add(name, "choices", f"{_type_name(value)} is not one of "
                                      f"{', '.join(map(str, choices))}{hint}", spec)
        if kind in ("int", "float"):
            for rule, ok, text in (("gt", lambda a, b: a > b, "greater than"),
                                   ("ge", lambda a, b: a >= b, "at least"),
                                   ("lt", lambda a, b: a < b, "less than"),
                                   ("le", lambda a, b: a <= b, "at most")):
                if rule in spec and not ok(value, spec[rule]):
                    self.add(name, "range", f"must be {text} {spec[rule]}, got {value!r}", spec)
        if kind == "path" and self.check_files and "exists" in spec:
            self.path_rule(value, spec, name)
        if kind == "instrument":
            self.instrument_rule(value, spec, name)
        if kind == "model":
            self.model_rule(value, spec, name)

    def path_rule(self, value: str, spec: Mapping[str, Any], name: str) -> None:
        path = Path(value)
        want = spec["exists"]
        ok = path.is_file() if want == "file" else path.is_dir()
        if not ok:
            found = ("a folder" if path.is_dir() else "a file" if path.exists() else
                     "not found")
            self.add(name, f"{want}_exists", f"names '{value}', which is {found} (a "
                     f"{'file' if want == 'file' else 'folder'} is needed; relative paths start "
                     "at the project folder)", spec)

    def instrument_rule(self, value: str, spec: Mapping[str, Any], name: str) -> None:
        from pipeline.instruments import load_instrument

        inst_cfg = self.params.get("instruments")
        paths = inst_cfg.get("paths") if isinstance(inst_cfg, Mapping) else None
        folders = [p for p in (paths or []) if isinstance(p, str)]
        try:
            load_instrument(value, folders)
        except PipelineError as exc:
            # The registry's message already says what to do.
            self.problems.append(SettingProblem(name, "instrument", str(exc).rstrip(".")))


    def model_rule(self, value: str, spec: Mapping[str, Any], name: str) -> None:
        known = model_names()
        if known and value not in known:  # [] : models.yaml broken, the fit step says so
            close = difflib.get_close_matches(value, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.add(name, "model", f"{value!r} is not a model of pipeline/models.yaml{hint}; "
                     f"the models are {', '.join(known)}", spec)


def over_defaults(given: Mapping[str, Any], defaults: Mapping[str, Any],
                  where: str) -> dict[str, Any]:
    """A settings block merged over its defaults (functions that take a block directly,
    e.g. ``models.fitting.settings_from``, re-check what :func:`check_settings` checks for
    params.yaml).

    Raises
    ------
    SettingsError
        A key the defaults do not have, naming ``where`` (e.g. ``model.checks``) and the
        keys allowed.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise SettingsError(f"params.yaml {where}: unknown key(s) {unknown}; allowed: "
                            f"{sorted(defaults)}")
    return {**defaults, **given}


@functools.lru_cache(maxsize=1)
def model_names() -> list[str]:
    """The model names of ``pipeline/models.yaml`` (its ``models:`` keys; libyaml, no
    parsing of the specifications: a broken models.yaml is reported by the fit step)."""
    try:
        raw = yamlfile.safe_load(MODELS_FILE.read_text(encoding="utf-8"))
    except Exception:  # reported by the steps that parse the file
        return []
    models = raw.get("models") if isinstance(raw, Mapping) else None
    return [str(k) for k in models] if isinstance(models, Mapping) else []


def check_settings(params: Any, *, check_files: bool = True,
                   schema: Mapping[str, Any] | None = None) -> None:
    """Check every setting against ``pipeline/params_schema.yaml``.

    Parameters
    ----------
    params
        The parsed ``params.yaml``.
    check_files
        Also check that the files and folders named by ``path`` settings with an
        ``exists`` rule exist (steps that read input data); steps that only read
        ``results/`` (publish, render) skip this, so reports can be rebuilt without the
        raw data.
    schema
        The schema (default: :data:`SCHEMA_FILE`).

    Raises
    ------
    SettingsError
        Listing every broken rule: the setting (dotted name), the rule and what to do.
    """
    checker = _Checker(params if isinstance(params, Mapping) else {}, check_files)
    checker.section(params, schema if schema is not None else load_schema(), "")
    if checker.problems:
        n = len(checker.problems)
        lines = [f"params.yaml: {n} setting{'s' if n != 1 else ''} cannot be used (checked "
                 "before any data were read; nothing was written):"]
        lines += [f"  {i}. {p}" for i, p in enumerate(checker.problems, start=1)]
        raise SettingsError("\n".join(lines))


__all__ = ["SCHEMA_FILE", "SettingProblem", "check_settings", "load_schema"]
