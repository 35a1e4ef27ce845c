"""Dagster glue shared by the definitions: resources, the lake IO manager, partitions, asset
metadata, compute-class tags, run config and the replay driver."""
