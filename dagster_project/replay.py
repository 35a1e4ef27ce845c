"""The replay clock: a simulated "today" that walks through 2013.

Two clocks. ``intraday`` (the default): the clock advances in 5-minute steps; in each step the
events that happened (the day's schedule at its midnight, departures, hourly weather
observations) are published to the event stream and consumed into the online store, and the
flights whose prediction time falls in the step are scored through the endpoint, each on
exactly what was known then. At every local midnight the previous day is closed: its partition
is ingested (its outcomes, the labels, are now known), its predictions are judged and compared
with the offline store (`feature_skew`), and the retraining sensors run. ``daily`` (the
original, faster for long replays): each simulated day D: D's partition is ingested and validated (its flights' outcomes are now
known), yesterday's predictions for D are judged (`prediction_quality`, partition D), the
scheduled flights of D+1 are scored through the deployed endpoint over HTTP (`scored_flights`,
partition D+1), and the retraining sensors are evaluated; a run they request is executed
(retrain -> promotion gate -> redeploy). Every step is a Dagster run on daily partitions, so the
UI shows them and any day can be re-run there.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx

from dagster_project.defs.run_config import intraday_day_run_config, retrain_run_config
from dagster_project.defs.sensors import sensors as retrain_sensors
from dagster_project.features import engineering
from dagster_project.monitoring import retraining
from dagster_project.orchestration.partitions import range_tags
from dagster_project.orchestration.resources import resolved
from dagster_project.platform import names
from dagster_project.platform.settings import TIMEZONE, Paths
from dagster_project.serving import scoring
from dagster_project.streaming import events
from dagster_project.training import promotion, tracking


class ReplayError(RuntimeError):
    pass


@dataclass
class Retrain:
    day: str
    trigger: str
    reason: str
    run_id: str
    success: bool
    breach_to_start_s: float
    outcome: str = ""  # the promotion gate's: promoted, rejected or shadow (a candidate now)


CLOCKS = ("intraday", "daily")
STEP = timedelta(minutes=5)
# The first day's clock starts this long before its first prediction time, so the stream's
# windows (180 minutes) hold what the offline tables hold when scoring starts
PRIMING = timedelta(hours=3, minutes=15)
# What the intraday clock leaves to itself in the daily loop: scoring, publishing, consuming
INTRADAY_SKIP = ("scored_flights", "stream_events", "live_features")


@dataclass
class IntradayDay:
    """One simulated day of the intraday clock."""

    day: str
    steps: int = 0
    events: int = 0
    scored: int = 0
    fallbacks: int = 0
    stream_seconds: float = 0.0  # publishing and consuming
    scoring_seconds: float = 0.0
    close_seconds: float = 0.0  # the daily loop at its midnight (ingest, judge, skew, sensors)
    skew_cells: int | None = None
    skew_differing: int | None = None

    @property
    def seconds(self) -> float:
        return self.stream_seconds + self.scoring_seconds + self.close_seconds


@dataclass
class ReplayResult:
    days: int = 0
    retrains: list[Retrain] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""
    last_auc: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # the report's headline numbers
    clock: str = "daily"
    intraday: list[IntradayDay] = field(default_factory=list)
    # days whose run a blocking data-quality check stopped (day -> the failed checks): the
    # replay goes on past them, as a Dagster backfill goes on past a failed partition
    blocked: dict[str, str] = field(default_factory=dict)
    # the candidate reviews that concluded (promoted or rejected), as their metadata
    reviews: list[dict[str, Any]] = field(default_factory=list)


def run_job(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    *,
    partition: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
    log_level: str = "WARNING",
    skip: Sequence[str] = (),
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of ``job`` that reports failure in its result instead of raising;
    ``skip`` leaves assets out of the job's selection; ``run_id`` lets a caller follow the
    run's events (``instance.add_event_listener``) while it runs."""
    job_def = defs.get_job_def(job)
    selection = None
    if skip:
        keys = job_def.asset_layer.executable_asset_keys
        selection = [k for k in keys if k.to_user_string() not in skip]
    return job_def.execute_in_process(
        instance=instance,
        partition_key=partition,
        asset_selection=selection,
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}}
        | (run_config or {}),
        raise_on_error=False,
        run_id=run_id,
    )


def _require(result: dg.ExecuteInProcessResult, what: str) -> None:
    if result.success:
        return
    messages = [e.message for e in result.all_events if e.is_step_failure and e.message is not None]
    raise ReplayError(f"{what} failed (run {result.run_id}): {' | '.join(messages)[:1500]}")


