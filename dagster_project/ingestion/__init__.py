"""Landing zone, data sources, cleaning and the validation gate (no Dagster)."""
