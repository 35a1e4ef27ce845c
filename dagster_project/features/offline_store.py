"""A Feast offline store whose point-in-time join is DuckDB's ``ASOF JOIN``.

Feast's DuckDB store joins each entity row with every feature row of its key and then keeps the
latest one (a join that grows with rows x rows-per-key). ``ASOF JOIN`` finds that row in one
sorted merge. :class:`AsofDuckDBOfflineStore` subclasses Feast's store and answers
``get_historical_features`` with one ``ASOF LEFT JOIN`` per feature view, honouring what Feast's
join honours: ``ttl`` (a row older than ``event_timestamp - ttl`` is no match; ``ttl`` 0 means
none), the ``created_timestamp`` tie-break (of rows with the same key and event time, the latest
created wins), field mappings, projections (``join_key_map``, aliases), ``full_feature_names``,
on-demand feature views, keys without feature rows (nulls) and duplicate entity rows (kept).

It falls back to Feast's own join (same answer, Feast's speed) where it cannot apply: an entity
SQL string instead of a DataFrame, ``filter_by_created_timestamp``, or a source that is not a
parquet ``FileSource``. Everything else (materialization, writes, monitoring) is Feast's.

Parquet sources in an object store (``s3://``, the lake of the server tiers) are read through
the platform's fsspec storage layer (:mod:`dagster_project.platform.storage`: the same
endpoint and credentials as every other read), not through DuckDB's ``httpfs`` extension,
which DuckDB downloads at run time (no download is possible where the platform runs without
the internet, and no ``httpfs`` build matches the pinned DuckDB). The ASOF join registers
that filesystem with its DuckDB connection; Feast's own paths (materialization, the fallback
join) get a source reader that loads the table through it.

Enable it in ``feature_store.yaml``::

    offline_store:
      type: dagster_project.features.offline_store.AsofDuckDBOfflineStore
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import ibis
import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureView, FileSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.duckdb import (
    DuckDBOfflineStore,
    DuckDBOfflineStoreConfig,
    _read_data_source,
    _write_data_source,
)
from feast.infra.offline_stores.ibis import (
    IbisRetrievalJob,
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig

from dagster_project.platform import storage

ROW = "__asof_row"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: str = "dagster_project.features.offline_store.AsofDuckDBOfflineStore"


def q(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _parquet(src: DataSource | None) -> str | None:
    """The path of a parquet ``FileSource`` the store reads itself: local, or ``s3://`` (read
    through the storage layer); None for anything else."""
    if not isinstance(src, FileSource) or src.path.startswith(("gs://", "http")):
        return None
    if src.file_format is not None and not isinstance(src.file_format, ParquetFormat):
        return None
    if src.file_format is None and not src.path.endswith(".parquet"):
        return None
    return src.path


def _view_parquet(view: FeatureView) -> str | None:
    return _parquet(view.batch_source)


def read_source(data_source: DataSource, repo_path: str) -> ibis.Table:
    """Feast's source reader, except that a parquet file in an object store is loaded through
    the storage layer (fsspec) instead of DuckDB's ``httpfs``."""
    path = _parquet(data_source)
    if path is not None and storage.is_remote(path):
        fs = storage.filesystem(path)
        with fs.open(path, "rb") as fh:
            return ibis.memtable(pq.read_table(fh))
    return _read_data_source(data_source, repo_path)


def _ttl_seconds(ttl: timedelta | None) -> float | None:
    return ttl.total_seconds() if ttl else None


def view_sql(view: FeatureView, refs: list[str], full_feature_names: bool, alias: str) -> tuple:
    """The feature view's side of the join: ``(cte, key pairs, output columns, ts column)``."""
    src = view.batch_source
    path = _view_parquet(view)
    assert path is not None
    assert src is not None
    # field_mapping maps a source column to the name the view uses.
    mapping = dict(src.field_mapping)
    source_of = {new: old for old, new in mapping.items()}

    def col(name: str) -> str:
        return q(source_of.get(name, name))

    key_map = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    prefix = view.projection.name_to_use()
    base = view.projection.name_alias or view.name
    features = [r.split(":", 1)[1] for r in refs if r.startswith(f"{prefix}:")]
    out = [f"{base}__{f}" if full_feature_names else f for f in features]
    ts = src.timestamp_field
    created = src.created_timestamp_column
    keys = [f"{col(k)} AS {q(f'{alias}_k{i}')}" for i, k in enumerate(key_map)]
    select = [
        *keys,
        f"CAST({col(ts)} AS TIMESTAMPTZ) AS {q(alias + '_ts')}",
        *[f"{col(f)} AS {q(o)}" for f, o in zip(features, out, strict=False)],
    ]
    sql = f"SELECT {', '.join(select)} FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
    if created:
        # Same key, same event time: Feast keeps the latest created row; ASOF would pick any.
        part = ", ".join([col(k) for k in key_map] + [col(ts)])
        sql += (
            f" QUALIFY row_number() OVER (PARTITION BY {part} "
            f"ORDER BY CAST({col(created)} AS TIMESTAMPTZ) DESC) = 1"
        )
    pairs = [(f"{alias}_k{i}", entity_col) for i, entity_col in enumerate(key_map.values())]
    return sql, pairs, out, f"{alias}_ts"