def gate_failures(run: dg.ExecuteInProcessResult) -> str | None:
    """Why ``run`` failed, if only blocking asset checks failed it (each as ``asset: check
    (description)``); None when it succeeded or failed for another reason."""
    if run.success:
        return None
    failures = [e for e in run.all_events if e.is_step_failure]
    blocked = [
        e
        for e in failures
        if e.step_failure_data is not None
        and e.step_failure_data.error is not None
        and "blocking asset check" in e.step_failure_data.error.message
    ]
    if not failures or len(blocked) != len(failures):
        return None
    # Dagster's failure names each blocking check that stopped the step, one "asset: check" a
    # line; the failed checks that do not block (a day's quality floor) are left out
    named = {
        line.strip()
        for e in blocked
        for line in e.step_failure_data.error.message.splitlines()[1:]  # type: ignore[union-attr]
    }
    failed = [
        f"{key}" + (f" ({c.description})" if c.description else "")
        for c in run.get_asset_check_evaluations()
        if not c.passed
        and c.severity == dg.AssetCheckSeverity.ERROR
        and (key := f"{c.asset_key.to_user_string()}: {c.check_name}") in named
    ]
    return "; ".join(failed) or "a blocking asset check failed"


def bootstrap(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    paths: Paths,
    start: date,
    policy: retraining.RetrainPolicy,
    trials: int,
    say: Callable[[str], None],
    replay_id: str | None = None,
    eve_loop: bool = True,
) -> str:
    """Before the first day: the history up to the day before ``start`` is ingested and, if
    there is no champion yet, a first model is trained on the policy's window and deployed.
    The champion the replay starts with is frozen as the registry's `baseline`: the shadow
    every monitored day scores with. Returns its version."""
    replay_tags = {retraining.TAG_REPLAY: replay_id} if replay_id else {}
    eve = start - timedelta(days=1)
    first = max(date(2013, 1, 1), start - timedelta(days=policy.window_days))
    if eve - first < timedelta(days=1):
        raise ReplayError(f"the replay must start after 2013-01-02 (history needed), not {start}")
    say(f"bootstrap: ingesting {first}..{eve - timedelta(days=1)}")
    _require(
        run_job(
            defs,
            "ingest_features_job",
            instance,
            tags=range_tags(str(first), str(eve - timedelta(days=1))) | replay_tags,
        ),
        "bootstrap ingestion",
    )
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    if registry.by_alias(names.CHAMPION) is None:
        last = eve - timedelta(days=1)
        say(f"bootstrap: training the first champion on {first}..{last}")
        config = retrain_run_config(
            retraining.Trigger("bootstrap", str(last), ""),
            dataclasses.replace(policy, n_trials=trials),
        )
        tags = {
            retraining.TAG_TRIGGER: "replay_bootstrap",
            retraining.TAG_REASON: "first model",
            retraining.TAG_DAY: str(last),
        } | replay_tags
        _require(run_job(defs, "training_job", instance, run_config=config, tags=tags), "bootstrap")
    champion = registry.by_alias(names.CHAMPION)
    if champion is None:
        raise ReplayError("no champion after the bootstrap: the gate rejected the first model")
    registry.set_alias(names.BASELINE, champion.version)
    say(f"bootstrap: v{champion.version} is the frozen baseline the shadow scores with")
    _require(run_job(defs, "deploy_job", instance, tags=replay_tags), "deploying the champion")
    if eve_loop:  # the eve of the first day: ingest it and score the first day's flights
        _require(
            run_job(defs, "daily_loop_job", instance, partition=str(eve), tags=replay_tags),
            f"day {eve}",
        )
    return champion.version


def evaluate_sensors(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursors: dict[str, str | None],
    sensors: Sequence[dg.SensorDefinition] = retrain_sensors,
    replay_id: str | None = None,
) -> list[Retrain]:
    """One tick of each retraining sensor, in process; a requested run is executed right away
    (a run_key that already ran is skipped, as the daemon would) and tagged with the replay."""
    done = []
    resources = {"monitor": resolved(defs, "monitor")}
    for sensor in sensors:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursors.get(sensor.name),
            resources=resources,
            sensor_name=sensor.name,
        )
        result = sensor(context)
        if not isinstance(result, dg.SensorResult):
            continue
        if result.cursor is not None:
            cursors[sensor.name] = result.cursor
        for request in result.run_requests or []:
            key = request.run_key or ""
            if instance.get_run_records(dg.RunsFilter(tags={"dagster/run_key": key}), limit=1):
                continue
            tags = dict(request.tags) | {"dagster/run_key": key, "dagster/sensor_name": sensor.name}
            if replay_id:
                tags[retraining.TAG_REPLAY] = replay_id
            started = time.time()
            config = dict(request.run_config)
            # A rejection fails the run by design; the replay reports the outcome itself.
            run = run_job(
                defs, "training_job", instance, run_config=config, tags=tags, log_level="CRITICAL"
            )
            record = instance.get_run_record_by_id(run.run_id)
            start_time = record.start_time if record and record.start_time else started
            done.append(
                Retrain(
                    day=tags.get(retraining.TAG_DAY, ""),
                    trigger=sensor.name,
                    reason=tags.get(retraining.TAG_REASON, ""),
                    run_id=run.run_id,
                    success=run.success,
                    breach_to_start_s=start_time
                    - float(tags.get(retraining.TAG_BREACH_AT, started)),
                    outcome=_gate_outcome(run),
                )
            )
    return done


