"""Deterministic, atomic output writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.outputs import atomic_open, round_sig, write_csv, write_json


def test_round_sig() -> None:
    x = np.array([1.23456789012345, -0.000123456789012345, 0.0, np.nan, 123456789012.5])
    out = round_sig(x, 10)
    assert out[0] == 1.234567890
    assert out[1] == -0.0001234567890
    assert out[2] == 0.0
    assert np.isnan(out[3])
    assert out[4] == 123456789000.0


def test_last_bit_noise_does_not_change_the_file(tmp_path: Path) -> None:
    a = pd.DataFrame({"term": ["x"], "estimate": [0.1 + 0.2]})
    b = pd.DataFrame({"term": ["x"], "estimate": [0.3]})
    write_csv(a, tmp_path / "a.csv")
    write_csv(b, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text() == "term,estimate\nx,0.3\n"


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_json_sorted_and_rounded(tmp_path: Path) -> None:
    write_json({"b": 1 / 3, "a": {"y": 2, "x": np.float64(0.1 + 0.2)}}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert text.index('"a"') < text.index('"b"')
    assert "0.3333333333" in text and "0.30000000000000004" not in text