def asof_sql(
    views: list[FeatureView], refs: list[str], full_feature_names: bool, ts_col: str, entity: list
) -> str:
    """One query: the entity rows, ``ASOF LEFT JOIN``-ed with each view, in the entity order."""
    ctes, joins, outputs = [], [], []
    for i, view in enumerate(views):
        alias = f"__fv{i}"
        sql, pairs, out, ts = view_sql(view, refs, full_feature_names, alias)
        ctes.append(f"{q(alias)} AS ({sql})")
        on = [f"e.{q(ent)} = {q(alias)}.{q(k)}" for k, ent in pairs]
        on.append(f"e.{q(ts_col)} >= {q(alias)}.{q(ts)}")
        joins.append(f"ASOF LEFT JOIN {q(alias)} ON {' AND '.join(on)}")
        ttl = _ttl_seconds(view.ttl)
        for o in out:
            ref = f"{q(alias)}.{q(o)}"
            if ttl is not None:
                ref = (
                    f"CASE WHEN {q(alias)}.{q(ts)} >= e.{q(ts_col)} - "
                    f"to_microseconds({int(ttl * 1_000_000)}) THEN {ref} END"
                )
            outputs.append(f"{ref} AS {q(o)}")
    cols = [f"e.{q(c)}" for c in entity]
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(cols + outputs)} FROM entity_df e "
        f"{' '.join(joins)} ORDER BY e.{q(ROW)}"
    )


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store with an ``ASOF JOIN`` point-in-time join, reading object
    store sources through the platform's storage layer."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            data_source_reader=read_source,
            data_source_writer=_write_data_source,
            staging_location=config.offline_store.staging_location,
            staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config,
            data_source=data_source,
            join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            start_date=start_date,
            end_date=end_date,
            data_source_reader=read_source,
            data_source_writer=_write_data_source,
            staging_location=config.offline_store.staging_location,
            staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
        )

    @staticmethod
    def get_historical_features(  # type: ignore[override]
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        if (
            not isinstance(entity_df, pd.DataFrame)
            or filter_by_created_timestamp
            or any(_view_parquet(v) is None for v in feature_views)
        ):
            return get_historical_features_ibis(
                config=config,
                feature_views=feature_views,
                feature_refs=feature_refs,
                entity_df=entity_df,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                data_source_reader=read_source,
                data_source_writer=_write_data_source,
                staging_location=config.offline_store.staging_location,
                staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
                filter_by_created_timestamp=filter_by_created_timestamp,
            )
        schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=False))
        ts_col = offline_utils.infer_event_timestamp_from_entity_df(entity_schema=schema)
        entity = entity_df.copy()
        stamp = entity[ts_col].infer_objects()
        if not pd.api.types.is_datetime64_any_dtype(stamp):
            stamp = pd.to_datetime(stamp, utc=True)
        entity[ts_col] = stamp
        entity[ROW] = range(len(entity))
        sql = asof_sql(
            feature_views, feature_refs, full_feature_names, ts_col, list(entity_df.columns)
        )
        con = duckdb.connect()
        try:
            paths = [str(_view_parquet(v)) for v in feature_views]
            by_protocol = {p.split("://", 1)[0]: p for p in paths if storage.is_remote(p)}
            for path in by_protocol.values():  # DuckDB reads s3:// through fsspec, not httpfs
                con.register_filesystem(storage.filesystem(path))
            con.execute("SET TimeZone = 'UTC'")
            con.register("entity_df", entity)
            # The entity time is compared as TIMESTAMPTZ, as Feast does (naive means UTC).
            con.execute(
                f"CREATE TEMP TABLE e_utc AS SELECT * REPLACE "
                f"(CAST({q(ts_col)} AS TIMESTAMPTZ) AS {q(ts_col)}) FROM entity_df"
            )
            result = con.execute(sql.replace("FROM entity_df e", "FROM e_utc e")).to_arrow_table()
        finally:
            con.close()
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        times = entity[ts_col]
        meta = RetrievalMetadata(
            features=feature_refs,
            keys=list(set(entity_df.columns) - {ts_col}),
            min_event_timestamp=times.min() if len(times) else None,
            max_event_timestamp=times.max() if len(times) else None,
        )
        return IbisRetrievalJob(
            ibis.memtable(result),
            odfvs,
            full_feature_names,
            metadata=meta,
            data_source_writer=_write_data_source,
            staging_location=config.offline_store.staging_location,
            staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
            repo_path=str(config.repo_path),
        )


__all__: list[Any] = ["AsofDuckDBOfflineStore", "AsofDuckDBOfflineStoreConfig"]