GATE_WORDS = {
    "promoted": "promoted",
    "rejected": "rejected by the gate",
    "shadow": "passed the gate: the candidate, scored in shadow before a review",
}


def after_day(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursors: dict[str, str | None],
    replay_id: str | None,
    day: str,
    run: dg.ExecuteInProcessResult,
    result: ReplayResult,
    write: Callable[[str], None],
) -> bool:
    """What follows a day's run on either clock. A run only blocking data-quality checks stopped
    is recorded as blocked (False: the replay goes on, as a backfill goes on past a failed
    partition); any other failure raises :class:`ReplayError`. Otherwise the candidate review's
    verdict where one came, then a tick of the retraining sensors (their runs executed)."""
    why = gate_failures(run)
    if why is not None:
        result.blocked[day] = why
        write(f"[replay] {day}: BLOCKED by a data-quality gate: {why[:300]}")
        return False
    _require(run, f"day {day}")
    review = _review(run)
    if review:
        result.reviews.append(review)
        write(f"[replay] {day}: {review['summary']}")
    for retrain in evaluate_sensors(defs, instance, cursors, replay_id=replay_id):
        result.retrains.append(retrain)
        write(
            f"[replay] {day}: retrain by {retrain.trigger} ({retrain.reason}) -> "
            f"{GATE_WORDS.get(retrain.outcome, 'not promoted')}"
        )
    return True


class Producer:
    """The data set's events (each day's schedule at its midnight, departures, hourly weather)
    published to the stream as the clock passes them, then a tick at the clock's time."""

    def __init__(self, log: Any):
        self.log = log
        self.loaded: set[date] = set()
        self.pending: list[Any] = []  # loaded, not yet published, in event-time order

    def load(self, day: date) -> None:
        if day in self.loaded or not date(2013, 1, 1) <= day <= date(2013, 12, 31):
            return
        self.loaded.add(day)
        self.pending = events.in_order(self.pending, events.day_events(day))

    def publish_until(self, at: datetime) -> int:
        """Publish every loaded event up to ``at`` and a tick at ``at``; returns the events."""
        cut = at.timestamp()
        n = next((i for i, e in enumerate(self.pending) if e.epoch > cut), len(self.pending))
        batch, self.pending = self.pending[:n], self.pending[n:]
        self.log.publish([*batch, events.tick(at)])
        return n


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TIMEZONE)).astimezone(UTC)


def _skew_meta(run: dg.ExecuteInProcessResult) -> tuple[int | None, int | None]:
    for event in run.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("feature_skew"):
            meta = event.materialization.metadata
            return int(meta["cells"].value), int(meta["cells_differing"].value)  # type: ignore[arg-type]
    return None, None


