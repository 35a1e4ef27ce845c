"""The endpoint's settings (from the environment), secret redaction and the auth rule."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster_project.platform import names, settings

log = logging.getLogger("flight_delay.serving")
AUTH_TIERS = ("server", "k8s")  # tiers where the endpoint refuses to run without a token
MAX_BODY_BYTES = 4 * 1_048_576  # 4 MiB: a full batch of 10,000 flights is about 1.6 MB
# Environment variables whose values are secrets: never logged, never sent to a client.
SECRET_ENV = (
    "MLOPS_SERVING_TOKEN",
    "MLOPS_PG_PASSWORD",
    "MLOPS_REDIS_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


class ServingConfigError(ValueError):
    """The endpoint is configured in a way it must not run with (e.g. no token on `server`)."""


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every secret value (from ``SECRET_ENV`` or ``secrets``) replaced by ***."""
    values = secrets if secrets is not None else tuple(os.environ.get(v, "") for v in SECRET_ENV)
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that removes secret values from a record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # render the traceback now, redacted, so the handler does not format it again
            formatted = logging.Formatter().formatException(record.exc_info)
            clean += "\n" + redact(formatted)
            record.exc_info, record.exc_text = None, None
        if clean != message:
            record.msg, record.args = clean, None
        return True


@dataclass(frozen=True)
class ServingConfig:
    tracking_uri: str
    feast_config_template: Path
    feast_state_dir: Path
    features_url: str
    prediction_log: (
        str  # a folder (local) or a postgresql:// URL (server tiers): see prediction_log.open_log
    )
    feast_overrides: dict[str, str] = field(default_factory=dict)
    model_name: str = names.MODEL_NAME
    alias: str = names.CHAMPION
    api_token: str | None = None
    reload_interval_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES
    # Model artifacts are only loaded from under these roots (the tier's MLflow artifact
    # store); a registry version pointing anywhere else is refused. Empty: no restriction.
    artifact_roots: tuple[str, ...] = ()

    @classmethod
    def for_paths(cls, paths: settings.Paths, **overrides: Any) -> ServingConfig:
        """Locations from a tier's state folder (any field can be overridden)."""
        values: dict[str, Any] = {
            "tracking_uri": paths.mlflow_tracking_uri,
            "feast_config_template": paths.feast_template,
            "feast_state_dir": paths.feast_dir,
            "feast_overrides": paths.feast_overrides(),
            "features_url": paths.features_url,
            "prediction_log": paths.prediction_log_url,
            "artifact_roots": (paths.mlflow_artifacts,),
        }
        return cls(**(values | overrides))

    @classmethod
    def from_env(cls) -> ServingConfig:
        """The state folder named by ``MLOPS_HOME``; ``MLOPS_SERVING_TOKEN`` turns on bearer
        auth; ``MLOPS_SERVING_RELOAD_S`` sets how often the registry is polled (0: never);
        ``MLOPS_SERVING_MAX_BODY_BYTES`` caps a request body (default 1 MiB).

        Auth is required on the `server` and `k8s` tiers: without ``MLOPS_SERVING_TOKEN`` the
        endpoint refuses to start unless ``MLOPS_SERVING_AUTH=off`` says so explicitly
        (``MLOPS_SERVING_AUTH=on`` requires a token on `local` too)."""
        token = check_auth_setting(
            settings.profile(),
            os.environ.get("MLOPS_SERVING_TOKEN") or None,
            os.environ.get("MLOPS_SERVING_AUTH", ""),
        )
        return cls.for_paths(
            settings.paths(),
            api_token=token,
            reload_interval_s=float(os.environ.get("MLOPS_SERVING_RELOAD_S", "30")),
            max_body_bytes=int(os.environ.get("MLOPS_SERVING_MAX_BODY_BYTES", MAX_BODY_BYTES)),
        )


def check_auth_setting(profile: str, token: str | None, auth: str) -> str | None:
    """The token to enforce (None: no auth). Refuses a configuration that would serve without
    auth where auth is the default; ``off`` turns auth off even with a token set."""
    mode = auth.strip().lower() or ("on" if profile in AUTH_TIERS else "optional")
    if mode not in ("on", "off", "optional"):
        raise ServingConfigError(f"MLOPS_SERVING_AUTH={auth!r}: use 'on' or 'off'")
    if mode == "on" and not token:
        raise ServingConfigError(
            f"bearer auth is required on the '{profile}' tier but MLOPS_SERVING_TOKEN is not "
            "set: set it (from a secret store), or set MLOPS_SERVING_AUTH=off to serve "
            "without auth on purpose"
        )
    if mode == "off":
        if token:
            log.warning("MLOPS_SERVING_AUTH=off: MLOPS_SERVING_TOKEN is ignored, no auth")
        return None
    return token


def under_roots(uri: str, roots: tuple[str, ...]) -> bool:
    """Whether an artifact URI lies under one of ``roots`` (paths or URLs)."""

    def norm(value: str) -> str:
        if value.startswith("file://"):
            value = value.removeprefix("file://")
        if "://" not in value:
            value = str(Path(value).resolve())
        return value.rstrip("/") + "/"

    target = norm(uri)
    return any(target.startswith(norm(r)) for r in roots)
