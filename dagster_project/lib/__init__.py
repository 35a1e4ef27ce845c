"""Plain Python modules (no Dagster imports): data loading, validation, features, Feast access."""
