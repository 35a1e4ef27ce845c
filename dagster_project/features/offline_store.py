"""A Feast offline store whose point-in-time join is DuckDB's ``ASOF JOIN``.

Feast's DuckDB store joins each entity row with every feature row of its key and then keeps the
latest one (a join that grows with rows x rows-per-key). ``ASOF JOIN`` finds that row in one
sorted merge. :class:`AsofDuckDBOfflineStore` subclasses Feast's store and answers
``get_historical_features`` with one DuckDB query: ``ASOF LEFT JOIN``\\ s of every feature view,
chained on one narrow entity relation (join keys, event time, row number), honouring what
Feast's join honours: ``ttl`` (a row older than ``event_timestamp - ttl`` is no match; ``ttl``
0 means none), the ``created_timestamp`` tie-break (of rows with the same key and event time,
the latest created wins), field mappings, projections (``join_key_map``, aliases),
``full_feature_names``, on-demand feature views, keys without feature rows (nulls) and
duplicate entity rows (kept, in entity order).

How it stays cheap (docs/feast-offline-store.md has the figures):

* each view's parquet is read by DuckDB once, into a temporary table numbered by row; the join
  carries only that row number (not the feature columns) and the features are gathered
  afterwards with one Arrow ``take`` per view;
* entity columns other than the join keys and the event time never enter DuckDB: the answer
  reuses the caller's columns where DuckDB would give them back unchanged (numbers, booleans,
  strings), so ``to_df()`` converts only the feature columns from Arrow;
* pandas on-demand views run on that frame (Feast converts the whole joined table to pandas
  for each of them, then again for the answer).

It falls back to Feast's own join (same answer, Feast's speed) where it cannot apply: an entity
SQL string instead of a DataFrame, ``filter_by_created_timestamp``, or a source that is not a
parquet ``FileSource``. Materialization reads parquet through DuckDB directly
(:meth:`AsofDuckDBOfflineStore.pull_all_from_table_or_query` and
``pull_latest_from_table_or_query``); writes, logging and monitoring are Feast's.

Parquet sources in an object store (``s3://``, the lake of the server tiers) are read through
the platform's fsspec storage layer (:mod:`dagster_project.platform.storage`: the same
endpoint and credentials as every other read), registered with each DuckDB connection, not
through DuckDB's ``httpfs`` extension (DuckDB downloads it at run time, and no ``httpfs``
build matches the pinned DuckDB); Feast's fallback join gets a source reader that loads the
table through it.

Enable it in ``feature_store.yaml``::

    offline_store:
      type: dagster_project.features.offline_store.AsofDuckDBOfflineStore
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
from feast.transformation.pandas_transformation import PandasTransformation

from dagster_project.platform import storage

ROW = "__asof_row"
TS = "__asof_ts"


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    type: str = "dagster_project.features.offline_store.AsofDuckDBOfflineStore"


def q(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet(source: DataSource | None) -> str | None:
    """The path of a parquet ``FileSource`` the store reads itself: local, or ``s3://`` (read
    through the platform's storage layer); None for anything else."""
    if not isinstance(source, FileSource) or source.path.startswith(("gs://", "http")):
        return None
    if source.file_format is not None and not isinstance(source.file_format, ParquetFormat):
        return None
    if source.file_format is None and not source.path.endswith(".parquet"):
        return None
    return source.path


def _connect(paths: list[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC that reads ``s3://`` paths through fsspec (the platform's
    storage layer: its endpoint and credentials), not DuckDB's ``httpfs`` extension."""
    con = duckdb.connect()
    remote = {p.split("://", 1)[0]: p for p in paths if storage.is_remote(p)}
    for path in remote.values():
        con.register_filesystem(storage.filesystem(path))
    con.execute("SET TimeZone = 'UTC'")
    return con


def _feast_io(config: RepoConfig) -> dict[str, Any]:
    """What Feast's ibis functions (the fallback paths) read and write with: our source
    reader (object stores through the storage layer) and the store's staging options."""
    return {
        "data_source_reader": read_source,
        "data_source_writer": _write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override": (
            config.offline_store.staging_location_endpoint_override
        ),
    }


