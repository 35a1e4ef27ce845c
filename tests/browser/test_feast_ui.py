"""Feast's own UI (what `make up` starts on FEAST_PORT) shows the project's feature service."""

from __future__ import annotations


def test_feast_ui_lists_the_feature_service_and_views(feast_ui, page, shot):
    page.goto(f"{feast_ui.url}/p/flight_mlops")
    # the sidebar counts what the registry holds, once it has loaded
    page.get_by_text("Feature Views (5)").wait_for()
    assert "Feature Services (1)" in page.inner_text("body")
    page.goto(f"{feast_ui.url}/p/flight_mlops/feature-service")
    page.get_by_text("flight_delay_v1", exact=True).wait_for()
    shot("feast-feature-services")
