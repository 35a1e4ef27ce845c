"""The stream features on the local tier: the window edges of the one definition batch and live
share (:mod:`dagster_project.features.aggregates`), the weather's 3-hour rainfall, when a
boundary closes, batch/stream parity of every view on real days (in one batch and in many
small ones), exactly once across a consumer that dies between push and acknowledgement or
that is handed a duplicated burst, and malformed events."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dagster_project.features import aggregates, engineering
from dagster_project.streaming import consumer, event_log, events, window_state
from tests.stream_parity import (
    STREAM_VIEWS,
    assert_live_matches_batch,
    batch_tables,
    final_rows,
    live_tables,
    recorder,
    same_values,
)

TS = engineering.TS
DAYS = (date(2013, 7, 1), date(2013, 7, 2))  # rain on both; two weather hours missing on the 2nd
B = datetime(2013, 7, 1, 16, 0, tzinfo=UTC)  # a 5-minute boundary
MIN, SEC = timedelta(minutes=1), timedelta(seconds=1)


def _dep(
    i: str,
    at: datetime,
    delay: float,
    origin: str = "EWR",
    carrier: str = "UA",
    tailnum: str = "N1",
    day: str = "2013-07-01",
) -> events.Departure:
    return events.Departure(i, origin, at, delay, carrier, tailnum, day)


def _tables(deps: list[events.Departure], since: datetime, until: datetime) -> dict:
    """Every departure view's rows at the boundaries in ``(since, until]`` (no schedule)."""
    frame = window_state.departures_frame(deps)
    no_schedule = window_state.schedule_frame([])
    return aggregates.tables(frame, int(since.timestamp()), int(until.timestamp()), no_schedule)


TRAFFIC = (
    "origin_departures_60m",
    "origin_mean_dep_delay_60m",
    "origin_departures_180m",
    "origin_mean_dep_delay_180m",
)


def _rows(view: str, rows: list[tuple], features: tuple[str, ...] = ()) -> pd.DataFrame:
    """An expected table of ``view``: (key, time, *features) tuples."""
    v = aggregates.VIEWS[view]
    df = pd.DataFrame(rows, columns=[v.key, TS, *(features or v.features)])
    df[TS] = pd.to_datetime(df[TS], utc=True).astype("datetime64[ns, UTC]")
    types = {f: ("int64" if "departures" in f else "float64") for f in df.columns[2:]}
    return df.astype(types)


def _assert_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got[list(want.columns)].reset_index(drop=True)
    got[TS] = got[TS].astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(got, want, check_exact=True)


# --- the definition's window edges ------------------------------------------------------------


def test_an_event_at_a_boundary_counts_in_it_and_one_a_second_later_does_not():
    deps = [
        _dep("a", B - 180 * MIN, 100),  # exactly 180 min before b: outside (b - 180m, b]
        _dep("c", B - 180 * MIN + SEC, 50),
        _dep("d", B - 60 * MIN, 40),  # exactly 60 min before b: outside (b - 60m, b]
        _dep("e", B - 60 * MIN + SEC, 20),
        _dep("f", B, 10),  # at b: inside
        _dep("g", B + SEC, 1000),  # a second after b: the next boundary's
        _dep("j", B - 5 * 60 * MIN, 3, origin="JFK"),  # long gone by b
    ]
    got = _tables(deps, B - 5 * MIN, B + 5 * MIN)[aggregates.ORIGIN_TRAFFIC]
    b, b5 = B, B + 5 * MIN
    want = _rows(
        aggregates.ORIGIN_TRAFFIC,
        [
            ("EWR", b, 2, (20 + 10) / 2, 4, (50 + 40 + 20 + 10) / 4),
            ("JFK", b, 0, np.nan, 0, np.nan),
            # at b + 5m: e (b - 60m + 1s) left the hour, c (b - 180m + 1s) the three hours
            ("EWR", b5, 2, (10 + 1000) / 2, 4, (40 + 20 + 10 + 1000) / 4),
            ("JFK", b5, 0, np.nan, 0, np.nan),
        ],
        TRAFFIC,
    )
    _assert_table(got, want)
    # The boundary 5 minutes earlier still had a (exactly 180 min before b) in its 3 hours.
    earlier = _tables(deps, B - 10 * MIN, B - 5 * MIN)[aggregates.ORIGIN_TRAFFIC]
    ewr = earlier.set_index("origin").loc["EWR"]
    assert ewr["origin_departures_180m"] == 4  # a, c, d, e
    assert ewr["origin_mean_dep_delay_180m"] == (100 + 50 + 40 + 20) / 4


