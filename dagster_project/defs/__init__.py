"""Dagster definitions, one module per asset group (plus jobs and sensors); thin wrappers over the
Dagster-free domain packages. ``dagster_project.definitions`` wires them to the tier's resources."""
