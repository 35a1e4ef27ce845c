"""The server tiers' prediction log (a PostgreSQL table): several serving replicas append at
once and monitoring reads every record back, whole, per scheduled day; a replica killed
mid-batch leaves none of that batch's records (a batch is one transaction)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dagster_project.platform import settings
from dagster_project.serving.prediction_log import PostgresPredictionLog, open_log
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

WRITERS, BATCHES, BATCH = 6, 30, 40
DAYS = ("2013-08-01", "2013-08-02")
PAD = 700

WRITER = """
import sys
from dagster_project.serving.prediction_log import open_log
url, writer, batches, size, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
log = open_log(url)
print("ready", flush=True)
sys.stdin.readline()  # every writer starts at the same moment
for b in range(batches):
    log.append([
        {"scheduled_date": ("2013-08-01", "2013-08-02")[(b + j) % 2],
         "request_id": f"{writer}-{b}-{j}", "writer": writer, "batch": b, "pad": "x" * pad}
        for j in range(size)
    ])
print("done", flush=True)
"""


def _writer(url: str, name: str, batches: int, size: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, name, str(batches), str(size), str(PAD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _records(url: str) -> list[dict]:
    log = open_log(url)
    records = [r for day in DAYS for r in log.read_day(day)]
    for r in records:  # whole: every field, the padding intact, filed under its own day
        assert set(r) == {"scheduled_date", "request_id", "writer", "batch", "pad"}, r
        assert r["pad"] == "x" * PAD
    for day in DAYS:
        assert all(r["scheduled_date"] == day for r in log.read_day(day))
    return records


def test_concurrent_replicas_lose_and_tear_no_record(server_tier):
    url = settings.paths().prediction_log_url
    assert url.startswith("postgresql://")
    assert "serving" in url
    assert isinstance(open_log(url), PostgresPredictionLog)
    procs = [_writer(url, f"w{i}", BATCHES, BATCH) for i in range(WRITERS)]
    for p in procs:  # release them together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=300) == 0
    records = _records(url)
    ids = [r["request_id"] for r in records]
    assert len(ids) == WRITERS * BATCHES * BATCH  # none lost
    assert len(set(ids)) == len(ids)  # none doubled
    expected = {
        f"w{i}-{b}-{j}" for i in range(WRITERS) for b in range(BATCHES) for j in range(BATCH)
    }
    assert set(ids) == expected
    # each writer's batches are read back in the order it wrote them
    for i in range(WRITERS):
        mine = [r["batch"] for r in records if r["writer"] == f"w{i}"]
        per_day = [
            [r["batch"] for r in records if r["writer"] == f"w{i}" and r["scheduled_date"] == d]
            for d in DAYS
        ]
        assert all(seq == sorted(seq) for seq in per_day), per_day
        assert len(mine) == BATCHES * BATCH


def test_a_replica_killed_mid_batch_leaves_only_whole_batches(server_tier):
    url = settings.paths().prediction_log_url
    proc = _writer(url, "killed", 10_000, 500)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    log = open_log(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(log.read_day(DAYS[0])) < 1000:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    records = _records(url)
    assert records, "the writer was killed before it wrote anything"
    by_batch: dict[int, int] = {}
    for r in records:
        by_batch[r["batch"]] = by_batch.get(r["batch"], 0) + 1
    assert all(n == 500 for n in by_batch.values()), by_batch  # all of a batch, or none of it
    # a restarted replica appends after whatever the kill left
    open_log(url).append(
        [
            {
                "scheduled_date": DAYS[0],
                "request_id": "after",
                "writer": "r",
                "batch": -1,
                "pad": "x" * PAD,
            }
        ]
    )
    assert open_log(url).read_day(DAYS[0])[-1]["request_id"] == "after"
