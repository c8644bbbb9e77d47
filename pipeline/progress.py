"""Run a command (``dvc repro``) and show its output without the noise: ``make repro``.

Each output line is matched against the rules in ``pipeline/progress.yaml``: lines nobody
can act on are dropped (DVC's ``dvc push`` hint in a project without a remote, its
``git add dvc.lock`` and auto-staging hints, the command line echoed before each stage,
blank lines), DVC's stage headers become one short progress
line per stage (and, when the stage is done, its time), and everything else (every
warning and error) is printed unchanged. The exit status is the command's, except that a
run DVC stopped because a stage exited with 2 (a user-fixable error: data, settings or an
instrument file; DVC itself then exits 255) exits with 2, as the steps do. Before DVC
starts, a lock table an interrupted run left unreadable is removed
(:mod:`pipeline.dvclock`), so that a killed run never blocks the next one.

Usage: ``python -m pipeline.progress dvc repro [args]``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline import yamlfile
from pipeline.dvclock import repair_rwlock
from pipeline.errors import SettingsError

RULES = Path(__file__).with_name("progress.yaml")


@dataclass(frozen=True)
class Rules:
    """Compiled filter rules: patterns to drop, and (pattern, template) rewrites."""

    drop: tuple[re.Pattern[str], ...]
    rewrite: tuple[tuple[re.Pattern[str], str], ...]


def load_rules(path: str | Path = RULES) -> Rules:
    """Read and compile the rules; a bad regular expression names itself."""
    with Path(path).open(encoding="utf-8") as fh:
        data = yamlfile.safe_load(fh) or {}
    try:
        drop = tuple(re.compile(p) for p in data.get("drop") or [])
        rewrite = tuple((re.compile(r["pattern"]), str(r["to"]))
                        for r in data.get("rewrite") or [])
    except (re.error, KeyError, TypeError) as exc:
        raise SettingsError(f"{Path(path).name}: every `drop` entry must be a regular "
                            "expression and every `rewrite` entry a `pattern` and a `to`; "
                            f"fix: {exc}") from exc
    return Rules(drop, rewrite)


def filter_line(line: str, rules: Rules) -> str | None:
    """The line to show for ``line`` (without its newline), or ``None`` to drop it."""
    if any(p.search(line) for p in rules.drop):
        return None
    for pattern, template in rules.rewrite:
        match = pattern.search(line)
        if match:
            return template.format(**match.groupdict())
    return line


_STAGE = re.compile(r"^Running stage '(?P<stage>[^']+)':$")


#: DVC's line when a stage's command fails, with the command's exit status.
_FAILED = re.compile(r"failed to run: .*, exited with (?P<status>-?\d+)$")


def filter_stream(lines: Iterable[str], rules: Rules, out: IO[str],
                  clock: Callable[[], float] = time.perf_counter) -> int | None:
    """Write the filtered ``lines`` to ``out`` as they come, with each stage's time.

    Returns the exit status of the stage command DVC reports as failed (None if none).
    """
    current: tuple[str, float] | None = None
    failed: int | None = None

    def finish() -> None:
        if current is not None:
            print(f"stage {current[0]}: done in {clock() - current[1]:.1f} s", file=out,
                  flush=True)

    for raw in lines:
        line = raw.rstrip("\n")
        started = _STAGE.match(line)
        if started:
            finish()
            current = (started["stage"], clock())
        elif line.startswith(("Stage '", "Use `dvc push`", "To track the changes", "ERROR")):
            finish()  # a skipped stage or the end of the run: the running stage is done
            current = None
        stopped = _FAILED.search(line)
        if stopped:
            failed = int(stopped["status"])
        shown = filter_line(line, rules)
        if shown is not None:
            print(shown, file=out, flush=True)
    finish()
    return failed


def run(command: Sequence[str], rules: Rules | None = None, out: IO[str] = sys.stdout) -> int:
    """Run ``command`` with stderr merged into stdout, filter its output, return its status."""
    rules = rules or load_rules()
    with subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        failed = filter_stream(proc.stdout, rules, out)
    if proc.returncode != 0 and failed == SettingsError.exit_status:
        return failed
    return proc.returncode


def check_params(path: Path) -> None:
    """The steps' settings check, before DVC reads ``params.yaml``: DVC's own message for
    a broken file ("YAML file structure is corrupted", exit 255) says neither what to do nor
    which setting; this raises the steps' :class:`SettingsError` instead."""
    from pipeline.config import load_params
    from pipeline.settings import check_settings

    check_settings(load_params(path), check_files=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m pipeline.progress <command> [args]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m pipeline.progress <command> [args]", file=sys.stderr)
        return 2
    try:
        if args[:2] == ["dvc", "repro"] and Path("params.yaml").is_file():
            check_params(Path("params.yaml"))
        if args[:1] == ["dvc"] and repair_rwlock():
            print("[repro] removed DVC's lock table .dvc/tmp/rwlock: an interrupted run "
                  "had left it unreadable (it lists only running commands)", file=sys.stderr)
        return run(args)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_status
    except FileNotFoundError:
        print(f"{args[0]}: command not found; run `make setup` first", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