def test_carrier_rows_are_written_where_the_180_minute_window_gains_or_loses_a_departure():
    t = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)
    deps = [
        _dep("x1", t + 2 * MIN, 5),
        _dep("x2", t + 10 * MIN, 15),  # at a boundary: in it, and it leaves 180 min later
        _dep("y1", t + 31 * MIN, 7, carrier="AA", tailnum="N2"),
    ]
    got = _tables(deps, t, t + 4 * 60 * MIN)[aggregates.CARRIER_ORIGIN_TRAFFIC]
    want = _rows(
        aggregates.CARRIER_ORIGIN_TRAFFIC,
        [
            ("UA|EWR", t + 5 * MIN, 1, 5.0),
            ("UA|EWR", t + 10 * MIN, 2, 10.0),
            ("AA|EWR", t + 35 * MIN, 1, 7.0),
            ("UA|EWR", t + 185 * MIN, 1, 15.0),  # x1 left (12:02 is outside (12:05, 15:05])
            ("UA|EWR", t + 190 * MIN, 0, np.nan),  # x2 left exactly 180 minutes later
            ("AA|EWR", t + 215 * MIN, 0, np.nan),
        ],
    )
    _assert_table(got, want)
    # Live, the same rows come in pieces: only the boundaries in (since, until].
    part = _tables(deps, t + 5 * MIN, t + 185 * MIN)[aggregates.CARRIER_ORIGIN_TRAFFIC]
    _assert_table(part, want.iloc[1:4].reset_index(drop=True))
    # ... and the dense origin view agrees with the sparse one at 15:05.
    origin = _tables(deps, t + 180 * MIN, t + 185 * MIN)[aggregates.ORIGIN_TRAFFIC]
    assert origin["origin_departures_180m"].tolist() == [2]


def test_plane_today_counts_the_aircrafts_departures_of_its_day_and_keeps_its_last_delay():
    t = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)
    deps = [
        _dep("a1", t + 1 * MIN, 5),
        _dep("a2", t + 3 * MIN, 7),  # the same boundary: one row, the latest delay
        _dep("a3", t + 180 * MIN, -3),  # exactly at 15:00
        _dep("n1", t + 24 * 60 * MIN, 4, day="2013-07-02"),  # the next scheduled day: a new key
        _dep("u1", t + 20 * MIN, 99, tailnum="UNKNOWN"),  # no tail number: no aircraft
    ]
    got = _tables(deps, t, t + 25 * 60 * MIN)[aggregates.PLANE_TODAY]
    want = _rows(
        aggregates.PLANE_TODAY,
        [
            ("N1|2013-07-01", t + 5 * MIN, 2, 7.0),
            ("N1|2013-07-01", t + 180 * MIN, 3, -3.0),
            ("N1|2013-07-02", t + 24 * 60 * MIN, 1, 4.0),
        ],
    )
    _assert_table(got, want)


def test_the_weather_views_3_hour_rainfall_is_a_3_hour_rolling_sum(weather: pd.DataFrame):
    wx = weather.copy()
    wx.loc[wx.index[[5, 6, 7, 40, 100]], "precip"] = np.nan  # not observed
    got = engineering.origin_weather(wx)
    wx = wx.sort_values(["origin", "time_hour"], kind="stable")
    rolled = wx.set_index("time_hour").groupby("origin", sort=True)["precip"].rolling("3h").sum()
    assert got[["origin", TS]].to_numpy().tolist() == [[o, t] for o, t in rolled.index.to_list()]
    np.testing.assert_allclose(
        got["precip_3h"].to_numpy(), rolled.to_numpy(), rtol=0, atol=1e-12, equal_nan=True
    )
    assert (got["precip_3h"] > got["precip"]).sum() >= 10  # sums of several hours, not one
    assert got["precip_3h"].isna().sum() == 1  # three unobserved hours in a row


