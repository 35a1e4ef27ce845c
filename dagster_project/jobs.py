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

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets("training_set", "flight_delay_model", "deployed_endpoint"),
    description=(
        "Build the training set, tune and register a challenger, run the promotion gate and, "
        "if it promotes, deploy the new champion."
    ),
)

jobs = [ingest_features_job, training_job]
