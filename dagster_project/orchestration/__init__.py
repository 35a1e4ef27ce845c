"""Dagster glue shared by the definitions: resources, the lake IO manager, partitions, asset
metadata, compute-class tags and run config."""
