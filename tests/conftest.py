"""Shared fixtures: where the training/evaluation data lives, and how its absence is handled.

A user's clone has no ``../shared/data``: tests that need it skip with a reason. CI sets
``M2I_REQUIRE_DATA=1`` so that a missing data folder fails the run instead of silently skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("M2I_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data folder, or skip (fail under ``M2I_REQUIRE_DATA=1``) when it is missing."""
    path = data_dir()
    if not (path / "gtzan_mini" / "tracks.csv").is_file():
        msg = f"training/evaluation data not found at {path} (set M2I_DATA_DIR)"
        if os.environ.get("M2I_REQUIRE_DATA") == "1":
            pytest.fail(msg + " — M2I_REQUIRE_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(msg)
    return path
