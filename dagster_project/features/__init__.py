"""Feature engineering and the Feast feature store: definitions, config, retrieval (no Dagster)."""
