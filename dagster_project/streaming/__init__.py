"""The departure stream: one feature definition for batch and live, event logs, window state and
the consumer (no Dagster)."""
