"""Shared fixtures: every test gets its own state folder (landing zone, lake, GX, Feast)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dagster_project.lib.settings import Paths

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "mlops")


@pytest.fixture
def defs(paths: Paths):
    from dagster_project.definitions import build_definitions

    return build_definitions(paths)
