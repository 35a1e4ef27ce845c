"""The Dagster code location: wiring only. The tier (MLOPS_PROFILE) picks the resources."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets import features, ingestion, validation
from dagster_project.io_managers import LakeIOManager
from dagster_project.jobs import jobs
from dagster_project.lib import settings
from dagster_project.resources import FeastResource, LandingZone, ValidationGate


def build_resources(paths: settings.Paths) -> dict[str, object]:
    """Resources for the local tier; every location derives from ``paths`` (tests pass a temp dir)."""
    return {
        "landing": LandingZone(url=paths.landing_url),
        "gate": ValidationGate(gx_dir=str(paths.gx_dir), quarantine_url=paths.quarantine_url),
        "feast": FeastResource(
            repo_path=str(settings.FEATURE_REPO),
            config_template=str(settings.FEATURE_REPO / "feature_store.yaml"),
            state_dir=str(paths.feast_dir),
            features_url=paths.features_url,
        ),
        "io_manager": LakeIOManager(base_url=paths.lake_url),
    }


all_assets = [*ingestion.assets, *validation.assets, *features.assets]


def build_definitions(paths: settings.Paths | None = None) -> dg.Definitions:
    settings.profile()  # fail early on an unknown tier
    return dg.Definitions(
        assets=all_assets, jobs=jobs, resources=build_resources(paths or settings.paths())
    )


defs = build_definitions()
