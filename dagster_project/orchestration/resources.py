"""Typed Dagster resources: each wraps one external system and delegates to a Dagster-free module."""

import tempfile
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project.features.feast_store import FeatureStoreClient
from dagster_project.ingestion import gate, landing
from dagster_project.ingestion.expectations import TableRules
from dagster_project.monitoring import measures, retraining
from dagster_project.platform import names, storage
from dagster_project.serving import deploy
from dagster_project.serving.prediction_log import PredictionLog, open_log
from dagster_project.streaming import consumer, event_log, window_state
from dagster_project.training import tracking


class LandingZone(dg.ConfigurableResource):
    """The landing zone (any fsspec URL). The writer and the readers only share the layout."""

    url: str

    def land_day(self, day: date) -> dict[str, int]:
        return landing.land_day(self.url, day)

    def land_reference(self) -> dict[str, int]:
        return landing.land_reference(self.url)

    def read_days(self, table: str, days: Iterable[date]) -> pd.DataFrame:
        return _read(table, lambda: landing.read_days(self.url, table, days))

    def read_reference(self, table: str) -> pd.DataFrame:
        return _read(table, lambda: landing.read_reference(self.url, table))


def _read(table: str, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """An unreadable landing file fails the step with a message naming the table and file."""
    try:
        return read()
    except landing.LandingFileError as exc:
        raise dg.Failure(description=f"table '{table}': {exc}") from exc


class ValidationGate(dg.ConfigurableResource):
    """Great Expectations gate: Data Docs in ``gx_dir``, rejected rows in ``quarantine_url``.

    With ``docs_url`` (server tiers) GX works in a temporary folder that no other step or run
    reads, and the Data Docs and validation results are published to ``docs_url``."""

    gx_dir: str
    quarantine_url: str
    docs_url: str | None = None
    max_bad_share: float = 0.05

    def _validate(
        self, rules: TableRules, df: pd.DataFrame, known_sets: dict[str, frozenset[str]]
    ) -> gate.GateResult:
        if not self.docs_url:
            return gate.Gate(Path(self.gx_dir), self.max_bad_share).validate(rules, df, known_sets)
        with tempfile.TemporaryDirectory(prefix="gx-") as scratch:
            return gate.Gate(Path(scratch), self.max_bad_share, self.docs_url).validate(
                rules, df, known_sets
            )

    def check(
        self, rules: TableRules, df: pd.DataFrame, known_sets: dict[str, frozenset[str]]
    ) -> tuple[gate.GateResult, pd.DataFrame]:
        """Validate, write the quarantine, and return the result and the annotated frame."""
        result = self._validate(rules, df, known_sets)
        gate.write_quarantine(self.quarantine_url, rules.table, df, result)
        annotated = df.reset_index(drop=True)
        annotated[gate.REJECTED_BY] = result.rejected.astype("string")
        return result, annotated


class FeastResource(dg.ConfigurableResource):
    """The Feast feature store of the tier (``config_template`` is its feature_store.yaml).

    On a server tier ``project``, ``registry_url`` (SQLAlchemy URL of the SQL registry) and
    ``redis_connection`` (Feast's Redis connection string) override the template's values."""

    config_template: str
    state_dir: str
    features_url: str
    project: str | None = None
    registry_url: str | None = None
    redis_connection: str | None = None

    def client(self) -> FeatureStoreClient:
        overrides = {
            "project": self.project,
            "registry": self.registry_url,
            "online_store": self.redis_connection,
        }
        return FeatureStoreClient(
            Path(self.config_template),
            Path(self.state_dir),
            self.features_url,
            {k: v for k, v in overrides.items() if v},
        )


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (embedded SQLite and a local artifact folder on `local`)."""

    tracking_uri: str
    artifact_location: str
    experiment: str = names.EXPERIMENT
    model_name: str = names.MODEL_NAME

    def registry(self) -> tracking.Registry:
        tracking.configure(self.tracking_uri, self.artifact_location, self.experiment)
        return tracking.Registry(self.tracking_uri, self.model_name)


class Deployer(dg.ConfigurableResource):
    """Deploys the champion.

    Without ``serving_url`` (`local`, `server`: one machine) a uvicorn process on loopback,
    started once and reloaded on promotion. With it (`k8s`: the serving Service of the
    namespace, ``MLOPS_SERVING_URL``) no process is started: the deployment waits, for at most
    ``rollout_timeout_s``, until the Service's replicas serve the promoted version (they poll
    the `champion` alias) and a smoke request answers with it.

    ``api_token`` (e.g. ``dg.EnvVar("MLOPS_SERVING_TOKEN")``) turns on the endpoint's bearer auth.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    mlops_home: str
    api_token: str | None = None
    serving_url: str | None = None
    rollout_timeout_s: float = 300.0

    def endpoint(self) -> deploy.LocalEndpoint | deploy.ServiceEndpoint:
        if self.serving_url:
            return deploy.ServiceEndpoint(
                self.serving_url, token=self.api_token, timeout_s=self.rollout_timeout_s
            )
        return deploy.LocalEndpoint(
            host=self.host,
            port=self.port,
            run_dir=Path(self.mlops_home) / "run",
            env={"MLOPS_HOME": self.mlops_home},
            token=self.api_token,
        )

    def deploy(self, version: str, smoke_flight: dict) -> deploy.Deployment:
        try:
            return deploy.deploy(self.endpoint(), version, smoke_flight)
        except deploy.DeployError as exc:
            raise dg.Failure(description=f"deployment of v{version} failed: {exc}") from exc


