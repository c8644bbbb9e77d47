"""Finding the project and reading ``params.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


def find_project_root(start: str | Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` (default: cwd) holding ``params.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no {PARAMS_FILE} with a dvc.yaml at or above {here}")


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (default: the project's) into a plain dict."""
    file = Path(path) if path else find_project_root() / PARAMS_FILE
    with file.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    if not isinstance(params, dict):
        raise ValueError(f"{file}: expected a YAML mapping of settings")
    return params
