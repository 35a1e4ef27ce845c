"""Seconds from a recorded monitoring breach to the retraining run starting, with the Dagster
daemon running (what `make up` starts).

    .venv/bin/python benchmarks/retrain_latency.py [--repeats 3]

It starts `dagster dev` (webserver + daemon) on a fresh temporary state folder, records two
breached monitoring days as `prediction_quality` materializations (what monitoring writes), and
waits for `quality_breach_sensor`'s run: the figure is the run's start time minus the second
record's timestamp. The launched training run itself fails for lack of data; only its start is
measured. Repeats use later days so each is a new breach (run_key) past the 14-day cooldown.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _breach(instance: dg.DagsterInstance, day: str) -> float:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="prediction_quality",
            partition=day,
            metadata={
                "day": day,
                "judged": True,
                "breaches": dg.MetadataValue.json(["ROC AUC 0.600 below floor 0.65"]),
                "drift_errors": dg.MetadataValue.json([]),
            },
        )
    )
    return time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="retrain-latency-"))
    env = os.environ | {
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "true",
    }
    (home / "dagster_home").mkdir(parents=True)
    os.environ.update(env)
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    log = (home / "dagster_dev.log").open("wb")
    proc = subprocess.Popen(
        [
            str(bin_dir / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies = []
    try:
        instance = dg.DagsterInstance.get()
        time.sleep(20)  # webserver, code location and daemon up
        day = date(2013, 10, 1)
        for i in range(args.repeats):
            _breach(instance, str(day))
            recorded = _breach(instance, str(day + timedelta(days=1)))
            key = f"quality:{day}..{day + timedelta(days=1)}"
            deadline = time.time() + args.timeout
            started = None
            while time.time() < deadline and started is None:
                records = instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": key}))
                if records and records[0].start_time:
                    started = records[0].start_time
                time.sleep(0.5)
            if started is None:
                print(f"run {i + 1}: no run for {key} within {args.timeout:.0f}s (log {log.name})")
                return 1
            latencies.append(started - recorded)
            print(
                f"run {i + 1}: breach recorded -> retraining run started in {latencies[-1]:.1f} s"
            )
            day += timedelta(days=20)
        print(
            f"median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s "
            f"over {len(latencies)} breaches (sensor minimum interval 30 s)"
        )
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
