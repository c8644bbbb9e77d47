"""The input manifest: every named input hashed, optional inputs absent, edits detected."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_params
from pipeline.errors import SettingsError
from pipeline.inputs import build_manifest, check_unchanged, write_manifest


@pytest.fixture()
def params(tmp_path: Path, root: Path) -> dict[str, Any]:
    p = load_params(root / "params.yaml")
    for key in ("alliance", "outcome", "clients"):
        target = tmp_path / Path(p["data"][key]).name
        target.write_bytes((root / p["data"][key]).read_bytes())
        p["data"][key] = str(target)
    return p


def test_manifest_hashes_every_named_input(params: dict[str, Any]) -> None:
    manifest = build_manifest(params)
    alliance = Path(params["data"]["alliance"])
    assert manifest["data"]["alliance"]["md5"] == hashlib.md5(alliance.read_bytes()).hexdigest()
    assert manifest["data"]["alliance"]["size"] == alliance.stat().st_size
    assert manifest["instruments"]["alliance"]["path"] == "pipeline/instruments/wai_sr.yaml"
    assert manifest["anonymity_rules"] is None


def test_optional_inputs_are_recorded_as_absent(params: dict[str, Any]) -> None:
    params["data"]["clients"] = ""
    params["data"]["outcome"] = None
    manifest = build_manifest(params)
    assert manifest["data"]["clients"] is None and manifest["data"]["outcome"] is None


def test_manifest_is_byte_stable_and_changes_with_content(
        params: dict[str, Any], tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_manifest(params, a)
    write_manifest(params, b)
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["data"]["outcome"]["md5"]
    Path(params["data"]["clients"]).write_text("client_id\nC1\n")
    write_manifest(params, b)
    assert a.read_bytes() != b.read_bytes()


def test_an_input_edited_during_the_run_stops_validate(
        params: dict[str, Any], tmp_path: Path) -> None:
    manifest = tmp_path / "inputs.json"
    write_manifest(params, manifest)
    check_unchanged(params, manifest)  # unchanged: passes
    with Path(params["data"]["outcome"]).open("a") as fh:
        fh.write("C9999,1,3,3,3,3,3,3,3\n")
    with pytest.raises(SettingsError, match=r"data\.outcome changed after this run hashed"):
        check_unchanged(params, manifest)
    other = copy.deepcopy(params)
    other["instruments"]["alliance"] = "wai_s"
    with pytest.raises(SettingsError, match=r"instruments\.alliance"):
        check_unchanged(other, manifest)
    check_unchanged(params, tmp_path / "absent.json")  # no manifest: a step run by hand
