"""The MLflow UI in headless Chromium: the registered model and its `champion` alias."""

from __future__ import annotations

import re


def test_mlflow_model_page_shows_the_champion_alias(mlflow_ui, page, shot):
    page.goto(f"{mlflow_ui.url}/#/models/flight_delay")
    page.get_by_text("Version 1", exact=True).wait_for()
    aliases = page.get_by_text("champion", exact=False)
    aliases.first.wait_for()
    body = page.inner_text("body")
    assert "flight_delay" in body
    # the alias tag of version 1 ("@ champion" in the Aliases column)
    assert re.search(r"@\s*champion", body), body[:2000]
    assert "Probability that a NYC departure leaves >15 min late." in body
    shot("mlflow-champion")