# --- when a boundary closes ---------------------------------------------------------------------


@dataclass
class Live:
    """A consumer on a local log and SQLite state in ``folder``, recording every push."""

    folder: Path
    batch_size: int = 100_000
    name: str = "consumer-1"

    def __post_init__(self):
        self.log = event_log.LocalEventLog(self.folder)
        self.pushed, self.push = recorder()
        self.worker = self.new()

    def new(self, push: Callable | None = None, log: event_log.LocalEventLog | None = None):
        """A consumer as a freshly started process builds it (nothing in memory; its events
        mirrored in memory from then on, as `StreamResource.consumer` builds it)."""
        return consumer.Consumer(
            log or event_log.LocalEventLog(self.folder),
            window_state.MirroredState(window_state.SqliteWindowState(self.folder / "state.db")),
            push or self.push,
            name=self.name,
            batch_size=self.batch_size,
        )

    def feed(self, evs: list) -> Live:
        self.log.publish(evs)
        self.worker.run(idle_exit_s=0, block_ms=0)
        return self

    def emitted(self) -> float | None:
        return self.worker.state.last_emitted()

    def tables(self) -> dict[str, pd.DataFrame]:
        return live_tables(self.pushed)


def _at(view: str, live: Live, when: datetime) -> pd.DataFrame:
    frame = live.tables()[view]
    return frame.loc[frame[TS] == pd.Timestamp(when)] if len(frame) else frame


def test_a_boundary_closes_at_a_later_event_or_a_tick_at_it_never_before(tmp_path: Path):
    live = Live(tmp_path)
    b, b2 = B, B + 5 * MIN
    live.feed([_dep("d1", b - 2 * MIN, 10)])
    assert live.emitted() is None or live.emitted() < b.timestamp()
    live.feed([events.tick(b - SEC)])  # the watermark just short of b: not yet
    assert live.emitted() is None or live.emitted() < b.timestamp()
    assert _at(aggregates.ORIGIN_TRAFFIC, live, b).empty
    live.feed([events.tick(b)])  # everything up to b is published: b closes
    assert live.emitted() == b.timestamp()
    row = _at(aggregates.ORIGIN_TRAFFIC, live, b)
    assert row["origin_departures_60m"].tolist() == [1]

    live.feed([_dep("d2", b2, 20)])  # exactly at the next boundary: another may still come
    assert live.emitted() == b.timestamp()
    assert _at(aggregates.ORIGIN_TRAFFIC, live, b2).empty
    live.feed([_dep("d3", b2 + SEC, 1000)])  # a later event: b2 closes, with d2 and not d3
    assert live.emitted() == b2.timestamp()
    row = _at(aggregates.ORIGIN_TRAFFIC, live, b2).iloc[0]
    assert row["origin_departures_60m"] == 2
    assert row["origin_mean_dep_delay_60m"] == 15.0
    plane = _at(aggregates.PLANE_TODAY, live, b2).iloc[0]
    assert (plane["plane_departures_today"], plane["plane_last_dep_delay_today"]) == (2, 20.0)
    # Every boundary was pushed once, in order, and nothing past the last closed one.
    traffic = live.tables()[aggregates.ORIGIN_TRAFFIC]
    assert traffic[TS].tolist() == [pd.Timestamp(b), pd.Timestamp(b2)]


# --- parity on real days ----------------------------------------------------------------------


@dataclass(frozen=True)
class Days:
    flights: pd.DataFrame
    weather: pd.DataFrame
    batch: dict[str, pd.DataFrame]
    events: list  # schedule, departures, observations in event-time order, then a tick
    since: float  # the boundary before the first event (a fresh consumer's start)


