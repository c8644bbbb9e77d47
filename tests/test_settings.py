"""Settings are checked against pipeline/params_schema.yaml before any data are read.

Every documented error path: each gives a SettingsError (a PipelineError) naming the
setting and the rule, and through the CLI exit status 2, no traceback, nothing written.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_params
from pipeline.errors import PipelineError, SettingsError
from pipeline.instruments import InstrumentError, load_instrument
from pipeline.read import InputError
from pipeline.settings import SCHEMA_FILE, check_settings, load_schema


@pytest.fixture()
def good(root: Path) -> dict[str, Any]:
    params = load_params(root / "params.yaml")
    for key in ("alliance", "outcome", "clients"):
        params["data"][key] = str(root / params["data"][key])
    return params


def _problems(params: Any, check_files: bool = True) -> str:
    with pytest.raises(SettingsError) as info:
        check_settings(params, check_files=check_files)
    return str(info.value)


def test_shipped_params_pass(good: dict[str, Any]) -> None:
    check_settings(good)


def test_error_classes_share_one_hierarchy() -> None:
    assert issubclass(InputError, PipelineError)
    assert issubclass(InstrumentError, PipelineError)
    assert issubclass(SettingsError, PipelineError)


def test_schema_declares_every_shipped_setting(root: Path) -> None:
    """Each leaf of params.yaml has a rule line (so the schema cannot fall behind)."""
    schema = load_schema(SCHEMA_FILE)

    def leaves(node: dict[str, Any], spec: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            assert key in spec, f"{prefix}{key} is not declared in params_schema.yaml"
            if isinstance(value, dict) and "type" not in spec[key]:
                leaves(value, spec[key], f"{prefix}{key}.")

    leaves(load_params(root / "params.yaml"), schema, "")


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda p: p["model"].__setitem__("conf_level", 95),
         ["model.conf_level", "rule range", "less than 1", "0.95"]),
        (lambda p: p["model"].__setitem__("statsmodels_optimizers", ["powel", "bfgs"]),
         ["model.statsmodels_optimizers[1]", "rule choices", "did you mean 'powell'"]),
        (lambda p: p["model"].__setitem__("statsmodels_optimizers", []),
         ["model.statsmodels_optimizers", "rule length"]),
        (lambda p: p["model"].__setitem__("conf_levl", 0.9),
         ["model.conf_levl", "unknown_setting", "did you mean 'model.conf_level'",
          "params_schema.yaml"]),
        (lambda p: p.__setitem__("modle", {}), ["'modle'", "unknown_setting", "'model'"]),
        (lambda p: p["report"].__setitem__("min_cell", "5"),
         ["report.min_cell", "rule type", "whole number", "the text '5'"]),
        (lambda p: p["report"].__setitem__("min_cell", 2.5), ["report.min_cell", "rule type"]),
        (lambda p: p["data"].__setitem__("simulated", "yes"), ["data.simulated", "rule type"]),
        (lambda p: p["report"].__setitem__("plausible_r", [0.0]),
         ["report.plausible_r", "exactly 2"]),
        (lambda p: p["data"].pop("alliance"), ["data.alliance", "rule required"]),
        (lambda p: p["data"].__setitem__("alliance", ""), ["data.alliance", "not_empty"]),
        (lambda p: p.__setitem__("model", [1, 2]), ["'model'", "rule section"]),
        (lambda p: p["data"].__setitem__("outcome", "no/such/file.csv"),
         ["data.outcome", "file_exists", "no/such/file.csv", 'set it to ""']),
        (lambda p: p["instruments"].__setitem__("alliance", "wai_srr"),
         ["instruments.alliance", "unknown instrument 'wai_srr'", "Did you mean 'wai_sr'"]),
        (lambda p: p["instruments"].__setitem__("paths", ["no_such_folder"]),
         ["instruments.paths[1]", "dir_exists"]),
        (lambda p: p["power"].__setitem__("model", "primry"),
         ["power.model", "rule model", "'primry' is not a model of pipeline/models.yaml (did "
          "you mean 'primary'?)", "sens_correlated", "a model name of pipeline/models.yaml"]),
        (lambda p: p["bootstrap"].__setitem__("model", 3), ["bootstrap.model", "rule type"]),
        (lambda p: p["model"].__setitem__("diagnostics_for", ["primry"]),
         ["model.diagnostics_for[1]", "rule model", "did you mean 'primary'"]),
        (lambda p: p["report"].__setitem__("sensitivity_models", ["primary", "sens_mll"]),
         ["report.sensitivity_models[2]", "rule model", "did you mean 'sens_ml'"]),
    ],
)
def test_each_rule_names_setting_rule_and_what_to_do(
        good: dict[str, Any], change: Any, needles: list[str]) -> None:
    params = copy.deepcopy(good)
    change(params)
    message = _problems(params)
    for needle in needles:
        assert needle in message, (needle, message)
    assert "before any data were read" in message


def test_all_problems_are_reported_at_once(good: dict[str, Any]) -> None:
    params = copy.deepcopy(good)
    params["model"]["conf_level"] = 95
    params["report"]["min_cell"] = 0
    params["validation"]["k_anonymity"] = "five"
    message = _problems(params)
    assert message.startswith("params.yaml: 3 settings cannot be used")


def test_optional_inputs_may_be_empty(good: dict[str, Any]) -> None:
    params = copy.deepcopy(good)
    params["data"]["outcome"] = ""
    params["data"]["clients"] = None
    check_settings(params)


def test_missing_files_checked_only_by_steps_that_read_data(good: dict[str, Any]) -> None:
    params = copy.deepcopy(good)
    params["data"]["alliance"] = "gone.csv"
    check_settings(params, check_files=False)  # publish/render rebuild reports without data
    assert "data.alliance" in _problems(params, check_files=True)


def test_schema_rejects_an_unknown_rule(tmp_path: Path) -> None:
    bad = tmp_path / "schema.yaml"
    bad.write_text("model:\n  conf_level: {type: float, between: [0, 1]}\n")
    with pytest.raises(SettingsError, match="unknown type or rule"):
        load_schema(bad)


# ------------------------------------------------------------------ params.yaml itself


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("data: !!python/object/apply:os.system ['echo hacked']\n", "YAML tag"),
        ("data: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "expected a YAML mapping"),
    ],
)
def test_unreadable_params_file(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "params.yaml"
    file.write_text(text)
    with pytest.raises(SettingsError, match=needle):
        load_params(file)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_params(tmp_path / "params.yaml")


# ------------------------------------------------------------------ instrument files

VALID = "key: myform\nkind: outcome\nn_items: 3\nrange: [0, 3]\nscore: sum\n"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("key: myform\nkind: outcome\nn_items: 3\nscore: sum\n",
         ["required field 'range' is missing", "wai_sr.yaml"]),
        (VALID.replace("n_items: 3", "n_items: three"), ["wrong type or form"]),
        (VALID + "extra: !!python/name:os.system\n", ["YAML tag", "never executed"]),
        (VALID + "subscales: {goal: [1, 2\n", ["not valid YAML at line"]),
        ("[1, 2, 3]\n", ["expected a YAML mapping"]),
    ],
)
def test_malformed_instrument_file_gives_a_clean_message(
        tmp_path: Path, text: str, needles: list[str]) -> None:
    (tmp_path / "myform.yaml").write_text(text)
    with pytest.raises(InstrumentError) as info:
        load_instrument("myform", [tmp_path])
    message = str(info.value)
    assert str(tmp_path / "myform.yaml") in message
    for needle in needles:
        assert needle in message, (needle, message)


# ------------------------------------------------------------------ through the CLI


def _write(tmp_path: Path, params: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("step", ["inputs", "validate", "score", "fit", "publish"])
def test_cli_exits_2_without_traceback_and_writes_nothing(
        tmp_path: Path, good: dict[str, Any], step: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    params = copy.deepcopy(good)
    params["model"]["statsmodels_optimizers"] = ["powell", "newtonian"]
    out = tmp_path / "out"
    args = [step, "--params", str(_write(tmp_path, params))]
    args += {"inputs": ["--out", str(out / "inputs.json")],
             "validate": ["--out", str(out)],
             "score": ["--out", str(out / "scored.csv"), "--results", str(out)],
             "fit": ["--out", str(out)],
             "publish": ["--results", str(out), "--tables", str(out)],
             }[step]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.statsmodels_optimizers[2]" in err and "rule choices" in err
    assert "Traceback" not in err
    assert f"[{step}] stopped: nothing was written" in err
    assert not out.exists()


def test_cli_reports_a_malformed_instrument_cleanly(
        tmp_path: Path, good: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "instruments"
    folder.mkdir()
    (folder / "myform.yaml").write_text(VALID + "evil: !!python/object/apply:os.getcwd []\n")
    params = copy.deepcopy(good)
    params["instruments"].update(outcome="myform", paths=[str(folder)])
    out = tmp_path / "validated"
    assert main(["validate", "--params", str(_write(tmp_path, params)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "instruments.outcome" in err and "myform.yaml" in err and "YAML tag" in err
    assert "Traceback" not in err
    assert not out.exists()
