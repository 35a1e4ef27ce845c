"""Feast access for the platform: config per tier, apply, offline tables, materialize, retrieval."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dagster_project.lib import storage


def resolve_config(
    template: Path, state_dir: Path, overrides: Mapping[str, str] | None = None
) -> Path:
    """Write the tier's ``feature_store.yaml`` with file/SQLite paths moved under ``state_dir``.

    ``overrides`` (from :meth:`settings.Paths.feast_overrides`) set the ``project``, the SQL
    ``registry`` URL and the Redis ``online_store`` connection string of a server tier. Secrets
    stay ``${VARS}``, which Feast expands when it loads the file.
    """
    cfg = yaml.safe_load(template.read_text())
    over = dict(overrides or {})
    state_dir.mkdir(parents=True, exist_ok=True)
    if "project" in over:
        cfg["project"] = over["project"]
    registry = cfg.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type", "file") == "file":
        registry["path"] = str(state_dir / "registry.db")
    elif isinstance(registry, str):
        cfg["registry"] = str(state_dir / "registry.db")
    elif isinstance(registry, dict) and "registry" in over:
        registry["path"] = over["registry"]
    online = cfg.get("online_store") or {}
    if online.get("type", "sqlite") == "sqlite":
        online["path"] = str(state_dir / "online_store.db")
        cfg["online_store"] = online
    elif online.get("type") == "redis" and "online_store" in over:
        online["connection_string"] = over["online_store"]
    out = state_dir / "feature_store.yaml"
    # atomically: another process (or thread) may be reading the file right now
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, out)
    return out


class FeatureStoreClient:
    """A Feast ``FeatureStore`` on the tier's config, plus the offline tables it reads."""

    def __init__(
        self,
        repo_path: Path,
        template: Path,
        state_dir: Path,
        features_url: str,
        overrides: Mapping[str, str] | None = None,
    ):
        from feast import FeatureStore

        self.features_url = features_url
        self.store = FeatureStore(
            repo_path=str(repo_path), fs_yaml_file=resolve_config(template, state_dir, overrides)
        )

    def fail_fast(self, timeout_s: float = 1.0) -> bool:
        """For serving: a Redis online store that is down fails a lookup within about a second
        (redis-py's default is three retries with up to 10 s of backoff: a request would hang
        instead of getting its 503). True when the online store is Redis and was tuned."""
        from redis import Redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        online = self.store._get_provider().online_store  # Feast has no public accessor
        get_client = getattr(online, "_get_client", None)
        if get_client is None:  # SQLite: local file, nothing to time out
            return False
        client = get_client(self.store.config.online_store)
        if not isinstance(client, Redis):
            return False
        kwargs = client.connection_pool.connection_kwargs
        kwargs["socket_connect_timeout"] = timeout_s
        kwargs["socket_timeout"] = 2 * timeout_s
        client.set_retry(Retry(ExponentialBackoff(cap=0.2, base=0.05), 1))
        return True

    def objects(self) -> Any:
        from feature_repo.definitions import build

        return build(self.features_url)

    def write_offline_table(self, table: str, df: pd.DataFrame) -> str:
        from feature_repo.definitions import offline_table_url

        url = offline_table_url(self.features_url, table)
        storage.write_parquet(url, df)
        return url

    def apply(self) -> list[str]:
        objs = self.objects()
        self.store.apply(objs.all())
        return [o.name for o in objs.all()]

    def materialize(self, start: datetime, end: datetime) -> dict[str, int]:
        """Load the window's feature rows into the online store; static views (ttl 0) load in
        full up to ``end``. Returns the number of offline rows per view in the window."""
        counts: dict[str, int] = {}
        for view in self.store.list_feature_views():
            begin = datetime(1970, 1, 2, tzinfo=start.tzinfo) if not view.ttl else start
            # Feast prints a banner and a progress bar per view; callers report the counts.
            with contextlib.redirect_stdout(io.StringIO()):
                self.store.materialize(begin, end, feature_views=[view.name])
            counts[view.name] = self._rows_in_window(view, begin, end)
        return counts

    def _rows_in_window(self, view: Any, start: datetime, end: datetime) -> int:
        source = view.batch_source
        source = getattr(source, "batch_source", None) or source  # a PushSource's offline table
        df = storage.read_parquet(source.path)
        ts = df["event_timestamp"]
        return int(((ts >= start) & (ts < end)).sum())

    def push(self, frame: pd.DataFrame, source: str | None = None) -> None:
        """Write stream aggregates to the online store through the view's PushSource."""
        from feast.data_source import PushMode

        from dagster_project.lib import stream

        self.store.push(source or stream.PUSH_SOURCE, frame, to=PushMode.ONLINE)

    def historical_features(self, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
        fs = self.store.get_feature_service(service)
        return self.store.get_historical_features(entity_df=entity_df, features=fs).to_df()

    def online_features(self, rows: list[dict[str, Any]], service: str) -> dict[str, list[Any]]:
        fs = self.store.get_feature_service(service)
        return self.store.get_online_features(features=fs, entity_rows=rows).to_dict()
