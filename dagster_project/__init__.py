"""Flight-delay MLOps platform: Dagster code location plus orchestration-free libraries in `lib/`."""
