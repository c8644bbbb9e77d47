"""The input manifest: every file a run reads, hashed into one small file DVC can track.

DVC cannot declare an *optional* dependency: a templated dep such as ``${data.clients}``
that is empty crashes ``dvc repro`` (an AssertionError inside DVC), and list-valued deps are
not supported. So the first stage, ``inputs`` (``always_changed: true``, it only hashes),
writes ``data/interim/inputs.json``: for each input named in ``params.yaml`` (``data.*``,
the instrument files actually used, the anonymisation rules file) its path, size and MD5,
or ``null`` for an optional input that is not given. ``validate`` depends on this
manifest; its hash changes exactly when an input's content (or which file is named)
changes, so every real input stays a hashed dependency and an absent one is simply absent.
``validate`` re-hashes the files before reading them and stops if one changed since the
manifest was written (an edit during a run).

Also used for user instrument folders (``instruments.paths``): before, a change to a
user's own instrument file did not rerun anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_open
from pipeline.errors import SettingsError

#: The manifest the ``inputs`` stage writes and ``validate`` depends on.
MANIFEST = Path("data/interim/inputs.json")
#: The data roles, in order; ``outcome`` and ``clients`` are optional.
ROLES: tuple[str, ...] = ("alliance", "outcome", "clients")


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file's bytes (as DVC hashes files), read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _shown(path: Path) -> str:
    """The path relative to the project folder when inside it (no machine paths)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _entry(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    return {"path": _shown(p), "size": p.stat().st_size, "md5": md5_file(p)}


def build_manifest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Describe every input file the run will read (settings already checked).

    Returns
    -------
    dict
        ``{"data": {role: entry | None}, "instruments": {role: entry},
        "anonymity_rules": entry | None}``, entry = ``{"path", "size", "md5"}``.
    """
    from pipeline.instruments import BUILTIN_DIR

    data = params["data"]
    manifest: dict[str, Any] = {"data": {}, "instruments": {}}
    for role in ROLES:
        value = data.get(role)
        manifest["data"][role] = _entry(value) if value else None
    inst = params["instruments"]
    folders = [Path(p) for p in inst.get("paths") or []] + [BUILTIN_DIR]
    for role in ("alliance", "outcome"):
        key = inst[role]
        file = next((f / f"{key}.yaml" for f in folders if (f / f"{key}.yaml").is_file()), None)
        manifest["instruments"][role] = ({"key": key, **_entry(file)} if file is not None
                                         else None)
    rules = (params.get("validation") or {}).get("anonymity_rules")
    manifest["anonymity_rules"] = _entry(rules) if rules else None
    return manifest


def write_manifest(params: Mapping[str, Any], out: str | Path = MANIFEST) -> dict[str, Any]:
    """Write the manifest as sorted JSON (byte-stable) and return it."""
    manifest = build_manifest(params)
    with atomic_open(out) as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return manifest


def check_unchanged(params: Mapping[str, Any], manifest_file: str | Path = MANIFEST) -> None:
    """Stop if the inputs differ from the manifest ``validate`` was scheduled for.

    Skipped when no manifest exists (a step run by hand outside DVC).

    Raises
    ------
    SettingsError
        When ``params.yaml`` names other files than the manifest, or a file's content
        changed after the ``inputs`` stage hashed it.
    """
    file = Path(manifest_file)
    if not file.is_file():
        return
    recorded = json.loads(file.read_text(encoding="utf-8"))
    current = build_manifest(params)
    changed = [f"data.{role}" for role in ROLES
               if recorded["data"].get(role) != current["data"].get(role)]
    changed += [f"instruments.{role}" for role in ("alliance", "outcome")
                if recorded["instruments"].get(role) != current["instruments"].get(role)]
    if recorded.get("anonymity_rules") != current.get("anonymity_rules"):
        changed.append("validation.anonymity_rules")
    if changed:
        raise SettingsError(
            f"{file}: the input(s) named by {', '.join(changed)} changed after this run "
            "hashed them (a file was edited, or params.yaml changed, during the run). "
            "Nothing was written. Run `dvc repro` again once the files are final.")


__all__ = ["MANIFEST", "ROLES", "build_manifest", "check_unchanged", "md5_file",
           "write_manifest"]
