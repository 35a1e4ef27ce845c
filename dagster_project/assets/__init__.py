"""Thin Dagster assets; the work happens in ``dagster_project.lib``."""
