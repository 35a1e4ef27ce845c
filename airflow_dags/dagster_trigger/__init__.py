"""Trigger Dagster jobs from Airflow through Dagster's GraphQL API (no Dagster import).

``client`` is plain httpx and usable anywhere; ``airflow_task`` adapts it to a running Airflow
task (connection ``dagster_default``, run tags, task failure). DAG files import from here.
"""
