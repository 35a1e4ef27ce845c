"""Feast access for the platform: config per tier, apply, offline tables, materialize, retrieval."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dagster_project.platform import storage

REQUEST_VIEW = "flight_request_time"  # the on-demand view online_lookup computes itself
# Scalar protobuf fields whose Python value is the field itself (what Feast's conversion
# returns for them); anything else goes through Feast's own conversion.
_SCALAR_FIELDS = frozenset({"double_val", "float_val", "int64_val", "int32_val", "string_val"})


def _python_value(value: Any, convert: Any) -> Any:
    kind = value.WhichOneof("val")
    if kind is None:
        return None
    return getattr(value, kind) if kind in _SCALAR_FIELDS else convert(value)


def _utc(ts: datetime) -> datetime:
    from datetime import UTC

    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


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


@dataclass(frozen=True)
class _ViewRead:
    """One stored feature view of a FeatureService: what :meth:`online_lookup` reads."""

    view: Any  # feast.FeatureView
    join_key: str
    features: list[str]


@dataclass(frozen=True)
class _ServicePlan:
    views: list[_ViewRead]
    request_features: bool  # the service includes the on-demand `flight_request_time` view
    resolved_at: float


class FeatureStoreClient:
    """A Feast ``FeatureStore`` on the tier's config, plus the offline tables it reads."""

    # How long a resolved FeatureService (its views and features) is reused by online_lookup.
    PLAN_TTL_S = 60.0

    def __init__(
        self,
        template: Path,
        state_dir: Path,
        features_url: str,
        overrides: Mapping[str, str] | None = None,
    ):
        from feast import FeatureStore

        self.features_url = features_url
        self._plans: dict[str, _ServicePlan] = {}
        self._plan_lock = threading.Lock()
        config = resolve_config(template, state_dir, overrides)
        self.store = FeatureStore(repo_path=str(state_dir), fs_yaml_file=config)

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
        from dagster_project.features.feast_objects import build

        return build(self.features_url)

    def write_offline_table(self, table: str, df: pd.DataFrame) -> str:
        from dagster_project.features.feast_objects import offline_table_url

        url = offline_table_url(self.features_url, table)
        storage.write_parquet(url, df)
        return url

    def apply(self) -> list[str]:
        objs = self.objects()
        self.store.apply(objs.all())
        return [o.name for o in objs.all()]

    def materialize(
        self, start: datetime, end: datetime, skip: frozenset[str] = frozenset()
    ) -> dict[str, int]:
        """Load the window's feature rows into the online store, except the views in ``skip``;
        static views (ttl 0, not stream-fed) load in full up to ``end``. Returns the number of
        offline rows per view in the window."""
        from dagster_project.features.feast_objects import STREAM_VIEWS

        counts: dict[str, int] = {}
        for view in self.store.list_feature_views():
            if view.name in skip:
                continue
            static = not view.ttl and view.name not in STREAM_VIEWS
            begin = datetime(1970, 1, 2, tzinfo=start.tzinfo) if static else start
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

    def push(self, frame: pd.DataFrame, source: str) -> None:
        """Write stream rows to the online store through a PushSource (``<view>_push``): what
        ``FeatureStore.push`` does for our one-view push sources, without its walk over every
        view of the registry per call (the consumer pushes at every 5-minute boundary)."""
        view = source.removesuffix("_push")
        self.store.write_to_online_store(view, frame, allow_registry_cache=True)

    def historical_features(self, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
        fs = self.store.get_feature_service(service)
        return self.store.get_historical_features(entity_df=entity_df, features=fs).to_df()

    def online_features(self, rows: list[dict[str, Any]], service: str) -> dict[str, list[Any]]:
        fs = self.store.get_feature_service(service)
        return self.store.get_online_features(features=fs, entity_rows=rows).to_dict()

    def _plan(self, service: str) -> _ServicePlan:
        """The service's stored views (join key, feature names) from the registry, cached for
        ``PLAN_TTL_S`` so a request does not walk the registry."""
        plan = self._plans.get(service)
        if plan is not None and time.monotonic() - plan.resolved_at < self.PLAN_TTL_S:
            return plan
        with self._plan_lock:
            fs = self.store.get_feature_service(service)
            odfvs = {v.name for v in self.store.list_on_demand_feature_views()}
            keys = {e.name: e.join_key for e in self.store.list_entities()}
            views, request = [], False
            for projection in fs.feature_view_projections:
                if projection.name in odfvs:
                    if projection.name != REQUEST_VIEW:
                        raise ValueError(
                            f"{service}: on-demand view {projection.name!r} has no fast path"
                        )
                    request = True
                    continue
                view = self.store.get_feature_view(projection.name)
                if len(view.entities) != 1:
                    raise ValueError(f"{service}: view {view.name!r} needs exactly one entity")
                views.append(
                    _ViewRead(view, keys[view.entities[0]], [f.name for f in projection.features])
                )
            plan = _ServicePlan(views, request, time.monotonic())
            self._plans[service] = plan
            return plan

    def online_lookup(
        self,
        rows: list[dict[str, Any]],
        service: str,
        as_of: list[datetime] | None = None,
    ) -> dict[str, list[Any]]:
        """What :meth:`online_features` returns, for the serving hot path: one ``online_read``
        per stored view of the service through Feast's provider (SQLite or Redis), each entity
        read once, and the request-time features computed by the same function the on-demand
        view `flight_request_time` runs (:func:`features.request_time_features`), so training
        and serving cannot drift apart. Skips Feast's per-call registry walk, request
        validation and protobuf response building, which cost most of a single-row
        ``get_online_features`` call.

        ``as_of`` (one time per row, UTC): a value older than its view's ``ttl`` before the
        row's time is missing, as the offline store's point-in-time join leaves it (the online
        store keeps a view's latest row however old it is)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto
        from feast.type_map import feast_value_type_to_python_type

        from dagster_project.features.engineering import (
            SMALL_REQUEST,
            request_time_features,
            request_time_values,
        )

        plan = self._plan(service)
        provider = self.store._get_provider()
        # Like Feast: the entity keys and the features; request data is not echoed.
        out: dict[str, list[Any]] = {v.join_key: [r[v.join_key] for r in rows] for v in plan.views}
        for read in plan.views:
            keys = [str(r[read.join_key]) for r in rows]
            unique = list(dict.fromkeys(keys))
            found: list[Any] = provider.online_read(
                config=self.store.config,
                table=read.view,
                entity_keys=[
                    EntityKeyProto(
                        join_keys=[read.join_key], entity_values=[ValueProto(string_val=k)]
                    )
                    for k in unique
                ],
                requested_features=read.features,
            )
            by_key = {}
            stamps: dict[str, datetime | None] = {}
            for key, (ts, values) in zip(unique, found, strict=True):
                stamps[key] = ts
                by_key[key] = {
                    name: _python_value(v, feast_value_type_to_python_type)
                    for name, v in (values or {}).items()
                }
            ttl = read.view.ttl
            for name in read.features:
                out[name] = [by_key[k].get(name) for k in keys]
            if as_of is not None and ttl:
                for i, k in enumerate(keys):
                    ts = stamps[k]
                    if ts is not None and as_of[i] - _utc(ts) > ttl:  # no overflow near year 1
                        for name in read.features:
                            out[name][i] = None
        if plan.request_features and rows:
            epochs = [r["sched_dep_epoch_s"] for r in rows]
            distances = [r["distance"] for r in rows]
            if len(rows) <= SMALL_REQUEST:  # what request_time_features does then, sans frame
                out |= request_time_values(epochs, distances)
            else:
                request = pd.DataFrame({"sched_dep_epoch_s": epochs, "distance": distances})
                for label, column in request_time_features(request).items():
                    out[str(label)] = column.tolist()
        return out
