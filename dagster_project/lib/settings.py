"""Where things live on each tier. Read lazily (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = REPO_ROOT / "feature_repo"
TIMEZONE = "America/New_York"
PROFILES = ("local", "server", "k8s")


def profile() -> str:
    """The tier named by ``MLOPS_PROFILE`` (default ``local``)."""
    value = os.environ.get("MLOPS_PROFILE", "local").strip() or "local"
    if value not in PROFILES:
        raise ValueError(f"MLOPS_PROFILE={value!r} is not one of {', '.join(PROFILES)}")
    return value


def mlops_home() -> Path:
    """The one folder that holds all local state (``MLOPS_HOME``, default ``<repo>/.mlops``)."""
    return Path(os.environ.get("MLOPS_HOME", REPO_ROOT / ".mlops")).resolve()


@dataclass(frozen=True)
class Paths:
    """Every location the platform writes to, derived from one root so tests can use a temp dir."""

    home: Path

    @property
    def landing_url(self) -> str:
        return os.environ.get("MLOPS_LANDING_URL", str(self.home / "landing"))

    @property
    def lake_url(self) -> str:
        return os.environ.get("MLOPS_LAKE_URL", str(self.home / "lake"))

    @property
    def features_url(self) -> str:
        return f"{self.lake_url}/features"

    @property
    def quarantine_url(self) -> str:
        return f"{self.lake_url}/quarantine"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"


def paths() -> Paths:
    return Paths(mlops_home())