def read_source(data_source: DataSource, repo_path: str) -> ibis.Table:
    """Feast's source reader, except that a parquet file in an object store is loaded through
    the storage layer (fsspec) instead of DuckDB's ``httpfs`` (Feast's fallback join)."""
    path = _parquet(data_source)
    if path is not None and storage.is_remote(path):
        fs = storage.filesystem(path)
        with fs.open(path, "rb") as fh:
            return ibis.memtable(pq.read_table(fh))
    return _read_data_source(data_source, repo_path)


def _ttl_micros(ttl: timedelta | None) -> int | None:
    return ttl // timedelta(microseconds=1) if ttl else None


@dataclass(frozen=True)
class ViewPlan:
    """One feature view's side of the join."""

    alias: str  # its temporary table
    relation: str  # SELECT of keys (__k0..), event time (__t) and features (output names)
    keys: list[tuple[str, str]]  # (column of the view's table, entity column)
    outputs: list[str]  # feature columns of the answer
    ttl_us: int | None
    path: str  # the view's parquet (local or s3://)


def view_plan(view: FeatureView, refs: list[str], full_feature_names: bool, i: int) -> ViewPlan:
    src = view.batch_source
    path = _parquet(src)
    assert path is not None
    assert src is not None
    # field_mapping maps a source column to the name the view uses.
    source_of = {new: old for old, new in src.field_mapping.items()}

    def col(name: str) -> str:
        return q(source_of.get(name, name))

    key_map = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
    prefix = view.projection.name_to_use()
    base = view.projection.name_alias or view.name
    features = [r.split(":", 1)[1] for r in refs if r.startswith(f"{prefix}:")]
    out = [f"{base}__{f}" if full_feature_names else f for f in features]
    ts, created = src.timestamp_field, src.created_timestamp_column
    select = [
        *[f"{col(k)} AS {q(f'__k{j}')}" for j, k in enumerate(key_map)],
        f"CAST({col(ts)} AS TIMESTAMPTZ) AS __t",
        *[f"{col(f)} AS {q(o)}" for f, o in zip(features, out, strict=True)],
    ]
    sql = f"SELECT {', '.join(select)} FROM read_parquet({_literal(path)})"
    if created:
        # Same key, same event time: Feast keeps the latest created row; ASOF would pick any.
        part = ", ".join([col(k) for k in key_map] + [col(ts)])
        sql += (
            f" QUALIFY row_number() OVER (PARTITION BY {part} "
            f"ORDER BY CAST({col(created)} AS TIMESTAMPTZ) DESC) = 1"
        )
    return ViewPlan(
        alias=f"__fv{i}",
        relation=sql,
        keys=[(f"__k{j}", entity_col) for j, entity_col in enumerate(key_map.values())],
        outputs=out,
        ttl_us=_ttl_micros(view.ttl),
        path=path,
    )


def asof_sql(plan: ViewPlan, left: str, right: str) -> str:
    """The view's ``ASOF LEFT JOIN``: per left row (``__p``), the number (``__r``) of the
    right row with the same keys and the latest event time at or before the left row's, or
    null (none, or older than the ttl)."""
    on = [f"l.{q(k)} = f.{q(k)}" for k, _ in plan.keys] + [f"l.{TS} >= f.__t"]
    ref = "f.__r"
    if plan.ttl_us is not None:
        ref = f"CASE WHEN f.__t >= l.{TS} - to_microseconds({plan.ttl_us}) THEN {ref} END"
    return (
        f"SELECT l.__p, {ref} AS __r FROM {q(left)} l "
        f"ASOF LEFT JOIN {q(right)} f ON {' AND '.join(on)}"
    )


