"""pipeline.yamlfile reads what yaml.safe_load reads, and fails with its messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import yamlfile

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted([ROOT / "params.yaml", ROOT / "dvc.yaml",
                                         *(ROOT / "pipeline").glob("**/*.yaml")]))
def test_the_project_yaml_files_read_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yamlfile.safe_load(text) == yaml.safe_load(text)
    with path.open(encoding="utf-8") as fh:
        assert yamlfile.safe_load(fh) == yaml.safe_load(text)


@pytest.mark.parametrize("bad", ["a: [1, 2\nb: 3", "a: b: c", "x: 'open",
                                 "k: !!python/name:os.system"])
def test_errors_are_those_of_the_python_loader_naming_the_file(tmp_path: Path,
                                                                 bad: str) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(bad, encoding="utf-8")
    with file.open(encoding="utf-8") as fh, pytest.raises(yaml.YAMLError) as ours:
        yamlfile.safe_load(fh)
    with file.open(encoding="utf-8") as fh, pytest.raises(yaml.YAMLError) as theirs:
        yaml.safe_load(fh)
    assert str(ours.value) == str(theirs.value)
    assert "settings.yaml" in str(ours.value)


def test_dvc_reads_yaml_with_ruamels_c_loader() -> None:
    """pyproject installs ruamel.yaml.clib: DVC parses params.yaml and dvc.lock with
    ruamel's "safe" loader for every stage, about 1 s per stage in pure Python."""
    from dvc.utils.serialize._yaml import parse_yaml
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    assert CParser is not None and YAML(typ="safe").Parser is CParser
    assert parse_yaml("a: [1, 2.5, x]\n", "params.yaml") == {"a": [1, 2.5, "x"]}
