"""Tiers and their settings, server-tier setup, atomic storage, compute classes and metering, and
the names the platform shares (no Dagster)."""
