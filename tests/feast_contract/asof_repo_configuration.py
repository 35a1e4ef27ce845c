"""``FULL_REPO_CONFIGS_MODULE`` for Feast's universal tests: the ASOF JOIN store plugged in the
way Feast documents for offline-store plugin authors. Imported by Feast's test suite from a Feast
checkout (see test_contract.py), never by ours directly. Its folder goes on PYTHONPATH after
Feast's `sdk/python` (both repositories have a top-level `tests` package)."""

from dagster_project.features.offline_store import AsofDuckDBOfflineStoreConfig

try:  # Feast >= 0.66 keeps the universal repos under tests/universal
    from tests.universal.feature_repos.duckdb_repo_configuration import DuckDBDataSourceCreator
except ImportError:  # earlier releases
    from tests.integration.feature_repos.universal.data_sources.file import (  # type: ignore
        DuckDBDataSourceCreator,
    )


class AsofDuckDBDataSourceCreator(DuckDBDataSourceCreator):
    def create_offline_store_config(self):
        self.duckdb_offline_store_config = AsofDuckDBOfflineStoreConfig()
        return self.duckdb_offline_store_config


AVAILABLE_OFFLINE_STORES = [("local", AsofDuckDBDataSourceCreator)]
AVAILABLE_ONLINE_STORES = {"sqlite": ({"type": "sqlite"}, None)}
