"""The Feast repository for the ``feast`` CLI: ``feast -c feature_repo apply`` picks up the
module-level objects below. They are the platform's own (:mod:`dagster_project.features.feast_objects`),
with offline sources in the current tier's lake (``$MLOPS_HOME/lake/features`` on ``local``).
This module imports the product; the product never imports it.

The globals are generated from :func:`build` (one per object, named ``<name>_<kind>``), so a
view, entity or service added there reaches the CLI without an edit here.
"""

from __future__ import annotations

from dagster_project.features.feast_objects import build
from dagster_project.platform import settings

# Module-level objects for the `feast` CLI (it only looks at module globals).
_objects = build(settings.paths().features_url)
for _kind, _group in (
    ("entity", _objects.entities),
    ("source", _objects.sources),
    ("view", _objects.views),
    ("on_demand_view", _objects.on_demand_views),
    ("service", _objects.services),
):
    for _obj in _group:
        globals()[f"{_obj.name}_{_kind}"] = _obj
