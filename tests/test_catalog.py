"""Catalog quality: code versions that change with the code, column lineage that matches what
the feature builders really read and write, and readable materialization metadata."""

from __future__ import annotations

import functools
import sys
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from dagster_project.definitions import defs
from dagster_project.defs import features as feature_assets
from dagster_project.features import aggregates, engineering
from dagster_project.ingestion import cleaning, landing
from dagster_project.ingestion.gate import REJECTED_BY
from dagster_project.orchestration import metadata

DAY = date(2013, 1, 2)


def test_every_asset_has_a_code_version_that_is_stable_across_loads():
    from dagster_project.definitions import build_definitions

    graph = defs.resolve_asset_graph()
    again = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        version = graph.get(key).code_version
        assert version, f"{key.to_user_string()} has no code version"
        assert version == again.get(key).code_version


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    module = tmp_path / "catalog_probe_mod.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = metadata.code_version("catalog_probe_mod")
    assert metadata.code_version("catalog_probe_mod") == before
    module.write_text("X = 2\n")
    assert metadata.code_version("catalog_probe_mod") != before
    assert metadata.code_version(sys.modules[__name__]) != before
    with pytest.raises(ModuleNotFoundError):
        metadata.code_version("no_such_module_anywhere")


def _validated(tmp_path) -> dict[str, pd.DataFrame]:
    """One real day through the landing zone and the cleaning functions (no gate: all accepted)."""
    url = (tmp_path / "landing").as_uri()
    landing.land_day(url, DAY)
    landing.land_reference(url)

    def accepted(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(**{REJECTED_BY: None})

    return {
        "validated_flights": cleaning.validated_flights(
            accepted(landing.read_days(url, "flights", [DAY]))
        ),
        "validated_weather": cleaning.validated_weather(
            accepted(landing.read_days(url, "weather", [DAY]))
        ),
        "validated_planes": cleaning.validated_reference(
            accepted(landing.read_reference(url, "planes"))
        ),
    }


BUILDERS = {
    "origin_weather": engineering.origin_weather,
    "carrier_delay_stats": engineering.carrier_delay_stats,
    "route_delay_stats": engineering.route_delay_stats,
    "plane_specs": engineering.plane_specs,
    **{view: functools.partial(aggregates.batch_table, view) for view in aggregates.VIEWS},
}


@pytest.mark.parametrize("table", sorted(BUILDERS))
def test_feature_column_lineage_matches_the_builders(table, tmp_path):
    validated = _validated(tmp_path)
    upstream = feature_assets.FEATURE_UPSTREAM[table]
    parents = defs.resolve_asset_graph().get(dg.AssetKey(table)).parent_keys
    assert parents == {dg.AssetKey(upstream)}
    built = BUILDERS[table](validated[upstream])
    lineage = feature_assets.feature_lineage(table)["dagster/column_lineage"]
    mapped = set(lineage.deps_by_column)
    # every output column is mapped, except the static timestamp of plane_specs
    assert mapped <= set(built.columns)
    assert set(built.columns) - mapped <= {engineering.TS}
    for column, deps in lineage.deps_by_column.items():
        for dep in deps:
            assert dep.asset_key == dg.AssetKey(upstream)
            assert dep.column_name in validated[upstream].columns, (table, column, dep)


def test_training_set_lineage_covers_entities_label_and_features(tmp_path):
    validated = _validated(tmp_path)["validated_flights"]
    entities = engineering.training_entities(validated)
    lineage = feature_assets.training_set_lineage()["dagster/column_lineage"].deps_by_column
    assert set(entities.columns) <= set(lineage)
    assert [d.column_name for d in lineage[engineering.LABEL]] == ["dep_delay"]
    assert lineage["carrier_delayed_share_7d"][0].asset_key == dg.AssetKey("carrier_delay_stats")
    for deps in lineage.values():
        for dep in deps:
            if dep.asset_key == dg.AssetKey("validated_flights"):
                assert dep.column_name in validated.columns, dep


def test_frame_metadata_has_counts_schema_preview_and_a_plot_when_asked():
    df = pd.DataFrame({"carrier": ["AA", "UA", "DL"], "delay": [1.0, 20.0, None]})
    plain = metadata.frame_metadata(df)
    assert plain["dagster/row_count"].value == 3
    assert [c.name for c in plain["dagster/column_schema"].columns] == ["carrier", "delay"]
    assert "| carrier" in plain["preview"].value
    assert "distributions" not in plain
    plotted = metadata.frame_metadata(df, plot_title="t: distributions")
    assert plotted["distributions"].value.startswith("![t: distributions](data:image/png;base64,")
    text_only = metadata.frame_metadata(df[["carrier"]], plot_title="t")
    assert "distributions" not in text_only