class MonitoringResource(dg.ConfigurableResource):
    """Where monitoring reads the prediction log and writes plots, the report and the retrain
    record; its thresholds (warnings and errors of the daily checks) and the retrain policy."""

    prediction_log: str  # a folder or a postgresql:// URL (see open_log)
    folder: str  # plots, the report, the retrain records: a local folder or an s3:// URL
    psi_warn: float = measures.Thresholds.psi_warn
    psi_error: float = measures.Thresholds.psi_error
    ks_pvalue: float = measures.Thresholds.ks_pvalue
    auc_floor: float = measures.Thresholds.auc_floor
    calibration_error_max: float = measures.Thresholds.calibration_error_max
    min_labeled: int = measures.Thresholds.min_labeled
    # calibrated (bars from the reference's own weeks, weighed by importance) or fixed (PSI
    # psi_error on an important feature): see monitoring/drift.py
    drift_mode: str = measures.Thresholds.drift_mode
    drift_window_days: int = measures.Thresholds.drift_window_days
    drift_warn_quantile: float = measures.Thresholds.drift_warn_quantile
    drift_error_quantile: float = measures.Thresholds.drift_error_quantile
    drift_importance_share: float = measures.Thresholds.drift_importance_share
    prediction_in_alarm: bool = measures.Thresholds.prediction_in_alarm
    alarm_horizon_days: int = measures.Thresholds.alarm_horizon_days
    drop_auc_margin: float = measures.Thresholds.drop_auc_margin
    drop_baseline_days: int = measures.Thresholds.drop_baseline_days
    drop_window_days: int = measures.Thresholds.drop_window_days
    breach_days: int = retraining.RetrainPolicy.breach_days
    cooldown_days: int = retraining.RetrainPolicy.cooldown_days
    new_label_days: int = retraining.RetrainPolicy.new_label_days
    window_days: int = retraining.RetrainPolicy.window_days
    retrain_holdout_days: int = retraining.RetrainPolicy.holdout_days
    retrain_validation_days: int = retraining.RetrainPolicy.validation_days
    retrain_trials: int = retraining.RetrainPolicy.n_trials
    # what retrains train on: a FeatureService and a prediction time (day_start or lead_<min>)
    retrain_feature_service: str = retraining.RetrainPolicy.feature_service
    retrain_prediction_time: str = retraining.RetrainPolicy.prediction_time

    def thresholds(self) -> measures.Thresholds:
        return measures.Thresholds(
            psi_warn=self.psi_warn,
            psi_error=self.psi_error,
            ks_pvalue=self.ks_pvalue,
            auc_floor=self.auc_floor,
            calibration_error_max=self.calibration_error_max,
            min_labeled=self.min_labeled,
            drift_mode=self.drift_mode,
            drift_window_days=self.drift_window_days,
            drift_warn_quantile=self.drift_warn_quantile,
            drift_error_quantile=self.drift_error_quantile,
            drift_importance_share=self.drift_importance_share,
            prediction_in_alarm=self.prediction_in_alarm,
            alarm_horizon_days=self.alarm_horizon_days,
            drop_auc_margin=self.drop_auc_margin,
            drop_baseline_days=self.drop_baseline_days,
            drop_window_days=self.drop_window_days,
        )

    def policy(self) -> retraining.RetrainPolicy:
        return retraining.RetrainPolicy(
            breach_days=self.breach_days,
            cooldown_days=self.cooldown_days,
            new_label_days=self.new_label_days,
            window_days=self.window_days,
            holdout_days=self.retrain_holdout_days,
            validation_days=self.retrain_validation_days,
            n_trials=self.retrain_trials,
            feature_service=self.retrain_feature_service,
            prediction_time=self.retrain_prediction_time,
        )

    def predictions(self) -> PredictionLog:
        """The prediction log the endpoint appends to (``read_day`` per scheduled date)."""
        return open_log(self.prediction_log)

    def url(self, *parts: str) -> str:
        return storage.join(self.folder, *parts)

    @property
    def retrains_url(self) -> str:
        return self.url("retrains")

    @property
    def replay_url(self) -> str:
        """The record of the last replay in this state folder (what the report covers)."""
        return self.url("replay.json")


class StreamResource(dg.ConfigurableResource):
    """The event stream (departures, weather observations, ticks) and the consumer's window
    state: a Redis Stream and Redis sorted sets when ``redis_url`` is set (server tiers), else
    an append-only log and a SQLite file in ``folder`` (local tier). Same interface either way."""

    folder: str
    redis_url: str | None = None
    prefix: str = "mlops:"
    batch_size: int = 2000
    consumer_name: str = "consumer-1"

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(str(self.redis_url), socket_timeout=30)

    def log(self) -> event_log.EventLog:
        if self.redis_url:
            return event_log.RedisEventLog(self._redis(), self.prefix)
        return event_log.LocalEventLog(Path(self.folder))

    def state(self) -> window_state.WindowState:
        if self.redis_url:
            return window_state.RedisWindowState(self._redis(), self.prefix)
        return window_state.SqliteWindowState(Path(self.folder) / "state.db")

    def reset(self) -> None:
        """Start the stream over: an empty log and window state (a replay from its first day)."""
        self.log().reset()
        self.state().reset()

    def consumer(self, push: consumer.Push, keep_pushed: bool = False) -> consumer.Consumer:
        return consumer.Consumer(
            self.log(),
            window_state.MirroredState(self.state()),
            push,
            name=self.consumer_name,
            batch_size=self.batch_size,
            keep_pushed=keep_pushed,
        )


def resolved(defs: dg.Definitions, key: str) -> Any:
    """The resource ``key`` of ``defs`` as a run sees it: ``EnvVar`` fields resolved (code
    outside a run, such as the CLI, may not read them off the definitions directly)."""
    with dg.build_resources({key: (defs.resources or {})[key]}) as built:
        return getattr(built, key)
