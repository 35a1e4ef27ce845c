"""Monitoring: quality and drift measures, the closed loop's retraining rules, plots and the HTML
report (no Dagster)."""
