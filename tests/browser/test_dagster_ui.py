"""The Dagster UI in headless Chromium: the catalog a person browses, and a run launched by hand.

Screenshots land in test-artifacts/browser/ (ignored by git)."""

from __future__ import annotations

import re

import httpx

from tests.browser.conftest import INGESTED_DAY

GROUPS = ("ingestion", "validation", "features", "training", "serving", "monitoring")
LAUNCHED_DAY = "2013-01-10"


def _asset_keys() -> list[str]:
    from dagster_project.definitions import all_assets

    return sorted(k.to_user_string() for a in all_assets for k in a.keys)


def test_asset_graph_shows_every_group_and_the_catalog_every_asset(dagster_ui, page, shot):
    page.goto(f"{dagster_ui.url}/asset-groups")
    page.get_by_text("Global asset lineage").wait_for()
    page.get_by_text("monitoring", exact=True).first.wait_for()
    for group in GROUPS:
        # each group is a box in the graph and an entry in the sidebar tree
        assert page.get_by_text(group, exact=True).count() >= 2, group
    shot("dagster-asset-graph")

    # one group opened: its assets as nodes with their kinds, the neighbours at the edges
    # (a tall page: the graph renders only the nodes in view)
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.goto(f"{dagster_ui.url}/locations/flight_mlops/asset-groups/features/lineage")
    for name in (
        "origin_weather",
        "carrier_delay_stats",
        "origin_traffic",
        "plane_today",
        "feast_definitions",
        "training_set",
    ):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("Loading", exact=False).first.wait_for(state="hidden")
    shot("dagster-features-group")

    page.set_viewport_size({"width": 1400, "height": 4000})  # the list renders visible rows only
    page.goto(f"{dagster_ui.url}/assets")
    page.get_by_text("validated_weather", exact=True).first.wait_for()
    body = page.inner_text("body")
    missing = [key for key in _asset_keys() if key not in body]
    assert not missing, f"not in the catalog: {missing}"
    assert "Per carrier and day: delays of the 7 previous days' departed flights." in body
    page.set_viewport_size({"width": 1400, "height": 900})
    shot("dagster-catalog")


def test_feature_table_page_shows_schema_owner_and_a_distribution_plot(dagster_ui, page, shot):
    page.goto(f"{dagster_ui.url}/assets/carrier_delay_stats")
    page.get_by_text("Columns", exact=True).wait_for()
    body = page.inner_text("body")
    for text in ("carrier_mean_dep_delay_7d", "data-platform", "feast", "Row count"):
        assert text in body, text
    # Markdown metadata with an inline PNG: Dagster shows it in a dialog
    row = page.locator("tr", has_text="distributions")
    row.get_by_text("Show Markdown").click()
    img = page.get_by_role("dialog").locator("img[src^='data:image/png;base64,']")
    img.wait_for()
    width = img.evaluate("e => e.complete ? e.naturalWidth : 0")
    assert width > 100, "the distribution plot did not decode"
    shot("dagster-feature-plot")


def test_materialize_one_partition_from_the_ui_and_see_it_succeed(dagster_ui, page, shot):
    page.goto(f"{dagster_ui.url}/assets/landed_daily_files")
    page.locator("button", has_text=re.compile(r"^Materialize")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize landed_daily_files").wait_for()
    partitions = dialog.get_by_placeholder(re.compile(r"^ex: 2013-01-01"))
    partitions.fill(LAUNCHED_DAY)
    partitions.press("Enter")
    dialog.get_by_role("button", name="Launch 1 run").click()
    # the toast links to the new run
    page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).wait_for()
    page.get_by_role("button", name="View").or_(page.get_by_role("link", name="View")).first.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = page.url.rstrip("/").split("/")[-1].split("?")[0]
    page.get_by_text("Success", exact=True).first.wait_for(timeout=240_000)
    assert f"partition: {LAUNCHED_DAY}" in page.inner_text("body")
    shot("dagster-run-success")

    query = (
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
    )
    run = httpx.post(
        f"{dagster_ui.url}/graphql", json={"query": query, "variables": {"id": run_id}}, timeout=30
    ).json()["data"]["runOrError"]
    assert run["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == LAUNCHED_DAY
    assert tags["dagster/from_ui"] == "true"
    for day in (INGESTED_DAY, LAUNCHED_DAY):
        assert (dagster_ui.home / "landing" / "flights" / f"{day}.csv").exists()