@pytest.fixture(scope="module")
def days() -> Days:
    flights = pd.concat([events.day_flights(d) for d in DAYS], ignore_index=True)
    weather = pd.concat([events.day_weather(d) for d in DAYS], ignore_index=True)
    evs = events.in_order(
        events.schedule(flights), events.departures(flights), events.observations(weather)
    )
    # a tick at the first boundary when every window of the last event has emptied
    last = aggregates.closed_boundary(max(e.epoch for e in evs)) + 4 * 3600
    closing = events.tick(pd.Timestamp(last, unit="s", tz="UTC"))
    first = min(e.epoch for e in evs)
    return Days(
        flights, weather, batch_tables(flights, weather), [*evs, closing], first_closed(first)
    )


def first_closed(epoch: float) -> float:
    return float(aggregates.closed_boundary(epoch))


@pytest.fixture(scope="module")
def weather(days: Days) -> pd.DataFrame:
    return days.weather


@pytest.fixture(scope="module")
def undisturbed(days: Days, tmp_path_factory: pytest.TempPathFactory) -> Live:
    """Both days consumed in one batch, nothing going wrong."""
    return Live(tmp_path_factory.mktemp("undisturbed")).feed(days.events)


def test_stream_and_batch_agree_on_every_view_of_two_real_days(days: Days, undisturbed: Live):
    assert undisturbed.worker.stats.events == len(days.events)
    assert undisturbed.log.backlog(consumer.GROUP) == 0
    until = undisturbed.emitted()
    assert until == days.events[-1].epoch  # the closing tick closed everything
    compared = assert_live_matches_batch(
        undisturbed.tables(), days.batch, since=days.since, until=until
    )
    # every observation, every boundary of both days at the three airports, every plane-day
    assert compared[aggregates.ORIGIN_WEATHER] == len(days.weather)
    assert compared[aggregates.ORIGIN_TRAFFIC] == 3 * (until - days.since) / aggregates.HOP_S
    plane = days.batch[aggregates.PLANE_TODAY]
    assert compared[aggregates.PLANE_TODAY] == len(plane)
    assert compared[aggregates.CARRIER_ORIGIN_TRAFFIC] == len(
        days.batch[aggregates.CARRIER_ORIGIN_TRAFFIC]
    )
    # plane_today's last row of an aircraft's day counts all its departures (none unknown)
    flights = days.flights.loc[days.flights["departed_at"].notna()]
    flights = flights.loc[flights["tailnum"].notna()]
    per_plane = flights.groupby(flights["tailnum"] + "|" + flights["flight_date"]).size()
    last = plane.groupby("plane_day")["plane_departures_today"].last()
    pd.testing.assert_series_equal(
        last.sort_index(),
        per_plane.sort_index(),
        check_names=False,
        check_dtype=False,
        check_index_type=False,
    )
    assert days.flights["tailnum"].isna().any()  # the data has some: they never show up
    assert not plane["plane_day"].str.startswith("UNKNOWN").any()


