"""The Feast repository for the ``feast`` CLI: ``feast -c feature_repo apply`` picks up the
module-level objects below. They are the platform's own (:mod:`dagster_project.features.feast_objects`),
with offline sources in the current tier's lake (``$MLOPS_HOME/lake/features`` on ``local``).
This module imports the product; the product never imports it.
"""

from __future__ import annotations

from dagster_project.features.feast_objects import build
from dagster_project.platform import settings

# Module-level objects for the `feast` CLI (it only looks at module globals).
_objects = build(settings.paths().features_url)
origin_entity, carrier_entity, route_entity, plane_entity = _objects.entities
(
    origin_weather_source,
    carrier_delay_stats_source,
    route_delay_stats_source,
    plane_specs_source,
    origin_traffic_push,
) = _objects.sources
origin_weather, carrier_delay_stats, route_delay_stats, plane_specs, origin_traffic = _objects.views
(flight_request_time,) = _objects.on_demand_views
flight_delay_v1, origin_traffic_v1 = _objects.services
