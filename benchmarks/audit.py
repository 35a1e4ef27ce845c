"""Dependency audit of the lock file with pip-audit, with an honest verdict.

pip-audit reports "No known vulnerabilities found" even when its vulnerability service could
not look a single package up (every dependency "skipped"). :func:`verdict` tells the three
outcomes apart: clean, vulnerable, or *not audited* (service unreachable, too many skipped).

``python -m benchmarks.audit [requirements.lock]`` (``make audit``) exits 0 (clean),
1 (known vulnerabilities) or 2 (no trustworthy result: says why).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLEAN, VULNERABLE, NOT_AUDITED = 0, 1, 2


@dataclass
class AuditResult:
    status: int
    summary: str
    vulnerable: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def verdict(report: dict[str, Any], max_skipped_share: float = 0.05) -> AuditResult:
    """Classify a pip-audit JSON report (``-f json``)."""
    deps = report.get("dependencies", [])
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in deps if d.get("skip_reason")]
    vulnerable = [
        f"{d['name']}=={d.get('version')}: "
        + ", ".join(
            f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})" for v in d["vulns"]
        )
        for d in deps
        if d.get("vulns")
    ]
    if vulnerable:
        return AuditResult(
            VULNERABLE,
            f"{len(vulnerable)} of {len(deps)} pinned packages have known vulnerabilities",
            vulnerable,
            skipped,
        )
    if not deps or len(skipped) > max_skipped_share * len(deps):
        return AuditResult(
            NOT_AUDITED,
            f"NOT AUDITED: the vulnerability service could not look up {len(skipped)} of "
            f"{len(deps)} packages (unreachable from here, or a package index without the "
            "JSON API); this is no evidence of a clean lock",
            vulnerable,
            skipped,
        )
    return AuditResult(
        CLEAN,
        f"no known vulnerabilities in {len(deps) - len(skipped)} audited packages"
        + (f" ({len(skipped)} skipped)" if skipped else ""),
        vulnerable,
        skipped,
    )


def run(lock: Path, service: str = "pypi", timeout_s: float = 600) -> AuditResult:
    """pip-audit over a pinned requirements file (no resolution, no install)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [
            sys.executable, "-m", "pip_audit", "-r", str(lock), "--no-deps", "--disable-pip",
            "--progress-spinner", "off", "-s", service, "-f", "json", "-o", str(out),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return AuditResult(NOT_AUDITED, f"NOT AUDITED: pip-audit ran over {timeout_s:.0f} s")
        if not out.exists() or not out.read_text().strip():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return AuditResult(
                NOT_AUDITED, f"NOT AUDITED: pip-audit failed (exit {proc.returncode}): {last}"
            )
        return verdict(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    lock = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "requirements.lock"
    result = run(lock)
    for line in result.vulnerable:
        print(f"  VULNERABLE {line}")
    for line in result.skipped[:10]:
        print(f"  skipped {line}")
    if len(result.skipped) > 10:
        print(f"  ... and {len(result.skipped) - 10} more skipped")
    print(f"pip-audit of {lock.name}: {result.summary}")
    return result.status


if __name__ == "__main__":
    sys.exit(main())
