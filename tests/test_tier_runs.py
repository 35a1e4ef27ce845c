"""The CLI's view of a run on the tier's Dagster (``dagster_project/cli/tier_runs.py``): what it
reads back from the event log answers as the in-process result does, and a tier that is not
there is a clear error. The container tier's test launches real runs through it."""

from __future__ import annotations

import dagster as dg
import pytest

from dagster_project.cli import tier_runs
from dagster_project.cli.output import _failures
from tests.conftest import free_port


@dg.asset
def numbers() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset_check(asset=numbers)
def enough_numbers() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="3 rows, 5 wanted")


@dg.asset(deps=[numbers])
def broken() -> None:
    raise ValueError("column 'x' is missing")


def test_a_followed_run_reads_back_as_the_in_process_result():
    defs = dg.Definitions(assets=[numbers, broken], asset_checks=[enough_numbers])
    job = defs.resolve_implicit_global_asset_job_def()
    seen: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        followed = tier_runs.follow(
            instance, result.run_id, lambda r: seen.append(r.dagster_event.event_type_value)
        )
    assert followed.run_id == result.run_id
    assert followed.success is False
    assert followed.status == dg.DagsterRunStatus.FAILURE
    assert "STEP_FAILURE" in seen
    assert "PIPELINE_FAILURE" in seen  # the run-failure event keeps its legacy value
    (mat,) = followed.asset_materializations_for_node("numbers")
    assert mat.metadata["rows"].value == 3
    assert [e.materialization.asset_key for e in followed.get_asset_materialization_events()] == [
        dg.AssetKey("numbers")
    ]
    (check,) = followed.get_asset_check_evaluations()
    assert check.passed is False
    # the CLI's failure lines come out the same either way
    assert _failures(followed) == _failures(result)
    assert any("column 'x' is missing" in line for line in _failures(followed))


def test_a_tier_that_is_not_up_is_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(tier_runs.TierRunError, match="is the tier up"):
        tier_runs.launch(url, "ingest_features_job")
    with pytest.raises(tier_runs.TierRunError, match="not an http"):
        tier_runs.client("dagster-webserver")
