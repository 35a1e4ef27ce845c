"""Schemathesis, every check, against an ASGI app's own /openapi.json (seeded, bounded)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from tests.paths import REPO_ROOT


def all_checks() -> list[Any]:
    load_all_checks()
    return list(CHECKS.get_all())


def run_contract(app: Any, examples_per_operation: int = 40) -> dict[str, Any]:
    """Generate positive and negative cases for every operation, call the app in process and
    run every schemathesis check on each response. Returns counts and the failures found
    (operation, check message, the request), at most one per operation and mode."""
    # the project's schemathesis.toml, as `st run` in the checkout reads it (its one exception)
    config = SchemathesisConfig.from_path(REPO_ROOT / "schemathesis.toml")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    checks = all_checks()
    report: dict[str, Any] = {"cases": 0, "operations": 0, "failures": []}
    for result in schema.get_all_operations():
        operation = result.ok()
        report["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases, found = _probe(operation, mode, checks, examples_per_operation)
            report["cases"] += cases
            report["failures"] += found
    return report


def _probe(
    operation: Any, mode: GenerationMode, checks: list[Any], examples: int
) -> tuple[int, list[str]]:
    found: list[str] = []
    counted = [0]

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def probe(case: Any) -> None:
        counted[0] += 1
        try:
            case.call_and_validate(checks=checks)
        # a check failure is a FailureGroup (or one Failure); an app error propagates
        except (Exception, BaseExceptionGroup) as exc:
            if not found:
                found.append(
                    f"{operation.label} [{mode.value}]: {type(exc).__name__}: {_text(exc)}"
                )

    try:
        probe()
    except Unsatisfiable:  # no invalid request exists (an operation without parameters)
        if mode is GenerationMode.POSITIVE:
            raise
    return counted[0], found


def _text(exc: BaseException) -> str:
    parts = [str(exc)]
    if isinstance(exc, BaseExceptionGroup):
        parts += [str(e) for e in exc.exceptions]
    return "\n".join(parts)[:3000]
