"""One GX context for the module's gate runs (a context takes a second to open)."""

from datetime import date
from pathlib import Path

import pytest

from dagster_project.ingestion import expectations, sources
from dagster_project.ingestion.gate import Gate

DAY = date(2013, 3, 5)


@pytest.fixture(scope="session")
def gate(tmp_path_factory) -> Gate:
    return Gate(Path(tmp_path_factory.mktemp("gx")))


@pytest.fixture(scope="session")
def known() -> dict[str, frozenset[str]]:
    return {
        "nyc_origins": expectations.NYC_ORIGINS,
        "airports": frozenset(sources.load_table("airports")["faa"])
        | expectations.TERRITORY_AIRPORTS,
        "airlines": frozenset(sources.load_table("airlines")["carrier"]),
    }


@pytest.fixture
def day_csv() -> str:
    """The real 2013-03-05 flights file as the landing writer writes it."""
    return sources.day_rows("flights", DAY).to_csv(index=False)


def rows(result, reason_part: str) -> list[int]:
    return [i for i, r in result.rejected.items() if isinstance(r, str) and reason_part in r]
