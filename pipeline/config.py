"""Finding the project and reading ``params.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline import yamlfile
from pipeline.errors import SettingsError

PARAMS_FILE = "params.yaml"


def find_project_root(start: str | Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` (default: cwd) holding ``params.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no {PARAMS_FILE} with a dvc.yaml at or above {here}")


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (default: the project's) into a plain dict.

    Raises
    ------
    SettingsError
        When the file is missing, is not valid YAML (or uses a tag that builds Python
        objects), or is not a mapping of settings. The values themselves are checked by
        :func:`pipeline.settings.check_settings`.
    """
    file = Path(path) if path else find_project_root() / PARAMS_FILE
    todo = "Compare it with the shipped params.yaml (git show HEAD:params.yaml)."
    try:
        with file.open(encoding="utf-8") as fh:
            params = yamlfile.safe_load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"{file}: the settings file was not found. Run from the project "
                            "folder, or pass --params with the path of params.yaml.") from exc
    except yaml.constructor.ConstructorError as exc:
        raise SettingsError(f"{file}: uses a YAML tag that would build a Python object "
                            f"({exc.problem}); settings are plain data: remove the tag. "
                            f"{todo}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SettingsError(f"{file}: not valid YAML{where} "
                            f"({getattr(exc, 'problem', None) or exc}). Check the indentation "
                            f"and quotes. {todo}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{file}: cannot be read ({type(exc).__name__}: {exc}). Save it "
                            "as UTF-8 text.") from exc
    if not isinstance(params, dict):
        raise SettingsError(f"{file}: expected a YAML mapping of settings (data:, model:, "
                            f"...). {todo}")
    return params
