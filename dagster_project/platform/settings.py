"""Where things live on each tier. Read lazily (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

FEAST_TEMPLATES = Path(__file__).with_name("feast")  # package data: one feature_store.yaml per tier
TIMEZONE = "America/New_York"
PROFILES = ("local", "server", "k8s")


def profile() -> str:
    """The tier named by ``MLOPS_PROFILE`` (default ``local``)."""
    value = os.environ.get("MLOPS_PROFILE", "local").strip() or "local"
    if value not in PROFILES:
        raise ValueError(f"MLOPS_PROFILE={value!r} is not one of {', '.join(PROFILES)}")
    return value


EXECUTORS = ("k8s", "docker")
DOCKER_IMAGE = "flight-mlops:0.1.0"  # what `make image` tags (IMAGE)


def executor() -> str:
    """How the `k8s` tier runs each step (``MLOPS_EXECUTOR``): ``k8s`` (default, a pod per step,
    ``k8s_job_executor``) or ``docker`` (a container per step on a Docker engine,
    ``docker_executor``), both sized by the step's compute class."""
    value = os.environ.get("MLOPS_EXECUTOR", "k8s").strip() or "k8s"
    if value not in EXECUTORS:
        raise ValueError(f"MLOPS_EXECUTOR={value!r} is not one of {', '.join(EXECUTORS)}")
    return value


def docker_image() -> str:
    """The image of the run and step containers (``MLOPS_IMAGE``, default ``flight-mlops:0.1.0``)."""
    return os.environ.get("MLOPS_IMAGE", "").strip() or DOCKER_IMAGE


CONTAINER_ENV_PREFIXES = ("MLOPS_", "AWS_", "MLFLOW_", "GX_")
# paths on the host, not in the image (which has its own MLOPS_HOME and CA store)
HOST_ONLY_ENV = (
    "MLOPS_HOME",
    "MLOPS_COMPUTE_PROFILES",
    "AWS_CA_BUNDLE",
    # the CLI's own default (set in its process only) and the image's ENV: a name listed for
    # the run launcher must be set in the webserver's and daemon's environment too
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    # the loopback port of an endpoint on this host (`make` exports it); a container tier's
    # steps reach serving at MLOPS_SERVING_URL
    "MLOPS_SERVING_PORT",
    # where the CLI launches runs (the tier's Dagster webserver); steps launch nothing
    "MLOPS_DAGSTER_URL",
)


def container_env() -> list[str]:
    """Names of the settings a run or step container inherits from the process that starts it:
    the tier's ``MLOPS_*``, ``AWS_*``, ``MLFLOW_*`` and ``GX_*`` variables that are set, less
    host paths (the image has its own ``MLOPS_HOME``)."""
    return sorted(
        k for k in os.environ if k.startswith(CONTAINER_ENV_PREFIXES) and k not in HOST_ONLY_ENV
    )


def mlops_home() -> Path:
    """The one folder that holds all local state (``MLOPS_HOME``, default ``./.mlops``; the
    Makefile sets it to ``<checkout>/.mlops``)."""
    return Path(os.environ.get("MLOPS_HOME") or Path.cwd() / ".mlops").resolve()


SERVER_STORES = ("dagster", "mlflow", "feast", "serving")
"""PostgreSQL databases of the server tier, one per store: ``<namespace>_<store>`` (``serving``
holds the prediction log)."""


