"""The full code location loads, and every asset is documented for the catalog."""

import dagster as dg

from dagster_project.definitions import defs

EXPECTED = {
    "landed_daily_files",
    "landed_reference_files",
    "raw_flights",
    "raw_weather",
    "raw_planes",
    "raw_airlines",
    "raw_airports",
    "validated_flights",
    "validated_weather",
    "validated_planes",
    "validated_airlines",
    "validated_airports",
    "origin_weather",
    "carrier_delay_stats",
    "route_delay_stats",
    "plane_specs",
    "origin_traffic",
    "carrier_origin_traffic",
    "plane_today",
    "feast_definitions",
    "online_features",
    "training_set",
    "flight_delay_model",
    "lead_time_evaluation",
    "candidate_review",
    "deployed_endpoint",
    "serving_hardware",
    "scored_flights",
    "prediction_quality",
    "feature_skew",
    "monitoring_report",
    "stream_events",
    "live_features",
}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == EXPECTED
    for name in (
        "ingest_features_job",
        "training_job",
        "daily_loop_job",
        "stream_job",
        "deploy_job",
        "report_job",
    ):
        assert defs.resolve_job_def(name) is not None
    assert {s.name for s in defs.sensors} == {"quality_breach_sensor", "new_labels_sensor"}
    assert {s.name for s in defs.schedules} == {"weekly_retrain_schedule"}


def test_every_asset_is_described_grouped_owned_and_kinded():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description, f"{name} has no description"
        assert node.group_name in {
            "ingestion",
            "validation",
            "features",
            "training",
            "serving",
            "monitoring",
            "streaming",
        }, name
        assert node.owners, f"{name} has no owner"
        assert node.kinds, f"{name} has no kinds"


def test_raw_and_feature_tables_declare_column_schemas():
    graph = defs.resolve_asset_graph()
    for name in ("raw_flights", "raw_weather", "origin_weather", "carrier_delay_stats"):
        schema = graph.get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
        assert schema is not None, name
        assert len(schema.columns) > 3, name


def test_gates_are_blocking_checks():
    checks = {k.asset_key.to_user_string(): k for k in defs.resolve_asset_graph().asset_check_keys}
    assert set(checks) == {
        "raw_flights",
        "raw_weather",
        "raw_planes",
        "raw_airlines",
        "raw_airports",
        "flight_delay_model",
        "prediction_quality",
        "feature_skew",
    }
    specs = [s for ad in defs.resolve_asset_graph().assets_defs for s in ad.check_specs]
    blocking = {s.name for s in specs if s.blocking}
    assert blocking == {"gx_gate", "promotion_gate"}
    assert len([s for s in specs if s.name == "gx_gate"]) == 5
    # monitoring checks warn or fail but never block the loop
    assert {s.name for s in specs if not s.blocking} == {
        "quality_floor",
        "feature_drift",
        "prediction_drift",
        "no_skew",
    }
    job = defs.resolve_job_def("ingest_features_job")
    assert job.partitions_def is not None


def test_the_daily_loop_loads_the_online_store_after_the_days_feature_tables():
    """The daily loop keeps feast_definitions out of its run; the online store must still
    wait for the day's feature tables (it was loaded first, and served stale weather)."""
    job = defs.resolve_job_def("daily_loop_job")
    deps = job.graph.dependency_structure
    online = next(n for n in job.graph.node_dict if n == "online_features")
    upstream = {out.node_name for out in deps.all_upstream_outputs_from_node(online)}
    for table in ("origin_weather", "carrier_delay_stats", "route_delay_stats"):
        assert table in upstream, f"online_features does not wait for {table}"