def test_many_small_batches_push_the_same_rows_as_one_big_batch(
    days: Days, undisturbed: Live, tmp_path: Path
):
    small = Live(tmp_path, batch_size=23).feed(days.events)
    assert small.worker.stats.batches == -(-len(days.events) // 23) > 100
    assert_live_matches_batch(small.tables(), days.batch, since=days.since, until=small.emitted())
    big, many = final_rows(undisturbed.tables()), final_rows(small.tables())
    for view in STREAM_VIEWS:
        pd.testing.assert_frame_equal(many[view], big[view], check_exact=True, obj=view)


# --- exactly once -----------------------------------------------------------------------------


class DiedError(Exception):
    """The consumer process dying (nothing after this point of the step happens)."""


class DyingLog(event_log.LocalEventLog):
    """A local log whose process dies on the given acknowledgements, before committing them."""

    def __init__(self, folder: Path, calls: list[int], die_at: set[int]):
        super().__init__(folder)
        self.calls, self.die_at = calls, die_at

    def ack(self, group, ids):
        self.calls[0] += 1
        if self.calls[0] in self.die_at:
            raise DiedError(f"ack {self.calls[0]}")
        super().ack(group, ids)


@pytest.mark.parametrize("dies", ["after_push", "before_push", "before_ack"])
def test_a_consumer_that_dies_between_push_and_ack_ends_with_the_undisturbed_rows(
    days: Days, undisturbed: Live, tmp_path: Path, dies: str
):
    live = Live(tmp_path, batch_size=50)
    live.log.publish(days.events)
    calls = [0]
    # after_push / before_push: at the n-th push to a source (each source at least once, one
    # twice in a row), once the rows reached the online store or just before;
    # before_ack: at the n-th acknowledgement, every push of the step done
    die_at = (
        {(consumer.WEATHER_PUSH, 2), (consumer.WEATHER_PUSH, 9)}
        | {(v.push_source, n) for v, n in zip(aggregates.VIEWS.values(), (5, 12, 20), strict=True)}
        | {(aggregates.VIEWS[aggregates.ORIGIN_TRAFFIC].push_source, 6)}
        if dies != "before_ack"
        else {2, 5, 6, 15, 40}
    )
    counts: dict[str, int] = {}

    def push(frame: pd.DataFrame, source: str) -> None:
        counts[source] = counts.get(source, 0) + 1
        dying = (source, counts[source]) in die_at
        if dies == "after_push" or not dying:
            live.push(frame, source)
        if dying:
            raise DiedError(f"push {counts[source]} to {source}")

    deaths = 0
    while True:
        if dies != "before_ack":
            worker = live.new(push=push)
        else:
            worker = live.new(log=DyingLog(tmp_path, calls, die_at))
        try:
            worker.run(idle_exit_s=0, block_ms=0)
            break
        except DiedError:
            deaths += 1
            # what the next process sees: the dead one's batch not acknowledged
            assert live.log.backlog(consumer.GROUP) > 0
    assert deaths == len(die_at)
    again = sum(len(f) for f in live.tables().values())
    once = sum(len(f) for f in undisturbed.tables().values())
    assert again > once if dies == "after_push" else again >= once  # rows were pushed again
    assert live.log.backlog(consumer.GROUP) == 0
    assert worker.state.last_emitted() == undisturbed.emitted()
    assert worker.state.events() == undisturbed.worker.state.events()
    pushed = final_rows(live.tables())  # a row pushed again is the same row
    expected = final_rows(undisturbed.tables())
    for view in STREAM_VIEWS:
        pd.testing.assert_frame_equal(pushed[view], expected[view], check_exact=True, obj=view)


def test_a_duplicated_burst_changes_nothing(days: Days, undisturbed: Live, tmp_path: Path):
    live = Live(tmp_path, batch_size=100)
    cut = len(days.events) // 2
    live.feed(days.events[:cut])
    burst = days.events[cut - 300 : cut]  # published again (a producer retrying)
    assert any(isinstance(e, events.Observation) for e in burst)
    live.feed([*burst, *days.events[cut:], *days.events[cut : cut + 200]])
    assert live.worker.stats.events == len(days.events) + 300 + 200
    assert live.log.backlog(consumer.GROUP) == 0
    assert live.emitted() == undisturbed.emitted()
    assert live.worker.state.events() == undisturbed.worker.state.events()
    pushed, expected = final_rows(live.tables()), final_rows(undisturbed.tables())
    for view in STREAM_VIEWS:
        pd.testing.assert_frame_equal(pushed[view], expected[view], check_exact=True, obj=view)
    # the departure views were pushed exactly as often as without the burst
    for view in aggregates.VIEWS:
        assert len(live.tables()[view]) == len(undisturbed.tables()[view]), view


def test_a_late_duplicate_of_old_observations_pushes_no_stale_or_different_row(
    days: Days, tmp_path: Path
):
    obs = [e for e in days.events if isinstance(e, events.Observation)]
    later = events.tick(obs[-1].observed_at + timedelta(days=3))  # the state prunes them all
    live = Live(tmp_path).feed([*obs, later])
    before = live.tables()[aggregates.ORIGIN_WEATHER]
    newest = before.groupby("origin")[TS].max()
    n = len(live.pushed[consumer.WEATHER_PUSH])
    # observations of rainy hours (rain in the hours before them too) published again
    batch = days.batch[aggregates.ORIGIN_WEATHER]
    rainy = batch.loc[batch["precip_3h"] > batch["precip"], ["origin", TS]]
    wanted = set(zip(rainy["origin"], rainy[TS], strict=True))
    live.feed([e for e in obs if (e.origin, pd.Timestamp(e.observed_at)) in wanted][:3])
    again = live.pushed[consumer.WEATHER_PUSH][n:]
    repushed = pd.concat(again, ignore_index=True) if again else before.iloc[:0]
    stale = repushed.loc[repushed[TS].to_numpy() < repushed["origin"].map(newest).to_numpy()]
    both = repushed.merge(batch, on=["origin", TS], suffixes=("", "_batch"))
    differs = both.loc[~same_values(both["precip_3h"], both["precip_3h_batch"])]
    assert stale.empty, f"{len(stale)} rows older than the online ones pushed again"
    assert differs.empty, differs[["origin", TS, "precip_3h", "precip_3h_batch"]]


# --- malformed events -------------------------------------------------------------------------


def test_events_survive_their_encoding():
    dep = _dep("f1", B, 12.0, carrier="B6", tailnum="N3", day="2013-07-01")
    obs = events.Observation("w1", "JFK", B, (1.0, np.nan, 3.0, 4.0, 5.0, 0.25, 7.0, 8.0))
    for e in (dep, events.tick(B)):
        assert events.decode(json.loads(json.dumps(e.encode()))) == e
    back = events.decode(obs.encode())
    assert isinstance(back, events.Observation)
    assert (back.origin, back.observed_at) == ("JFK", B)
    assert np.array_equal(back.values, obs.values, equal_nan=True)
    legacy = {k: v for k, v in dep.encode().items() if k != "kind"}  # older entries: no kind
    assert events.decode(legacy) == dep


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"departed_at": None}, "departed_at"),  # missing
        ({"origin": None}, "origin"),
        ({"dep_delay": "late"}, "could not convert string to float: 'late'"),
        ({"departed_at": "yesterday"}, "yesterday"),
        ({"kind": "arrival"}, "arrival"),
    ],
)
def test_a_malformed_event_raises_a_value_error_naming_the_problem(change: dict, named: str):
    fields = _dep("f1", B, 12.0).encode()
    for key, value in change.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    with pytest.raises(ValueError, match="malformed event") as err:
        events.decode(fields)
    assert named in str(err.value).rsplit("}: ", 1)[1]  # the reason, after the fields


