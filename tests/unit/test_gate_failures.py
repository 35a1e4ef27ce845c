"""`replay.gate_failures`: a day whose run only a blocking asset check stopped is told apart
from a day whose run failed for any other reason (real in-process Dagster runs)."""

import dagster as dg

from dagster_project.replay import gate_failures


@dg.asset
def raw() -> int:
    return 0


@dg.asset_check(asset=raw, blocking=True)
def gate() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="0 rows, at least 1 expected")


@dg.asset_check(asset=raw)
def advisory() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="an ERROR check that does not block")


@dg.asset(deps=[raw])
def downstream() -> int:
    return 1


@dg.asset
def broken() -> int:
    raise RuntimeError("not a gate")


def test_a_run_stopped_by_a_blocking_check_names_the_asset_check_and_why():
    run = dg.materialize([raw, gate, downstream], raise_on_error=False)
    assert not run.success
    assert gate_failures(run) == "raw: gate (0 rows, at least 1 expected)"


def test_failed_checks_that_do_not_block_are_not_named():
    run = dg.materialize([raw, gate, advisory, downstream], raise_on_error=False)
    assert gate_failures(run) == "raw: gate (0 rows, at least 1 expected)"


def test_any_other_failure_is_not_a_gate():
    assert gate_failures(dg.materialize([broken], raise_on_error=False)) is None
    both = dg.materialize([raw, gate, downstream, broken], raise_on_error=False)
    assert gate_failures(both) is None


def test_a_successful_run_has_no_gate_failures():
    assert gate_failures(dg.materialize([raw, downstream])) is None