def intraday_clock(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    paths: Paths,
    start: date,
    end: date,
    result: ReplayResult,
    tags: dict[str, str],
    *,
    land: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    """The intraday clock over ``start``..``end`` (the champion already deployed, the history
    before ``start`` ingested): 5-minute steps of publish, consume and score; at each local
    midnight the day before is closed (ingested, judged, compared with the offline store) and
    the retraining sensors run."""
    from tqdm import tqdm

    stream = resolved(defs, "stream")
    stream.reset()
    client = resolved(defs, "feast").client()
    consumer = stream.consumer(client.push)
    producer = Producer(stream.log())
    endpoint = resolved(defs, "deployer").endpoint()
    registry = tracking.Registry(paths.mlflow_tracking_uri)
    cursors: dict[str, str | None] = {}
    skip = INTRADAY_SKIP if land else (*INTRADAY_SKIP, "landed_daily_files")

    def label() -> str:
        champion = registry.by_alias(names.CHAMPION)
        return champion.prediction_time if champion else "day_start"

    when = label()
    flights: list[tuple[int, dict[str, Any]]] = []  # (sched epoch, request), by departure
    for day in [start + timedelta(days=i) for i in range((end - start).days + 1)]:
        for f in scoring.scheduled_flights(day):
            local = datetime.fromisoformat(f["scheduled_departure"]).replace(
                tzinfo=ZoneInfo(TIMEZONE)
            )
            flights.append((engineering.epoch_seconds(local), f))
    flights.sort(key=lambda x: x[0])
    # from the first prediction time or the first day's midnight (which closes the eve),
    # whichever comes first
    hop = int(STEP.total_seconds())
    first = min(
        engineering.as_of_epoch(when, flights[0][0]) if flights else 2**62,
        int(_local_midnight(start).timestamp()),
    )
    clock = datetime.fromtimestamp(first - first % hop, UTC) - STEP
    stop = _local_midnight(end + timedelta(days=1))
    producer.load(start - timedelta(days=1))
    next_flight = 0
    days: dict[str, IntradayDay] = {}
    steps = int((stop - clock) / STEP) + 1
    bar = tqdm(total=steps, desc="intraday", unit="step", disable=not progress)
    http = httpx.Client(timeout=120)
    while clock <= stop:
        local_day = clock.astimezone(ZoneInfo(TIMEZONE)).date()
        stats = days.setdefault(str(local_day), IntradayDay(str(local_day)))
        for d in (local_day, local_day + timedelta(days=1)):
            producer.load(d)
        began = time.perf_counter()
        stats.events += producer.publish_until(clock)
        while consumer.step():
            pass
        stats.stream_seconds += time.perf_counter() - began
        stats.steps += 1
        if clock == _local_midnight(local_day) and local_day >= start:
            closed = local_day - timedelta(days=1)
            began = time.perf_counter()
            run = run_job(
                defs,
                "daily_loop_job",
                instance,
                partition=str(closed),
                skip=skip,
                run_config=intraday_day_run_config(),
                tags=tags,
            )
            replay_id = tags.get(retraining.TAG_REPLAY)
            # a blocked day: the clock goes on, the next day is scored and closed
            if after_day(defs, instance, cursors, replay_id, str(closed), run, result, bar.write):
                when = label()
                closed_stats = days.setdefault(str(closed), IntradayDay(str(closed)))
                closed_stats.close_seconds += time.perf_counter() - began
                closed_stats.skew_cells, closed_stats.skew_differing = _skew_meta(run)
                meta = _quality_meta(run)
                result.last_auc = meta.get("roc_auc", result.last_auc)
                if closed >= start:
                    result.days += 1
                    bar.write(_day_line(closed_stats))
        due = []
        horizon = (clock + STEP).timestamp()
        while next_flight < len(flights) and (
            engineering.as_of_epoch(when, flights[next_flight][0]) < horizon
        ):
            due.append(flights[next_flight][1])
            next_flight += 1
        if due:
            began = time.perf_counter()
            predictions = scoring.score(endpoint.url, due, endpoint.token, client=http)
            stats.scoring_seconds += time.perf_counter() - began
            stats.scored += len(predictions)
            stats.fallbacks += sum(bool(p["fallback"]) for p in predictions)
        bar.update(1)
        clock += STEP
    bar.close()
    http.close()
    result.intraday = [d for k, d in sorted(days.items()) if start <= date.fromisoformat(k) <= end]


def score_when_due(
    defs: dg.Definitions, requests: list[dict[str, Any]], day: date, prediction_time: str
) -> list[dict[str, Any]]:
    """Score ``requests`` (flights of ``day``) each at its prediction time, as the intraday
    clock does: the stream is replayed from the day before up to each flight's as-of time,
    consumed into the online store, then the flight is sent to the endpoint. What the demo's
    last step does for a lead-time model (a day-start one needs no stream)."""
    stream = resolved(defs, "stream")
    stream.reset()
    consumer = stream.consumer(resolved(defs, "feast").client().push)
    producer = Producer(stream.log())
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        producer.load(d)
    endpoint = resolved(defs, "deployer").endpoint()
    hop = int(STEP.total_seconds())
    out: dict[str, dict[str, Any]] = {}
    due = sorted(
        requests,
        key=lambda r: engineering.as_of_epoch(
            prediction_time,
            engineering.epoch_seconds(datetime.fromisoformat(r["scheduled_departure"])),
        ),
    )
    for request in due:
        sched = engineering.epoch_seconds(datetime.fromisoformat(request["scheduled_departure"]))
        as_of = engineering.as_of_epoch(prediction_time, sched)
        producer.publish_until(datetime.fromtimestamp(as_of - as_of % hop, UTC))
        while consumer.step():
            pass
        [prediction] = scoring.score(endpoint.url, [request], endpoint.token)
        out[request["flight_id"]] = prediction
    return [out[r["flight_id"]] for r in requests]


def _day_line(d: IntradayDay) -> str:
    skew = (
        f"skew {d.skew_differing} of {d.skew_cells} cells" if d.skew_cells is not None else "skew -"
    )
    return (
        f"[replay] {d.day}: {d.scored} flights scored ({d.fallbacks} with a fallback), "
        f"{d.events} events in {d.steps} steps; {d.seconds:.1f} s (stream {d.stream_seconds:.1f}, "
        f"scoring {d.scoring_seconds:.1f}, close {d.close_seconds:.1f}); {skew}"
    )


def replay(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    paths: Paths,
    start: date,
    end: date,
    *,
    trials: int = 4,
    land: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
    clock: str = "intraday",
) -> ReplayResult:
    """Walk ``start``..``end`` on the ``clock`` (see the module); returns what happened. The
    endpoint is stopped at the end if the replay started it. ``land=False`` reads the days'
    files already in the landing zone (your own data) instead of copying them from the data
    set."""
    from tqdm import tqdm

    if end < start:
        raise ReplayError(f"nothing to replay: {start} is after {end}")
    if clock not in CLOCKS:
        raise ReplayError(f"clock must be one of {CLOCKS}, not {clock!r}")
    monitor = resolved(defs, "monitor")
    policy = monitor.policy()
    endpoint = resolved(defs, "deployer").endpoint()
    already_up = endpoint.is_up()
    result = ReplayResult(clock=clock)
    began = time.perf_counter()
    cursors: dict[str, str | None] = {}
    started_at = datetime.now(UTC)
    replay_id = f"{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    tags = {retraining.TAG_REPLAY: replay_id}
    try:
        baseline = bootstrap(
            defs,
            instance,
            paths,
            start,
            policy,
            trials,
            say,
            replay_id,
            eve_loop=clock == "daily",
        )
        retraining.write_replay(
            monitor.replay_url,
            retraining.ReplayRecord(
                replay_id=replay_id,
                start=str(start),
                end=str(end),
                started_at=started_at.isoformat(timespec="seconds"),
                baseline_version=baseline,
                drift_mode=monitor.drift_mode,
            ),
        )
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        if clock == "intraday":
            intraday_clock(
                defs, instance, paths, start, end, result, tags, land=land, progress=progress
            )
            days = []
        bar = tqdm(days, desc="replay", unit="day", disable=not progress or not days)
        for day in bar:
            today = str(day)
            skip = () if land else ("landed_daily_files",)
            run = run_job(defs, "daily_loop_job", instance, partition=today, skip=skip, tags=tags)
            if not after_day(defs, instance, cursors, replay_id, today, run, result, bar.write):
                continue  # blocked: what depends on the gated table did not run; on to the next
            meta = _quality_meta(run)
            result.last_auc = meta.get("roc_auc", result.last_auc)
            bar.set_postfix(
                auc=f"{result.last_auc:.3f}" if result.last_auc else "-",
                model=f"v{meta.get('model_version', '?')}",
                retrains=len(result.retrains),
            )
            result.days += 1
        report = run_job(defs, "report_job", instance, tags=tags)
        _require(report, "monitoring report")
        result.figures = _report_figures(report)
        result.report = monitor.url("report.html")
    finally:
        if not already_up and endpoint.stop():
            say(f"[replay] stopped the endpoint it started ({endpoint.url})")
    result.seconds = time.perf_counter() - began
    return result


def _gate_outcome(run: dg.ExecuteInProcessResult) -> str:
    """The promotion gate's decision in a training run ("" when the gate did not run)."""
    for evaluation in run.get_asset_check_evaluations():
        if evaluation.check_name == "promotion_gate" and "decision" in evaluation.metadata:
            return str(evaluation.metadata["decision"].value)
    return ""


def _review(run: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The candidate review's decision in a day's run, where it concluded (promoted or
    rejected, or the champion rolled back; {} while the candidate is in shadow or there is
    none)."""
    for event in run.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("candidate_review"):
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            decided = ("promoted", "rejected", promotion.ROLLED_BACK)
            return meta if meta.get("decision") in decided else {}
    return {}


def _quality_meta(run: dg.ExecuteInProcessResult) -> dict[str, Any]:
    for event in run.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("prediction_quality"):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def _report_figures(run: dg.ExecuteInProcessResult) -> dict[str, Any]:
    for event in run.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "figures" in meta and isinstance(meta["figures"].value, dict):
            return dict(meta["figures"].value)
    return {}