@pytest.mark.parametrize("delay", ["nan", "inf"])
def test_a_departure_without_a_finite_delay_is_malformed(delay: str):
    fields = _dep("f1", B, 12.0).encode() | {"dep_delay": delay}
    with pytest.raises(ValueError, match="dep_delay"):
        events.decode(fields)


def test_malformed_observations_and_ticks_are_rejected_too():
    with pytest.raises(ValueError, match="'observed_at'"):
        events.decode({"kind": "observation", "event_id": "w", "origin": "EWR"})
    with pytest.raises(ValueError, match="'at'"):
        events.decode({"kind": "tick", "event_id": "t"})
    obs = events.Observation("w", "EWR", B, (1.0,) * 8).encode() | {"temp": "hot"}
    with pytest.raises(ValueError, match="hot"):
        events.decode(obs)


def test_a_malformed_entry_in_the_log_stops_the_consumer_before_it_acknowledges(
    tmp_path: Path,
):
    live = Live(tmp_path)
    live.log.publish([_dep("ok", B, 1.0)])
    with live.log.path.open("a") as fh:
        fh.write(json.dumps({"kind": "departure", "event_id": "bad", "origin": "EWR"}) + "\n")
    with pytest.raises(ValueError, match=r"malformed event.*'(dep_delay|departed_at)'"):
        live.worker.run(idle_exit_s=0, block_ms=0)
    assert live.log.committed(consumer.GROUP) == 0  # nothing acknowledged, nothing skipped
    assert live.worker.state.max_seen() is None  # and nothing of the batch kept
