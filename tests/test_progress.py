"""`make repro` output: noise dropped, one progress line per stage, real messages kept."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from pipeline.progress import filter_line, filter_stream, load_rules, main, run

DVC_OUTPUT = """Running stage 'render':
> .venv/bin/python -m pipeline render --out reports --notebook notebooks/overview.py
[render] wrote reports/overview.html in 4 s
[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication ...

Updating lock file 'dvc.lock'
Stage 'fit' didn't change, skipping
[validate] WARNING: 3 rows have a session number above 60
Use `dvc push` to send your updates to remote storage.
"""


def test_noise_is_dropped_and_stages_get_one_line() -> None:
    rules = load_rules()
    shown = [s for line in DVC_OUTPUT.splitlines() if (s := filter_line(line, rules)) is not None]
    assert shown == [
        "stage render: running",
        "[render] wrote reports/overview.html in 4 s",
        "stage fit: up to date",
        "[validate] WARNING: 3 rows have a session number above 60",
    ]


def test_run_keeps_errors_and_the_exit_status() -> None:
    out = io.StringIO()
    code = run([sys.executable, "-c",
                "import sys; print('Use `dvc push` to send your updates to remote storage.');"
                "print('data/x.csv: column client_email refused', file=sys.stderr); sys.exit(2)"],
               out=out)
    assert code == 2
    assert out.getvalue() == "data/x.csv: column client_email refused\n"


def test_a_stage_stopped_by_a_user_error_makes_the_run_exit_2() -> None:
    """DVC exits 255 whatever the stage's status; a stage that stopped on the user's data
    or settings (exit 2) makes `make repro` / `python -m pipeline.progress` exit 2 too."""
    script = ("import sys; print('mydata/alliance.csv: rule out_of_range', file=sys.stderr);"
              "print(\"ERROR: failed to reproduce 'prepare': failed to run: .venv/bin/python "
              "-m pipeline prepare, exited with {}\", file=sys.stderr); sys.exit(255)")
    out = io.StringIO()
    assert run([sys.executable, "-c", script.format(2)], out=out) == 2
    assert "rule out_of_range" in out.getvalue() and "exited with 2" in out.getvalue()
    # any other failure (a bug, a killed stage) keeps DVC's status
    assert run([sys.executable, "-c", script.format(1)], out=io.StringIO()) == 255


@pytest.mark.parametrize(("text", "needle"), [
    ("data:\n  alliance: [\n", "params.yaml: not valid YAML at line"),
    ("report:\n  min_cell: five\n", "setting 'report.min_cell' [rule type]"),
])
def test_a_broken_params_file_stops_before_dvc_with_the_steps_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        text: str, needle: str) -> None:
    """DVC read a broken params.yaml first: "YAML file structure is corrupted", exit 255."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(text)
    assert main(["dvc", "repro"]) == 2     # DVC (not a DVC project here) would say 255
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_each_stage_reports_its_time() -> None:
    ticks = iter([0.0, 2.5, 3.0, 10.25, 11.0, 12.0])
    out = io.StringIO()
    lines = ["Running stage 'a':", "> cmd a", "[a] did it", "Running stage 'b':",
             "Stage 'c' didn't change, skipping", "Running stage 'd':",
             "To track the changes with git, run:",
             "Use `dvc push` to send your updates to remote storage."]
    filter_stream(lines, load_rules(), out, clock=lambda: next(ticks))
    assert out.getvalue().splitlines() == [
        "stage a: running", "[a] did it", "stage a: done in 2.5 s", "stage b: running",
        "stage b: done in 7.2 s", "stage c: up to date", "stage d: running",
        "stage d: done in 1.0 s"]


def test_dvcs_git_add_hint_is_dropped() -> None:
    """After a run DVC suggests `git add dvc.lock` and auto staging: the maintainers
    commit dvc.lock with the results, so a user of `make repro` has nothing to do."""
    from dvc.repo.scm_context import SCMContext

    rules = load_rules()
    # the lines as DVC 3 logs them (dvc/repo/scm_context.py), with its own git add line
    add = SCMContext._make_git_add_cmd(["dvc.lock", "build/.gitignore"])
    hint = (f"\nTo track the changes with git, run:\n\n{add}\n"
            "\nTo enable auto staging, run:\n\n\tdvc config core.autostage true")
    assert add == "\tgit add dvc.lock build/.gitignore"
    assert [filter_line(line, rules) for line in hint.splitlines()] == [None] * 8
    # a git add of the user's own files, or a stage's line naming git, still shows
    for kept in ("\tgit add data/mydata.csv", "[validate] run git add on your data first"):
        assert filter_line(kept, rules) == kept
