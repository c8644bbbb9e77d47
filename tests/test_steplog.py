"""Progress lines on long steps: start, heartbeat, end with time and peak memory."""

from __future__ import annotations

import time

import pytest

from pipeline.steplog import describe_files, phase


def test_long_phase_prints_start_heartbeats_and_end(capsys: pytest.CaptureFixture[str]) -> None:
    with phase("validate", "reading and checking alliance.csv (1.0 MB)", heartbeat=0.05):
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[validate] reading and checking alliance.csv (1.0 MB) ..."
    still = [line for line in lines if line.startswith("[validate] still reading")]
    assert len(still) >= 2 and "peak memory" in still[0]
    assert lines[-1].startswith("[validate] done reading and checking")
    assert " s (peak memory " in lines[-1]


def test_phase_reports_the_end_even_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), phase("fit", "fitting", heartbeat=0):
        raise RuntimeError("boom")
    assert "[fit] fitting ..." in capsys.readouterr().err


def test_describe_files_names_sizes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.csv").write_bytes(b"x" * 2_500_000)
    assert describe_files([tmp_path / "a.csv", tmp_path / "missing.csv"]) == "a.csv (2.5 MB)"
