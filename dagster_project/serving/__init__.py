"""The HTTP prediction endpoint (FastAPI). Imports neither Dagster nor Airflow."""
