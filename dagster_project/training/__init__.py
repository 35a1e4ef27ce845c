"""Training: preprocessing, model families, tuning, evaluation, the MLflow registry and the
promotion policy (no Dagster)."""