@dataclass(frozen=True)
class ServerSettings:
    """Connection settings of the ``server`` (and ``k8s``) tier, from environment variables.

    ``namespace`` keeps one installation (or one test) apart from another on shared services:
    it prefixes the PostgreSQL databases, the Redis keys, the S3 keys and the Feast project.
    Passwords are read from the environment when a connection is made and never written to a
    file (generated files reference the variable instead).
    """

    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    s3_endpoint_url: str | None = None
    bucket: str = "mlops"
    namespace: str = "mlops"

    ENV = {
        "pg_host": "MLOPS_PG_HOST",
        "pg_port": "MLOPS_PG_PORT",
        "pg_user": "MLOPS_PG_USER",
        "redis_host": "MLOPS_REDIS_HOST",
        "redis_port": "MLOPS_REDIS_PORT",
        "redis_db": "MLOPS_REDIS_DB",
        "s3_endpoint_url": "MLOPS_S3_ENDPOINT_URL",
        "bucket": "MLOPS_S3_BUCKET",
        "namespace": "MLOPS_NAMESPACE",
    }
    PG_PASSWORD = "MLOPS_PG_PASSWORD"
    REDIS_PASSWORD = "MLOPS_REDIS_PASSWORD"

    @classmethod
    def from_env(cls) -> ServerSettings:
        values: dict[str, object] = {}
        for name, var in cls.ENV.items():
            raw = os.environ.get(var, "").strip()
            if raw:
                kind = type(getattr(cls, name)) if getattr(cls, name) is not None else str
                values[name] = int(raw) if kind is int else raw
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.namespace.replace("_", "").isalnum():
            raise ValueError(
                f"MLOPS_NAMESPACE={settings.namespace!r}: use letters, digits and underscores"
            )
        return settings

    def database(self, store: str) -> str:
        return f"{self.namespace}_{store}"

    def pg_url(
        self, store: str | None, driver: str = "postgresql", password_ref: bool = False
    ) -> str:
        """SQLAlchemy URL of ``store``'s database (``None``: the maintenance database).

        With ``password_ref`` the password is written as ``${MLOPS_PG_PASSWORD}`` for a config
        file that expands variables (Feast); otherwise it is read from the environment now."""
        password = os.environ.get(self.PG_PASSWORD, "")
        secret = f"${{{self.PG_PASSWORD}}}" if password_ref else quote(password, safe="")
        auth = f"{self.pg_user}:{secret}" if password else self.pg_user
        db = self.database(store) if store else "postgres"
        return f"{driver}://{auth}@{self.pg_host}:{self.pg_port}/{db}"

    def pg_location(self, store: str) -> str:
        """``store``'s database as a ``postgresql://`` URL without any password, for settings
        that are shown or logged (a Dagster resource's config); whoever connects passes
        :meth:`pg_password` separately."""
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.database(store)}"

    @classmethod
    def pg_password(cls) -> str | None:
        return os.environ.get(cls.PG_PASSWORD) or None

    def redis_connection(self) -> str:
        """Feast's Redis ``connection_string``; the password as a ``${VAR}`` reference."""
        conn = f"{self.redis_host}:{self.redis_port},db={self.redis_db}"
        if os.environ.get(self.REDIS_PASSWORD):
            conn += f",password=${{{self.REDIS_PASSWORD}}}"
        return conn

    def redis_url(self) -> str:
        password = os.environ.get(self.REDIS_PASSWORD, "")
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def redis_prefix(self) -> str:
        return f"{self.namespace}:"

    @property
    def s3_root(self) -> str:
        return f"s3://{self.bucket}/{self.namespace}"

    @property
    def feast_project(self) -> str:
        return "flight_mlops" if self.namespace == "mlops" else f"flight_mlops_{self.namespace}"


SHARED_STATE_ENV = (
    "MLOPS_LANDING_URL",
    "MLOPS_LAKE_URL",
    "MLOPS_GX_DOCS_URL",
    "MLOPS_MONITORING_URL",
    "MLOPS_PREDICTION_LOG_URL",
)
"""Variables that override where a tier keeps a kind of shared state (each one's default is
derived from the tier's settings in :class:`Paths`)."""


