"""Jobs: what `make demo`, schedules and Airflow launch."""

from __future__ import annotations

import dagster as dg

from dagster_project.partitions import daily_2013

ingest_features_job = dg.define_asset_job(
    "ingest_features_job",
    selection=dg.AssetSelection.groups("ingestion", "validation", "features")
    - dg.AssetSelection.assets("training_set"),
    partitions_def=daily_2013,
    description="Land, validate and featurize the partition's data, then load the online store.",
)

training_set_job = dg.define_asset_job(
    "training_set_job",
    selection=dg.AssetSelection.assets("training_set"),
    description="Build the point-in-time training set for a date range (see its config).",
)

jobs = [ingest_features_job, training_set_job]
