"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def params() -> dict:
    return load_params(ROOT / "params.yaml")