def text_column(column: pd.Series) -> str | None:
    """``"str"``: an object column of ``str``; ``"str+null"``: of ``str`` and nulls; else None."""
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) != "string":
        return None
    return "str+null" if column.isna().any() else "str"


def _unchanged_by_duckdb(column: pd.Series, text: str | None) -> bool:
    """Whether a DuckDB round trip (pandas in, Arrow out, ``to_pandas``) gives this column
    back as it is: plain numpy numbers and booleans, and object columns of ``str`` only
    (``text``: :func:`text_column`; a null would come back as None)."""
    dtype = column.dtype
    if not isinstance(dtype, np.dtype):
        return False
    if dtype.kind in "iub" or dtype in (np.float32, np.float64):
        return True
    return text == "str"


def key_codes(
    entity: pd.Series, view: pa.ChunkedArray, text: str | None = None
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Integer codes for an entity key column and the view's key column, equal exactly where
    DuckDB's ``=`` holds: strings against strings, integers against integers; and the number
    of the view's distinct keys (codes 0..number-1). An entity key that is null or not in the
    view gets -1, a null key of the view -2 (neither matches). None for other types (DuckDB
    then compares the values themselves). ``text``: the entity column's :func:`text_column`,
    if known."""
    kind = entity.dtype.kind if isinstance(entity.dtype, np.dtype) else None
    if pa.types.is_string(view.type) or pa.types.is_large_string(view.type):
        if (text_column(entity) if text is None else text) is None:
            return None
        # Hashed by Arrow, not as Python strings: the view's rows never become objects.
        encoded = pc.dictionary_encode(view.combine_chunks())
        dictionary = encoded.dictionary
        values = pa.array(entity.to_numpy(), type=dictionary.type, from_pandas=True)
        found = pc.index_in(values, value_set=dictionary)
        return (
            pc.fill_null(found, -1).to_numpy().astype(np.int64),
            pc.fill_null(encoded.indices, -2).to_numpy().astype(np.int64),
            len(dictionary),
        )
    if not (pa.types.is_signed_integer(view.type) and kind == "i"):
        return None
    right, uniques = pd.factorize(view.to_pandas())
    right[right < 0] = -2
    left = pd.Index(uniques).get_indexer(pd.Index(entity))
    return left, right.astype(np.int64), len(uniques)


def time_codes(times: np.ndarray) -> tuple[np.ndarray, int]:
    """The entity times as codes 0..number-1, and their number."""
    codes, uniques = pd.factorize(times)
    return codes.astype(np.int64), len(uniques)


def distinct_rows(
    keys: list[tuple[np.ndarray, int]], times: tuple[np.ndarray, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Entity rows with the same keys and time have the same match: ``(inverse, first)``,
    the number of each row's distinct (keys, time) and a row of each number. ``keys``: per
    key its entity codes (-1..number-1) and number (:func:`key_codes`); ``times``:
    :func:`time_codes`. None where there could be as many combinations as rows (nothing to
    gain: e.g. one plane, one day, a few flights); otherwise the combinations are numbered
    through an array of that size, no hash table."""
    combo, size = times
    for codes, number in keys:
        if size * (number + 1) > len(combo):
            return None
        combo = (codes + 1) * size + combo
        size *= number + 1
    present = np.zeros(size, dtype=bool)
    present[combo] = True
    inverse = (np.cumsum(present) - 1)[combo]
    first = np.empty(int(present.sum()), dtype=np.int64)
    first[inverse] = np.arange(len(combo), dtype=np.int64)  # any row of the number will do
    return inverse, first


def run_join(
    entity_df: pd.DataFrame,
    ts_col: str,
    stamp: pd.Series,
    plans: list[ViewPlan],
    passthrough: list[str],
    text: dict[str, str | None],
) -> tuple[pa.Table, pa.Table]:
    """``(event time and passthrough columns, features)``, both in entity row order
    (``text``: each entity column's :func:`text_column`).

    Per view: DuckDB reads the parquet (field mapping, created-time tie-break) into Arrow; the
    keys become integer codes where :func:`key_codes` can make them; entity rows with the same
    keys and time are joined once (:func:`distinct_rows`; with ``day_start`` times most rows
    share a key and a midnight); the ``ASOF LEFT JOIN`` gives each the number of its feature
    row, and one Arrow ``take`` per view gathers the features."""
    n = len(entity_df)
    con = _connect([p.path for p in plans])
    try:
        con.execute("SET preserve_insertion_order = true")  # scans come back in entity order
        # A categorical goes in as its values: Feast's store gives them back, not a category.
        frame = pd.DataFrame(
            {
                c: np.asarray(entity_df[c])
                if isinstance(entity_df[c].dtype, pd.CategoricalDtype)
                else entity_df[c].array
                for c in passthrough
            }
        )
        frame[TS] = stamp.array
        con.register("entity_raw", frame)
        # The entity time is compared as TIMESTAMPTZ, as Feast does (naive means UTC).
        select = ", ".join([f"CAST({TS} AS TIMESTAMPTZ) AS {TS}", *map(q, passthrough)])
        stamps = con.sql(f"SELECT {select} FROM entity_raw").to_arrow_table()
        times = stamps[TS].to_pandas()
        # NaT is the smallest int64: a time of its own (DuckDB matches it with nothing)
        tcodes = time_codes(times.array.asi8)
        columns: dict[str, pa.ChunkedArray] = {}
        for i, p in enumerate(plans):
            rel = con.sql(p.relation).to_arrow_table()
            coded = [key_codes(entity_df[ent], rel[k], text.get(ent)) for k, ent in p.keys]
            pairs = [c for c in coded if c is not None]
            inverse = first = np.arange(n, dtype=np.int64)
            if len(pairs) == len(coded):  # every key coded
                keys = {k: c[0] for (k, _), c in zip(p.keys, pairs, strict=True)}
                left_times = times.array
                distinct = distinct_rows([(c[0], c[2]) for c in pairs], tcodes)
                if distinct is not None:
                    inverse, first = distinct
                    keys = {k: v[first] for k, v in keys.items()}
                    left_times = left_times.take(first)
                right_keys = {k: c[1] for (k, _), c in zip(p.keys, pairs, strict=True)}
            else:  # DuckDB compares the keys themselves, row by row
                keys = {k: entity_df[ent].array for k, ent in p.keys}
                left_times = times.array
                right_keys = {k: rel[k] for k, _ in p.keys}
            # (a view without entities has no keys: the join is on the time alone)
            left = pd.DataFrame(keys, index=pd.RangeIndex(len(first)))
            left[TS] = left_times
            left["__p"] = np.arange(len(first), dtype=np.int64)
            right = pa.table(
                {
                    **right_keys,
                    "__t": rel["__t"],
                    "__r": pa.array(np.arange(len(rel), dtype=np.int64)),
                }
            )
            con.register(f"__left{i}", left)
            con.register(f"__right{i}", right)
            found = con.sql(asof_sql(p, f"__left{i}", f"__right{i}")).to_arrow_table()
            match = np.full(len(first), -1, dtype=np.int64)
            match[found["__p"].to_numpy()] = pc.fill_null(found["__r"], -1).to_numpy()
            found_rows = match[inverse]
            taken = rel.select(p.outputs).take(pa.array(found_rows, mask=found_rows < 0))
            columns.update(zip(taken.column_names, taken.columns, strict=True))
            con.unregister(f"__left{i}")
            con.unregister(f"__right{i}")
    finally:
        con.close()
    stamps = stamps.rename_columns([ts_col, *passthrough])
    return stamps, pa.table(columns) if columns else pa.table({})


def _values(column: pd.Series) -> Any:
    """A column's values to build a frame from: the numpy array, or the extension array."""
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _record_metrics(job: RetrievalJob, seconds: float, rows: int, status: str) -> None:
    """What Feast's ``RetrievalJob.to_arrow`` records (its ``to_df`` goes through it, so a
    ``to_df`` is counted as ``to_arrow`` there too)."""
    try:
        from feast import metrics
        from feast.infra.offline_stores.offline_store import _extract_retrieval_metadata

        if metrics._config.offline_features:
            metrics.offline_store_request_total.labels(method="to_arrow", status=status).inc()
            metrics.offline_store_request_latency_seconds.labels(method="to_arrow").observe(seconds)
            metrics.offline_store_row_count.labels(method="to_arrow").observe(rows)
        if metrics._config.audit_logging:
            views, count = _extract_retrieval_metadata(job)
            end = datetime.now(tz=UTC)
            metrics.emit_offline_audit_log(
                method="to_arrow",
                feature_views=views,
                feature_count=count,
                row_count=rows,
                status=status,
                start_time=(end - timedelta(seconds=seconds)).isoformat(),
                end_time=end.isoformat(),
                duration_ms=seconds * 1000,
            )
    except Exception:
        logging.getLogger(__name__).debug("Failed to record offline store metrics", exc_info=True)


class ArrowRetrievalJob(IbisRetrievalJob):
    """Feast's ibis job over a result computed already: ``table`` (what ``persist`` and
    ``to_remote_storage`` write) is made from :meth:`_to_arrow_internal` when first used."""

    _table: Any = None

    def __init__(self, config: RepoConfig, odfvs: list, full: bool, metadata: Any) -> None:
        super().__init__(
            None,
            odfvs,
            full,
            metadata=metadata,
            data_source_writer=_write_data_source,
            staging_location=config.offline_store.staging_location,
            staging_location_endpoint_override=config.offline_store.staging_location_endpoint_override,
            repo_path=str(config.repo_path),
        )

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = ibis.memtable(self._to_arrow_internal())
        return self._table

    @table.setter
    def table(self, value: Any) -> None:
        self._table = value

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()


class ArrowTableJob(ArrowRetrievalJob):
    """An Arrow table (materialization's pulls)."""

    def __init__(self, config: RepoConfig, result: pa.Table) -> None:
        super().__init__(config, [], False, None)
        self._result = result

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self._result


class AsofRetrievalJob(ArrowRetrievalJob):
    """The ASOF join's answer: the caller's entity columns, the event time and the entity
    columns DuckDB would change (``stamps``), and the features (``features``)."""

    def __init__(
        self,
        config: RepoConfig,
        entity_df: pd.DataFrame,
        stamps: pa.Table,
        features: pa.Table,
        odfvs: list[OnDemandFeatureView],
        full_feature_names: bool,
        metadata: RetrievalMetadata,
    ) -> None:
        super().__init__(config, odfvs, full_feature_names, metadata)
        self._entity_df = entity_df
        self._stamps = stamps
        self._features = features

    def _entity_columns(self) -> list[tuple[Any, Any]]:
        own = set(self._stamps.column_names)
        return [(c, None if c in own else self._entity_df[c].to_numpy()) for c in self._entity_df]

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        arrays, names = [], []
        for name, values in self._entity_columns():
            arrays.append(
                self._stamps[name] if values is None else pa.array(values, from_pandas=True)
            )
            names.append(name)
        return pa.Table.from_arrays(
            [*arrays, *self._features.columns], [*names, *self._features.column_names]
        )

    def _frame(self) -> pd.DataFrame:
        """What ``to_arrow().to_pandas()`` gives (Feast's ``to_df`` before on-demand views),
        converting only the columns that are in Arrow."""
        stamps = self._stamps.to_pandas()
        entity = pd.DataFrame(
            {
                name: _values(stamps[name]) if values is None else values
                for name, values in self._entity_columns()
            },
            index=pd.RangeIndex(len(self._entity_df)),
        )  # a copy: the answer does not share the caller's arrays
        # A dict of numpy arrays and one frame from Arrow (a dict of extension arrays, e.g.
        # Series.array, is many times slower to build), joined without copying them again:
        # outside copy-on-write, ``concat(copy=False)`` consolidates, copying every block.
        features = self._features.to_pandas()
        with pd.option_context("mode.copy_on_write", True):
            return pd.concat([entity, features], axis=1)

    def to_df(self, validation_reference: Any = None, timeout: int | None = None) -> pd.DataFrame:
        if validation_reference is not None or not all(
            isinstance(o.feature_transformation, PandasTransformation)
            for o in self.on_demand_feature_views
        ):
            return super().to_df(validation_reference=validation_reference, timeout=timeout)
        start, status, df = time.monotonic(), "success", None
        try:
            df = self._frame()
            for odfv in self.on_demand_feature_views:
                df = self._with_pandas_odfv(df, odfv)
            return df
        except Exception:
            status = "error"
            raise
        finally:
            _record_metrics(self, time.monotonic() - start, 0 if df is None else len(df), status)

    def _requested(self, odfv: OnDemandFeatureView) -> set[str] | None:
        """The ODFV's columns asked for (as Feast's ``to_arrow`` picks them); None: all."""
        names = {odfv.name, odfv.projection.name_to_use()}
        wanted = set()
        for ref in self.metadata.features if self.metadata else []:
            view, _, feature = ref.partition(":")
            if feature and view in names:
                prefix = odfv.projection.name_to_use()
                wanted.add(f"{prefix}__{feature}" if self.full_feature_names else feature)
        return wanted or None

    def _with_pandas_odfv(self, df: pd.DataFrame, odfv: OnDemandFeatureView) -> pd.DataFrame:
        """Feast's ``transform_arrow`` for a pandas-mode view (the UDF gets the joined table
        as pandas, with the source features under both names), on the pandas frame itself."""
        udf = odfv.feature_transformation.udf  # type: ignore[union-attr]
        # Copy-on-write: the UDF gets a shallow copy, and whatever it changes in place is
        # copied then, so ``df`` stays as it is (Feast gives the UDF a frame of its own).
        with pd.option_context("mode.copy_on_write", True):
            inputs, cleanup = df.copy(deep=False), []
            for projection in odfv.source_feature_view_projections.values():
                for feature in projection.features:
                    full = f"{projection.name}__{feature.name}"
                    if full in inputs.columns:
                        inputs[feature.name] = inputs[full]
                        cleanup.append(feature.name)
                    elif feature.name in inputs.columns:
                        inputs[full] = inputs[feature.name]
                        cleanup.append(full)
            transformed = pa.Table.from_pandas(udf(inputs))
        transformed = odfv._postprocess_arrow_table(transformed, cleanup, self.full_feature_names)
        wanted = self._requested(odfv)
        keep = [
            c
            for c in transformed.column_names
            if not c.startswith("__index") and (wanted is None or c in wanted)
        ]
        added = transformed.select(keep).to_pandas()
        for c in added.columns:
            df[c] = _values(added[c])
        return df


def _window_sql(
    path: str,
    columns: list[str],
    timestamp_field: str,
    start: datetime | None,
    end: datetime | None,
) -> str:
    """Feast's materialization read of a parquet file: the columns, event time in [start, end]
    (compared as naive UTC, as Feast's ibis query does)."""
    where = []
    for bound, op in ((start, ">="), (end, "<=")):
        if bound is not None:
            naive = bound.astimezone(tz=UTC).replace(tzinfo=None)
            where.append(f"CAST({q(timestamp_field)} AS TIMESTAMP) {op} TIMESTAMP '{naive}'")
    sql = f"SELECT {', '.join(q(c) for c in columns)} FROM read_parquet({_literal(path)})"
    return sql + (f" WHERE {' AND '.join(where)}" if where else "")


def _arrow(sql: str, path: str) -> pa.Table:
    con = _connect([path])
    try:
        return con.sql(sql).to_arrow_table().combine_chunks()
    finally:
        con.close()


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store with an ``ASOF JOIN`` point-in-time join."""

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
            or any(_parquet(v.batch_source) is None for v in feature_views)
        ):
            return get_historical_features_ibis(
                config=config,
                feature_views=feature_views,
                feature_refs=feature_refs,
                entity_df=entity_df,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp,
                **_feast_io(config),
            )
        schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=False))
        ts_col = offline_utils.infer_event_timestamp_from_entity_df(entity_schema=schema)
        stamp = entity_df[ts_col].infer_objects()
        if not pd.api.types.is_datetime64_any_dtype(stamp):
            stamp = pd.to_datetime(stamp, utc=True)
        plans = [
            view_plan(v, feature_refs, full_feature_names, i) for i, v in enumerate(feature_views)
        ]
        # Entity columns DuckDB would give back otherwise go through it, as they do in
        # Feast's store; the event time always does (compared and returned as TIMESTAMPTZ).
        text = {c: text_column(entity_df[c]) for c in entity_df.columns if c != ts_col}
        passthrough = [
            c
            for c in entity_df.columns
            if c != ts_col and not _unchanged_by_duckdb(entity_df[c], text[c])
        ]
        stamps, features = run_join(entity_df, ts_col, stamp, plans, passthrough, text)
        meta = RetrievalMetadata(
            features=feature_refs,
            keys=list(set(entity_df.columns) - {ts_col}),
            min_event_timestamp=stamp.min() if len(stamp) else None,
            max_event_timestamp=stamp.max() if len(stamp) else None,
        )
        return AsofRetrievalJob(
            config,
            entity_df,
            stamps,
            features,
            OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            full_feature_names,
            meta,
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
        """Materialization's read (``pull_latest_features: false``): the window's rows."""
        path = _parquet(data_source)
        if path is None:
            return pull_all_from_table_or_query_ibis(
                config=config,
                data_source=data_source,
                join_key_columns=join_key_columns,
                feature_name_columns=feature_name_columns,
                timestamp_field=timestamp_field,
                created_timestamp_column=created_timestamp_column,
                start_date=start_date,
                end_date=end_date,
                **_feast_io(config),
            )
        columns = [*join_key_columns, *feature_name_columns, timestamp_field]
        columns += [created_timestamp_column] if created_timestamp_column else []
        sql = _window_sql(path, columns, timestamp_field, start_date, end_date)
        return ArrowTableJob(config, _arrow(sql, path))

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
        """Materialization's read (``pull_latest_features: true``): per key the window's
        latest row (latest event time, then latest created time)."""
        path = _parquet(data_source)
        if path is None:
            return pull_latest_from_table_or_query_ibis(
                config=config,
                data_source=data_source,
                join_key_columns=join_key_columns,
                feature_name_columns=feature_name_columns,
                timestamp_field=timestamp_field,
                created_timestamp_column=created_timestamp_column,
                start_date=start_date,
                end_date=end_date,
                **_feast_io(config),
            )
        columns = [*join_key_columns, *feature_name_columns, timestamp_field]
        columns += [created_timestamp_column] if created_timestamp_column else []
        order = [f"{q(timestamp_field)} DESC"]
        order += [f"{q(created_timestamp_column)} DESC"] if created_timestamp_column else []
        part = f"PARTITION BY {', '.join(map(q, join_key_columns))} " if join_key_columns else ""
        sql = _window_sql(path, columns, timestamp_field, start_date, end_date)
        sql += f" QUALIFY row_number() OVER ({part}ORDER BY {', '.join(order)}) = 1"
        return ArrowTableJob(config, _arrow(sql, path))


__all__: list[Any] = ["AsofDuckDBOfflineStore", "AsofDuckDBOfflineStoreConfig"]
