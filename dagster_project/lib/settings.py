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

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        """``MLOPS_MLFLOW_TRACKING_URI`` if set (a server tier), else an embedded SQLite database.

        Not ``MLFLOW_TRACKING_URI``: MLflow writes that variable itself whenever a process sets
        a tracking URI, so it would leak one state folder's store into the next."""
        return (
            os.environ.get("MLOPS_MLFLOW_TRACKING_URI")
            or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"
        )

    @property
    def mlflow_artifacts(self) -> str:
        return os.environ.get("MLOPS_MLFLOW_ARTIFACTS_URI") or str(self.mlflow_dir / "artifacts")

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def prediction_log_dir(self) -> Path:
        return self.serving_dir / "predictions"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"


def serving_port() -> int:
    """Loopback port of the local prediction endpoint (``MLOPS_SERVING_PORT``, default 8000)."""
    return int(os.environ.get("MLOPS_SERVING_PORT", "8000"))


def paths() -> Paths:
    return Paths(mlops_home())
