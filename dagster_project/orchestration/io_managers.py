"""Parquet IO manager over any fsspec URL; one file per daily partition, writes are atomic."""

import dagster as dg
import pandas as pd

from dagster_project.ingestion.landing import PARTITION
from dagster_project.platform import storage

# Input metadata: an input that may have no partition yet (an empty frame instead of a failure),
# e.g. the report's skew column before any replay logged its as-of times.
ALLOW_NONE = "allow_no_partition"


class LakeIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as ``<base_url>/<asset>/<partition>.parquet`` (or ``<asset>.parquet``).

    A run over a partition range hands over one frame with a ``_partition`` column; each day is
    written to its own file, so a re-run of one day replaces exactly that day.
    """

    base_url: str

    def _asset_url(self, key: dg.AssetKey) -> str:
        return storage.join(self.base_url, *key.path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        url = self._asset_url(context.asset_key)
        if not context.has_asset_partitions:
            storage.write_parquet(f"{url}.parquet", obj)
            return
        if PARTITION not in obj.columns:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: partitioned output lacks {PARTITION!r}"
            )
        for key in context.asset_partition_keys:
            storage.write_parquet(f"{url}/{key}.parquet", obj[obj[PARTITION] == key])

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        url = self._asset_url(context.asset_key)
        name = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            return storage.read_parquet(f"{url}.parquet")
        wanted = set(context.asset_partition_keys)
        found = [
            u
            for u in storage.list_files(url, ".parquet")
            if u.rsplit("/", 1)[-1].removesuffix(".parquet") in wanted
        ]
        if not found:
            if context.definition_metadata.get(ALLOW_NONE):
                context.log.info(f"{name}: no partition materialized yet (an empty frame)")
                return pd.DataFrame()
            raise dg.Failure(
                f"{name}: none of the {len(wanted)} requested partitions is materialized"
            )
        if len(found) < len(wanted):
            context.log.info(
                f"{name}: loading the {len(found)} of {len(wanted)} partitions materialized"
            )
        return pd.concat([_read_partition(u) for u in found], ignore_index=True)


# Partition files read in this process, by URL: (version, frame). A daily loop re-reads every
# day's file of the history for each feature table; only the ones rewritten since are read
# again (a long replay otherwise spends most of a day's close reading parquet).
_PARTITIONS: dict[str, tuple[str, pd.DataFrame]] = {}


def _read_partition(url: str) -> pd.DataFrame:
    current = storage.version(url)
    cached = _PARTITIONS.get(url)
    if cached is None or cached[0] != current:
        cached = (current, storage.read_parquet(url))
        _PARTITIONS[url] = cached
    return cached[1]