@dataclass(frozen=True)
class Paths:
    """Every location the platform writes to, derived from one root so tests can use a temp dir.

    With ``server`` settings (the ``server``/``k8s`` tiers) every piece of state that more than
    one process reads lives in the stores: the landing zone, the lake (Dagster's IO manager,
    the quarantine, Feast's offline parquet), the GX Data Docs, the monitoring outputs and the
    MLflow artifacts in S3; MLflow's and Feast's metadata and the prediction log in PostgreSQL;
    the online store and the event stream in Redis. What stays under ``home`` there is
    scratch that only its own process reads (the resolved ``feature_store.yaml``, GX's working
    project, a local endpoint's pid and log files)."""

    home: Path
    server: ServerSettings | None = field(default=None)

    @property
    def landing_url(self) -> str:
        default = f"{self.server.s3_root}/landing" if self.server else str(self.home / "landing")
        return os.environ.get("MLOPS_LANDING_URL") or default

    @property
    def lake_url(self) -> str:
        default = f"{self.server.s3_root}/lake" if self.server else str(self.home / "lake")
        return os.environ.get("MLOPS_LAKE_URL") or default

    @property
    def features_url(self) -> str:
        return f"{self.lake_url}/features"

    @property
    def quarantine_url(self) -> str:
        return f"{self.lake_url}/quarantine"

    @property
    def gx_dir(self) -> Path:
        """GX's file-backed project (suites, results, Data Docs); on the server tiers only a
        working copy whose Data Docs and results are uploaded to :attr:`gx_docs_url`."""
        return self.home / "gx"

    @property
    def gx_docs_url(self) -> str | None:
        """Where the gate publishes GX Data Docs and validation results (server tiers; on
        `local` they stay in :attr:`gx_dir`)."""
        default = f"{self.server.s3_root}/gx" if self.server else None
        return os.environ.get("MLOPS_GX_DOCS_URL") or default

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
        if uri := os.environ.get("MLOPS_MLFLOW_TRACKING_URI"):
            return uri
        if self.server:
            return self.server.pg_url("mlflow", "postgresql+psycopg2")
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> str:
        default = (
            f"{self.server.s3_root}/mlflow" if self.server else str(self.mlflow_dir / "artifacts")
        )
        return os.environ.get("MLOPS_MLFLOW_ARTIFACTS_URI") or default

    @property
    def feast_template(self) -> Path:
        """The tier's ``feature_store.yaml`` (``feature_store.server.yaml`` on server tiers)."""
        return feast_template("server" if self.server else "local")

    def feast_overrides(self) -> dict[str, str]:
        """What the tier sets in Feast's config: project, SQL registry, Redis online store."""
        if not self.server:
            return {}
        return {
            "project": self.server.feast_project,
            "registry": self.server.pg_url("feast", "postgresql+psycopg2", password_ref=True),
            "online_store": self.server.redis_connection(),
        }

    @property
    def stream_dir(self) -> Path:
        """The local tier's departure-event log and consumer state."""
        return self.home / "stream"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def prediction_log_dir(self) -> Path:
        """The local tier's prediction log: one JSON-lines file per scheduled date."""
        return self.serving_dir / "predictions"

    @property
    def prediction_log_url(self) -> str:
        """Where the endpoint appends and monitoring reads the prediction log: the local
        folder, or on the server tiers a PostgreSQL table in ``<ns>_serving`` (a URL without
        the password), which every serving replica appends to."""
        default = (
            self.server.pg_location("serving") if self.server else str(self.prediction_log_dir)
        )
        return os.environ.get("MLOPS_PREDICTION_LOG_URL") or default

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def monitoring_url(self) -> str:
        """Monitoring's plots, HTML report and retrain records (S3 on the server tiers)."""
        default = f"{self.server.s3_root}/monitoring" if self.server else str(self.monitoring_dir)
        return os.environ.get("MLOPS_MONITORING_URL") or default


def feast_template(tier: str) -> Path:
    """The Feast config template of ``tier`` (``local``, or ``server`` for both server tiers)."""
    return FEAST_TEMPLATES / f"feature_store.{'local' if tier == 'local' else 'server'}.yaml"


def serving_port() -> int:
    """Loopback port of the local prediction endpoint (``MLOPS_SERVING_PORT``, default 8000)."""
    return int(os.environ.get("MLOPS_SERVING_PORT", "8000"))


K8S_SERVING_URL = "http://serving"  # the serving Service of infra/k8s/base/serving.yaml


def serving_url() -> str | None:
    """The URL of a serving Service that runs on its own (``MLOPS_SERVING_URL``).

    Set, the deployer starts no process: it waits until that Service serves the promoted
    version (its replicas poll the `champion` alias). On `k8s` it defaults to the serving
    Service of the same namespace; on `local` and `server` it is unset by default, and the
    deployer runs the endpoint itself on loopback."""
    return _service_url("MLOPS_SERVING_URL", K8S_SERVING_URL)


def _service_url(variable: str, k8s_default: str) -> str | None:
    """A service's URL from ``variable``; unset, the `k8s` tier's in-cluster Service."""
    url = os.environ.get(variable, "").strip()
    if url:
        return url.rstrip("/")
    return k8s_default if profile() == "k8s" else None


K8S_DAGSTER_URL = "http://dagster-webserver"  # the Dagster release's webserver Service (port 80)


def dagster_url() -> str | None:
    """The tier's Dagster webserver (``MLOPS_DAGSTER_URL``), where the CLI launches its runs.

    Set, `demo` sends each job to it (GraphQL ``launchRun``, as the UI does): the tier's run
    launcher starts the run and its executor every step, in containers or pods. On `k8s` it
    defaults to the Helm release's webserver Service; on `local` and `server` it is unset by
    default, and the CLI runs its jobs in its own process."""
    return _service_url("MLOPS_DAGSTER_URL", K8S_DAGSTER_URL)


def paths() -> Paths:
    """The current tier's locations: ``MLOPS_HOME``, plus the server settings off `local`."""
    server = ServerSettings.from_env() if profile() != "local" else None
    return Paths(mlops_home(), server)
