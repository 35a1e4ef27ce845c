"""Flight-delay MLOps platform: domain packages of plain Python (no Dagster) and their thin Dagster
definitions under ``defs/``, wired by ``definitions.py``. See docs/architecture.md."""
