"""Jobs: what `make demo`, schedules and Airflow launch."""

from __future__ import annotations

import dagster as dg

from dagster_project.defs.features import feast_definitions, plane_specs, training_set
from dagster_project.defs.ingestion import landed_reference_files, raw_reference_assets
from dagster_project.defs.monitoring import feature_skew, monitoring_report, prediction_quality
from dagster_project.defs.serving import deployed_endpoint, scored_flights
from dagster_project.defs.training import (
    candidate_review,
    flight_delay_model,
    lead_time_evaluation,
)
from dagster_project.defs.validation import validated_reference_assets
from dagster_project.orchestration.partitions import daily_2013

# Reference tables and Feast objects: built once, kept by the daily loop.
REFERENCE = dg.AssetSelection.assets(
    landed_reference_files,
    *raw_reference_assets,
    *validated_reference_assets,
    plane_specs,
    feast_definitions,
)

ingest_features_job = dg.define_asset_job(
    "ingest_features_job",
    selection=dg.AssetSelection.groups("ingestion", "validation", "features")
    - dg.AssetSelection.assets(training_set),
    partitions_def=daily_2013,
    description="Land, validate and featurize the partition's data, then load the online store.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(
        training_set, flight_delay_model, lead_time_evaluation, deployed_endpoint
    ),
    description=(
        "Build the training set, tune and register a challenger, run the promotion gate and, "
        "if it promotes, deploy the new champion."
    ),
)

daily_loop_job = dg.define_asset_job(
    "daily_loop_job",
    selection=(
        dg.AssetSelection.groups("ingestion", "validation", "features")
        - REFERENCE
        - dg.AssetSelection.assets(training_set)
    )
    | dg.AssetSelection.assets(prediction_quality, candidate_review, feature_skew, scored_flights)
    | dg.AssetSelection.groups("streaming"),
    partitions_def=daily_2013,
    description=(
        "One simulated day D of the closed loop: ingest D, judge the predictions for D against "
        "their outcomes, review the candidate's shadow days, score D+1's flights, publish D's "
        "departures to the event stream and drain it into the online store. Reference tables "
        "and Feast objects are kept."
    ),
)

stream_job = dg.define_asset_job(
    "stream_job",
    selection=dg.AssetSelection.groups("streaming"),
    partitions_def=daily_2013,
    description="Publish the partition's departures to the event stream and drain it into the "
    "online store (the bounded form of the stream consumer).",
)

deploy_job = dg.define_asset_job(
    "deploy_job",
    selection=dg.AssetSelection.assets(deployed_endpoint),
    description="(Re)deploy the current champion to the endpoint.",
)

report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets(monitoring_report),
    description="Rebuild the HTML monitoring report from every monitored day.",
)

jobs = [
    ingest_features_job,
    training_job,
    daily_loop_job,
    stream_job,
    deploy_job,
    report_job,
]
