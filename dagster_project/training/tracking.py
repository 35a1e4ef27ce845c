"""MLflow access for the platform: the experiment, lineage tags, and the `flight_delay` registry.

On the ``local`` tier MLflow is embedded: a SQLite database and an artifact folder under the
state folder, no server. Other tiers set ``MLOPS_MLFLOW_TRACKING_URI`` to their tracking server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from dagster_project.platform.names import EXPERIMENT, MODEL_NAME

# Lineage tags every training run and model version carries.
TAG_DAGSTER_RUN = "dagster_run_id"
TAG_PARTITIONS = "data_partition_range"
TAG_GIT = "git_commit"
TAG_FEATURE_SERVICE = "feast_feature_service"
TAG_DATA_HASH = "training_set_hash"
TAG_PREDICTION_TIME = "prediction_time"  # day_start or lead_<minutes>: when the model scores
LINEAGE_TAGS = (
    TAG_DAGSTER_RUN,
    TAG_PARTITIONS,
    TAG_GIT,
    TAG_FEATURE_SERVICE,
    TAG_DATA_HASH,
    TAG_PREDICTION_TIME,
)
# What versions registered before these tags were trained on
LEGACY_FEATURE_SERVICE = "flight_delay_v1"
LEGACY_PREDICTION_TIME = "day_start"


GIT_COMMIT_ENV = "MLOPS_GIT_COMMIT"


def git_commit() -> str:
    """The code's commit: ``MLOPS_GIT_COMMIT`` (the image build and CI set it), else ``HEAD`` of
    the git checkout the process runs in (suffixed ``-dirty`` when tracked files changed), else
    "unknown" (an installed package outside a checkout)."""
    if commit := os.environ.get(GIT_COMMIT_ENV, "").strip():
        return commit
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def frame_hash(df: pd.DataFrame) -> str:
    """Content hash of a frame (column names, dtypes and values; row order matters)."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Lineage:
    dagster_run_id: str
    partition_range: str
    feature_service: str
    training_set_hash: str
    git_commit: str
    prediction_time: str = LEGACY_PREDICTION_TIME

    def tags(self) -> dict[str, str]:
        return {
            TAG_PREDICTION_TIME: self.prediction_time,
            TAG_DAGSTER_RUN: self.dagster_run_id,
            TAG_PARTITIONS: self.partition_range,
            TAG_GIT: self.git_commit,
            TAG_FEATURE_SERVICE: self.feature_service,
            TAG_DATA_HASH: self.training_set_hash,
        }


def use_s3_endpoint() -> None:
    """MLflow's S3 artifact store reads its endpoint from ``MLFLOW_S3_ENDPOINT_URL``; on a
    server tier it is the platform's ``MLOPS_S3_ENDPOINT_URL`` unless set on its own."""
    endpoint = os.environ.get("MLOPS_S3_ENDPOINT_URL")
    if endpoint and not os.environ.get("MLFLOW_S3_ENDPOINT_URL"):
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = endpoint


def configure(tracking_uri: str, artifact_location: str, experiment: str = EXPERIMENT) -> str:
    """Point the MLflow client at the tier's store and make sure the experiment exists.

    The experiment is created with an explicit artifact location, so nothing lands in the
    working directory's ``mlruns/``. Returns the experiment id."""
    import mlflow

    use_s3_endpoint()
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = str(found.experiment_id)
    else:
        if "://" not in artifact_location:
            Path(artifact_location).mkdir(parents=True, exist_ok=True)
            artifact_location = Path(artifact_location).resolve().as_uri()
        experiment_id = str(mlflow.create_experiment(experiment, artifact_location))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


class RegistryUnreachableError(RuntimeError):
    """The tracking/registry store does not answer (no server on its port, no database file)."""


_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
_DEFAULT_PORTS |= {"http": 80, "https": 443}


def masked(uri: str) -> str:
    """``uri`` with its password (if any) replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def probe(uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with the reason, when the registry cannot answer: MLflow itself retries a
    dead database for about 100 s before it gives up."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        path = uri.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise RegistryUnreachableError(f"registry database {path} does not exist")
        return
    if scheme not in _DEFAULT_PORTS:
        return
    parts = urlsplit(uri)
    host, port = parts.hostname or "localhost", parts.port or _DEFAULT_PORTS[scheme]
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise RegistryUnreachableError(
            f"registry {masked(uri)} unreachable: {exc.strerror or exc}"
        ) from exc


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    status: str = "READY"  # MLflow's registration status: PENDING_REGISTRATION, READY, ...

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def threshold(self) -> float:
        return float(self.tags.get("threshold", 0.5))

    @property
    def threshold_policy(self) -> str:
        """The rule that chose :attr:`threshold` (versions from before the tag: F1)."""
        return self.tags.get("threshold_policy", "f1")

    @property
    def feature_service(self) -> str:
        """The FeatureService the version was trained on, hence the one serving reads for it."""
        return self.tags.get(TAG_FEATURE_SERVICE) or LEGACY_FEATURE_SERVICE

    @property
    def prediction_time(self) -> str:
        """When the version scores a flight (``day_start`` or ``lead_<minutes>``)."""
        return self.tags.get(TAG_PREDICTION_TIME) or LEGACY_PREDICTION_TIME


class Registry:
    """The `flight_delay` registered model: versions, aliases and decision tags."""

    def __init__(self, tracking_uri: str, name: str = MODEL_NAME):
        import mlflow
        from mlflow import MlflowClient

        # `models:/` URIs resolve through the process-wide registry URI, so it is set here too.
        use_s3_endpoint()
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.name = name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            self.name, str(mv.version), str(mv.run_id), dict(mv.tags or {}), str(mv.status)
        )

    def register(self, model_uri: str, run_id: str, tags: dict[str, str]) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(
                self.name, description="Probability that a NYC departure leaves >15 min late."
            )
        mv = self.client.create_model_version(self.name, model_uri, run_id=run_id, tags=tags)
        return self._info(mv)

    def version(self, version: str) -> VersionInfo:
        return self._info(self.client.get_model_version(self.name, version))

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``, only once the version is fully registered (status
        READY): an alias never names a half-registered version."""
        status = str(self.client.get_model_version(self.name, version).status)
        if status != "READY":
            raise RuntimeError(
                f"{self.name} v{version} is not fully registered (status {status}): "
                f"alias '{alias}' not moved"
            )
        self.client.set_registered_model_alias(self.name, alias, version)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def download_uri(self, version: str) -> str:
        """Where the version's artifacts are stored (what a load downloads)."""
        return str(self.client.get_model_version_download_uri(self.name, version))

    def load(self, version: str) -> Any:
        """The version as an MLflow ``pyfunc`` model (raw feature frame in, probabilities out)."""
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")
