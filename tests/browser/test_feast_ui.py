"""Feast's own UI (what `make up` starts on FEAST_PORT) shows the project's feature services."""

from __future__ import annotations

from dagster_project.features.feast_objects import build


def test_feast_ui_lists_the_feature_services_and_views(feast_ui, page, shot):
    objs = build("")
    views, services = len(objs.views) + len(objs.on_demand_views), len(objs.services)
    page.goto(f"{feast_ui.url}/p/flight_mlops")
    # the sidebar counts what the registry holds, once it has loaded
    # (each count is filled in as its part of the registry arrives: wait for both)
    page.get_by_text(f"Feature Views ({views})").wait_for()
    page.get_by_text(f"Feature Services ({services})").wait_for()
    page.goto(f"{feast_ui.url}/p/flight_mlops/feature-service")
    page.get_by_text("flight_delay_v1", exact=True).wait_for()
    page.get_by_text("origin_traffic_v1", exact=True).wait_for()
    shot("feast-feature-services")
