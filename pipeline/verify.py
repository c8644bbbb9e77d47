"""``make verify``: rerun the committed pipeline in a scratch copy and compare every output.

A reviewer's one command. The committed state of the repository (``HEAD``) is checked out
into a temporary folder (the working copy is never written to), the project's environment
is lent to it through a ``.venv`` symlink, ``dvc repro -f`` runs every stage there from
scratch, and then every output that ``dvc.lock`` records is compared, file by file:

* with what was committed: the file in git at ``HEAD`` (outputs kept in git), or the hash
  in ``HEAD``'s ``dvc.lock`` (outputs kept in DVC's cache only, such as the HTML reports);
* with the working copy, when the file is there.

For each output the stage that makes it is printed with the code, inputs and settings it
came from (paths and hashes from ``dvc.lock``; settings with their values). The exit status
is 0 only when every output matches, 1 when any differs or is missing (each is named), 2
when the rerun itself fails. DVC has no such command (its ``dvc verify`` proposal, DVC issue
5369, is open); ``dvc status`` compares only the working copy with ``dvc.lock``, not a rerun.

Usage: ``python -m pipeline.verify [--keep] [--repo PATH]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import yamlfile
from pipeline.errors import PipelineError

#: Dependencies under these folders (or with these suffixes) are code; the rest are inputs.
CODE_PREFIXES = ("pipeline/", "notebooks/", "docs/")
CODE_SUFFIXES = (".py",)
#: Files hashed for the code stamp (see :func:`code_stamp`).
STAMP_GLOBS = ("pipeline/**/*.py", "pipeline/**/*.yaml", "pipeline/templates/**/*.j2",
               "pipeline/templates/**/*.json", "notebooks/*.py")
#: Environment of the rerun: same numbers on every machine (as the Makefile sets).
RERUN_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "PYTHONHASHSEED": "0", "DVC_NO_ANALYTICS": "1"}


class VerifyError(PipelineError):
    """The repository cannot be verified (no commit, no dvc.lock, a rerun that fails)."""


@dataclass
class Provenance:
    """Where an output came from, as ``dvc.lock`` records it."""

    stage: str
    code: list[tuple[str, str]] = field(default_factory=list)
    inputs: list[tuple[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """One output file compared after the rerun."""

    path: str
    stage: str
    status: str  # "same", "DIFFERS" or "MISSING"
    detail: str = ""


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (what ``dvc.lock`` records for a file)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_code(path: str) -> bool:
    folder = path.rstrip("/") + "/"
    return folder.startswith(CODE_PREFIXES) or path.endswith(CODE_SUFFIXES)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, sub in value.items():
            flat.update(_flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return flat
    return {prefix: value}


#: The staging area the stages write into (pipeline/promote.py: STAGING), as a path prefix.
STAGING_PREFIX = "build/"


def provenance(lock: Mapping[str, Any]) -> dict[str, Provenance]:
    """Map every output path of a parsed ``dvc.lock`` to the stage and deps that made it."""
    made: dict[str, Provenance] = {}
    for stage, entry in (lock.get("stages") or {}).items():
        prov = Provenance(stage=stage)
        for dep in entry.get("deps") or []:
            pair = (dep["path"], str(dep.get("md5", "")))
            (prov.code if _is_code(dep["path"]) else prov.inputs).append(pair)
        for file_params in (entry.get("params") or {}).values():
            prov.settings.update(_flatten("", file_params))
        for out in entry.get("outs") or []:
            made[out["path"]] = prov
    # Stages write into the staging area build/ and `promote` publishes it (see
    # pipeline/promote.py): a published file comes from the stage that made its staged copy.
    for path, prov in list(made.items()):
        if path.startswith(STAGING_PREFIX):
            made.setdefault(path[len(STAGING_PREFIX):], prov)
    return made


def _owner(prov: Mapping[str, Provenance], path: str, default: str) -> str:
    """The stage that made ``path`` (or a folder holding it), else ``default``."""
    parts = path.split("/")
    for cut in range(len(parts), 0, -1):
        hit = prov.get("/".join(parts[:cut]))
        if hit is not None:
            return hit.stage
    return default


def current_stages(lock: Mapping[str, Any], dvc_yaml: Mapping[str, Any]) -> dict[str, Any]:
    """``lock`` without the entries of stages that ``dvc.yaml`` no longer has.

    DVC keeps a removed or renamed stage's entry in ``dvc.lock`` when ``dvc.yaml`` is
    edited by hand; its outputs are no one's any more and are not verified.
    """
    names = set(dvc_yaml.get("stages") or {})
    stages = {k: v for k, v in (lock.get("stages") or {}).items()
              if k.split("@", 1)[0] in names}
    return {**lock, "stages": stages}


def lock_hashes(lock: Mapping[str, Any]) -> dict[str, str]:
    """Output path -> md5 (``<hash>.dir`` for a folder) from a parsed ``dvc.lock``."""
    return {out["path"]: str(out.get("md5", ""))
            for entry in (lock.get("stages") or {}).values()
            for out in entry.get("outs") or []}


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def compare(head_lock: Mapping[str, Any], rerun_lock: Mapping[str, Any], rerun: Path,
            workdir: Path, committed: Callable[[str], bytes | None],
            tracked: Iterable[str]) -> list[Check]:
    """Compare every output of ``head_lock`` as rerun in ``rerun`` with the committed state.

    Parameters
    ----------
    head_lock
        ``dvc.lock`` of the commit that was rerun, parsed.
    rerun_lock
        ``dvc.lock`` as the rerun rewrote it (compares folders kept in DVC's cache only).
    rerun
        The scratch copy after ``dvc repro -f``.
    workdir
        The user's working copy (only read).
    committed
        Returns a file's bytes at the commit, or ``None`` when git does not track it.
    tracked
        Paths git tracks at the commit (to list the committed files of a folder output).

    Returns
    -------
    list of Check
        One per output file, in ``dvc.lock`` order; a folder output is expanded to its files.
    """
    tracked = sorted(tracked)
    prov = provenance(head_lock)
    new_hashes = lock_hashes(rerun_lock)
    checks: list[Check] = []
    for out, md5 in lock_hashes(head_lock).items():
        stage = prov[out].stage
        target = rerun / out
        if md5.endswith(".dir") or target.is_dir():
            committed_files = [t for t in tracked if t.startswith(out.rstrip("/") + "/")]
            if not committed_files:
                # A folder in DVC's cache only (row-level intermediates): its hash says it all.
                same = target.is_dir() and new_hashes.get(out) == md5
                checks.append(Check(out, stage, "same" if same else "DIFFERS",
                                    "folder in DVC's cache: dvc.lock hash " +
                                    ("matches" if same else "differs after the rerun")))
                continue
            rerun_files = ([str(p.relative_to(rerun)) for p in _files_under(target)]
                           if target.is_dir() else [])
            names = sorted(set(committed_files) | set(rerun_files))
            if not names:
                checks.append(Check(out, stage, "MISSING", "no files after the rerun"))
            head_hashes = lock_hashes(head_lock)
            for name in names:
                owner = _owner(prov, name, stage)
                # A published file kept out of git (the HTML reports) is checked against
                # the dvc.lock hash of its staged copy, which the stage that made it records.
                staged = head_hashes.get(STAGING_PREFIX + name)
                checks.append(_check_file(name, owner, rerun, workdir, committed(name),
                                          staged))
        else:
            checks.append(_check_file(out, stage, rerun, workdir, committed(out), md5))
    return checks


def _check_file(path: str, stage: str, rerun: Path, workdir: Path,
                committed_bytes: bytes | None, lock_md5: str | None) -> Check:
    produced = rerun / path
    if not produced.is_file():
        return Check(path, stage, "MISSING", "not produced by the rerun")
    new = file_md5(produced)
    if committed_bytes is not None:
        old = hashlib.md5(committed_bytes, usedforsecurity=False).hexdigest()
        where = "the committed file"
    elif lock_md5:
        old, where = lock_md5, "the hash in dvc.lock"
    else:
        return Check(path, stage, "DIFFERS", "produced by the rerun but not committed")
    if new != old:
        return Check(path, stage, "DIFFERS", f"rerun differs from {where}")
    if lock_md5 and committed_bytes is not None and lock_md5 != new:
        return Check(path, stage, "DIFFERS", "the committed file differs from dvc.lock")
    mine = workdir / path
    if mine.is_file():
        if file_md5(mine) != new:
            return Check(path, stage, "DIFFERS", "your working copy differs from the rerun")
        return Check(path, stage, "same", "")
    if committed_bytes is not None:
        return Check(path, stage, "MISSING", "committed but absent from your working copy")
    return Check(path, stage, "same", "(not in your working copy: kept in DVC's cache)")


def code_stamp(root: Path) -> str:
    """Date-free version stamp of the code: 12 hex digits of a SHA-256.

    Hashes the path and content of every file matching :data:`STAMP_GLOBS` (the package,
    its YAML rules and the notebook sources), in sorted order. Unlike a commit
    hash it changes only when the code changes, so an output can carry it (see
    ``docs/reproducibility.md``).
    """
    files = sorted({p for pattern in STAMP_GLOBS for p in root.glob(pattern)
                    if p.is_file() and "__pycache__" not in p.parts})
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def checkout_head(root: Path, dest: Path) -> str:
    """Clone ``root`` into ``dest`` and check out its ``HEAD`` commit; return the commit."""
    head = _git(["rev-parse", "--verify", "HEAD"], root)
    if head.returncode != 0:
        raise VerifyError(f"{root}: no commit to verify; commit the project first")
    commit = head.stdout.decode().strip()
    for args in (["clone", "--quiet", "--no-checkout", str(root), str(dest)],
                 ["-C", str(dest), "checkout", "--quiet", "--detach", commit]):
        done = _git(args, root)
        if done.returncode != 0:
            raise VerifyError(f"git {args[0]} failed: {done.stderr.decode().strip()}")
    venv = root / ".venv"
    if venv.exists():
        # dvc.yaml runs .venv/bin/python: lend the scratch copy this environment.
        (dest / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
    return commit


def dvc_command() -> list[str]:
    """The ``dvc`` of the running environment (the project's), else the one on PATH."""
    local = Path(sys.executable).parent / "dvc"
    return [str(local)] if local.is_file() else ["dvc"]


def rerun_pipeline(scratch: Path, log: Path) -> int:
    """Run ``dvc repro -f`` in ``scratch``; write its output to ``log``; return its status.

    The output goes through the ``make repro`` filter (:mod:`pipeline.progress`), so the
    log has one line per stage with its time.
    """
    from pipeline.progress import filter_stream, load_rules

    env = {**os.environ, **RERUN_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with log.open("w") as fh, subprocess.Popen(
            [*dvc_command(), "repro", "-f"], cwd=scratch, env=env, text=True, bufsize=1,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        filter_stream(proc.stdout, load_rules(), fh)
    return proc.returncode


def stage_times(log: Path) -> dict[str, float]:
    """Seconds per stage from a rerun's log (lines ``stage <name>: done in <s> s``)."""
    found = re.findall(r"^stage (\S+): done in ([0-9.]+) s$",
                       log.read_text(errors="replace") if log.is_file() else "", flags=re.M)
    return {name: float(seconds) for name, seconds in found}


def _short(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{p} ({h[:8]})" if h else p for p, h in pairs) or "-"


def _settings(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "-"


def report(checks: list[Check], head_lock: Mapping[str, Any], commit: str, stamp: str) -> str:
    """The text ``make verify`` prints: per stage its provenance, then each output's status."""
    prov = provenance(head_lock)
    by_stage: dict[str, list[Check]] = {}
    for check in checks:
        by_stage.setdefault(check.stage, []).append(check)
    lines = [f"Verified commit {commit[:12]} (code stamp {stamp}): dvc repro -f in a scratch "
             "copy, every output compared with the commit and your working copy.", ""]
    stage_prov = {p.stage: p for p in prov.values()}
    for stage, rows in by_stage.items():
        p = stage_prov[stage]
        lines += [f"stage {stage}",
                  f"  code:     {_short(p.code)}",
                  f"  inputs:   {_short(p.inputs)}",
                  f"  settings: {_settings(p.settings)}"]
        for c in rows:
            lines.append(f"  {c.status:<8} {c.path}" + (f"  ({c.detail})" if c.detail else ""))
        lines.append("")
    bad = [c for c in checks if c.status != "same"]
    if bad:
        lines.append(f"FAILED: {len(bad)} of {len(checks)} outputs did not reproduce:")
        lines += [f"  {c.status} {c.path}: {c.detail}" for c in bad]
    else:
        lines.append(f"OK: all {len(checks)} outputs reproduced byte for byte.")
    return "\n".join(lines)


def verify(root: Path, keep: bool = False,
           runner: Callable[[Path, Path], int] = rerun_pipeline,
           out: Any = sys.stdout) -> int:
    """Rerun the committed pipeline of ``root`` in a scratch copy and compare; exit status."""
    root = root.resolve()
    scratch_parent = Path(tempfile.mkdtemp(prefix="verify-"))
    scratch = scratch_parent / "repo"
    try:
        commit = checkout_head(root, scratch)
        lock_file = scratch / "dvc.lock"
        if not lock_file.is_file():
            raise VerifyError("dvc.lock is not committed: there is no manifest to verify "
                              "against; run `make repro` and commit dvc.lock")
        head_lock = current_stages(
            yamlfile.safe_load(lock_file.read_text(encoding="utf-8")) or {},
            yamlfile.safe_load((scratch / "dvc.yaml").read_text(encoding="utf-8")) or {})
        print(f"verify: rerunning every stage of {commit[:12]} in a scratch copy "
              "(this takes as long as a full `dvc repro -f`) ...", file=out, flush=True)
        log = scratch_parent / "repro.log"
        status = runner(scratch, log)
        if status != 0:
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            raise VerifyError(f"`dvc repro -f` failed in the scratch copy (status {status}); "
                              f"its last output:\n{tail}")
        listing = _git(["ls-tree", "-r", "--name-only", commit], root).stdout.decode()

        def committed(path: str) -> bytes | None:
            shown = _git(["show", f"{commit}:{path}"], root)
            return shown.stdout if shown.returncode == 0 else None

        rerun_lock = current_stages(
            yamlfile.safe_load(lock_file.read_text(encoding="utf-8")) or {},
            yamlfile.safe_load((scratch / "dvc.yaml").read_text(encoding="utf-8")) or {})
        checks = compare(head_lock, rerun_lock, scratch, root, committed, listing.splitlines())
        print(report(checks, head_lock, commit, code_stamp(scratch)), file=out, flush=True)
        times = stage_times(log)
        if times:
            print(f"Rerun: {sum(times.values()):.0f} s of stages (" +
                  ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ").", file=out)
        return 0 if all(c.status == "same" for c in checks) else 1
    finally:
        if keep:
            print(f"verify: scratch copy kept in {scratch}", file=out)
        else:
            shutil.rmtree(scratch_parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry of ``make verify``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.verify",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=".", help="the project to verify (default: here)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    try:
        return verify(Path(args.repo), keep=args.keep)
    except PipelineError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return exc.exit_status


if __name__ == "__main__":
    sys.exit(main())
