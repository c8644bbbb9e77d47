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


# Run the longest end-to-end files first: pytest-xdist (`make test`) hands whole files to
# the workers in collection order, and a long file started last would leave one core idle
# while it finishes.
FIRST = ("test_runsafety.py", "test_pipeline.py", "test_report_content.py",
         "test_probes_shapes.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return FIRST.index(name) if name in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept
