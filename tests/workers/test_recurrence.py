"""When recurring jobs fire: time zones and DST (the skipped and the repeated hour),
business days, active hours, and the latest firing in a span. Checked on named
cases and, for random expressions, against a brute-force scan of every minute."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.recurrence import Recurrence

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def firings(rec: Recurrence, start: datetime, end: datetime) -> list[datetime]:
    """Every firing in (start, end], through next_after."""
    found = []
    current = rec.next_after(start)
    while current is not None and current <= end:
        found.append(current)
        current = rec.next_after(current)
    return found


def iso(times: list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]


# --- DST: the behaviour docs/operations.md states ---------------------------------------
def test_a_fixed_time_in_the_skipped_hour_fires_when_the_clocks_jump() -> None:
    """London skips 01:00-02:00 on 29 March 2026: a 01:30 job fires at 02:00 BST that
    day, once, and at 01:30 again the day after."""
    rec = Recurrence.of("30 1 * * *", LONDON)
    assert iso(firings(rec, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))) == [
        "2026-03-29T02:00:00+01:00",
        "2026-03-30T01:30:00+01:00",
    ]


def test_new_york_skips_two_to_three() -> None:
    """New York's 02:30 job runs at 03:00 EDT on the spring-forward day."""
    rec = Recurrence.of("30 2 * * *", NEW_YORK)
    assert rec.next_after(utc(2026, 3, 8, 0)) == datetime(2026, 3, 8, 3, 0, tzinfo=NEW_YORK)


def test_a_fixed_time_in_the_repeated_hour_fires_in_its_first_pass_only() -> None:
    """London goes through 01:00-02:00 twice on 25 October 2026: a 01:30 job runs once, BST."""
    rec = Recurrence.of("30 1 * * *", LONDON)
    assert iso(firings(rec, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))) == [
        "2026-10-25T01:30:00+01:00",
        "2026-10-26T01:30:00+00:00",
    ]


def test_a_clock_following_job_skips_the_gap_and_runs_both_passes() -> None:
    """'*/30 * * * *' keeps to the clock: nothing in the skipped hour; both passes of the
    repeated hour, so it keeps running every thirty real minutes in the autumn."""
    rec = Recurrence.of("*/30 * * * *", LONDON)
    assert iso(firings(rec, utc(2026, 3, 29, 0), utc(2026, 3, 29, 1, 30))) == [
        "2026-03-29T00:30:00+00:00",
        "2026-03-29T02:00:00+01:00",
        "2026-03-29T02:30:00+01:00",
    ]
    autumn = firings(rec, utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2))
    assert iso(autumn) == [
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:30:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T01:30:00+00:00",
        "2026-10-25T02:00:00+00:00",
    ]
    real = [t.astimezone(UTC) for t in autumn]  # same-zone subtraction would be wall time
    assert {b - a for a, b in itertools.pairwise(real)} == {timedelta(minutes=30)}


@pytest.mark.parametrize("start", [utc(2026, 3, 29, 0, 59, 55), utc(2026, 10, 25, 0, 59, 55)])
def test_every_second_runs_on_through_both_changes(start: datetime) -> None:
    """A six-field every-second job fires every real second across both DST changes."""
    rec = Recurrence.of("* * * * * *", LONDON)
    found = firings(rec, start, start + timedelta(seconds=10))
    assert [t.astimezone(UTC) for t in found] == [
        start + timedelta(seconds=n) for n in range(1, 11)
    ]


def test_a_transition_at_midnight() -> None:
    """Havana's clocks jump from 00:00 to 01:00: a midnight job runs at 01:00 that day."""
    havana = ZoneInfo("America/Havana")
    rec = Recurrence.of("0 0 * * *", havana)
    assert iso(rec.upcoming(utc(2026, 3, 7, 12), 2)) == [
        "2026-03-08T01:00:00-04:00",
        "2026-03-09T00:00:00-04:00",
    ]


# --- business days and active hours ----------------------------------------------------
def test_business_days_skip_the_weekend() -> None:
    """From Friday afternoon a business-days 09:00 job next runs on Monday."""
    rec = Recurrence.of("0 9 * * *", "UTC", business_days=True)
    assert iso(rec.upcoming(utc(2026, 11, 20, 12), 2)) == [  # 20 November 2026: a Friday
        "2026-11-23T09:00:00+00:00",
        "2026-11-24T09:00:00+00:00",
    ]
    assert (
        Recurrence.of("0 9 * * sat", "UTC", business_days=True).next_after(utc(2026, 1, 1)) is None
    )


def test_active_hours_limit_a_frequent_job() -> None:
    """'*/20 * * * *' within 08:00-09:00 in London runs three times a day, in local time."""
    rec = Recurrence.of("*/20 * * * *", LONDON, active_hours="08:00-09:00")
    assert iso(rec.upcoming(utc(2026, 7, 1, 6, 30), 4)) == [  # 07:30 BST
        "2026-07-01T08:00:00+01:00",
        "2026-07-01T08:20:00+01:00",
        "2026-07-01T08:40:00+01:00",
        "2026-07-02T08:00:00+01:00",
    ]


def test_active_hours_take_the_queue_window_syntax() -> None:
    """Overnight spans and day lists work as in queue windows."""
    rec = Recurrence.of("0 * * * *", "UTC", active_hours="Fri 22:00-02:00")
    assert iso(rec.upcoming(utc(2026, 11, 19), 4)) == [
        "2026-11-20T22:00:00+00:00",
        "2026-11-20T23:00:00+00:00",
        "2026-11-21T00:00:00+00:00",
        "2026-11-21T01:00:00+00:00",
    ]


def test_never_firing_within_the_horizon_is_none() -> None:
    """An expression the filters rule out entirely has no next firing (found quickly)."""
    rec = Recurrence.of("0 3 * * *", "UTC", active_hours="08:00-18:00")
    assert rec.next_after(utc(2026, 1, 1)) is None


# --- the latest firing in a span ------------------------------------------------------------
def test_latest_between_is_exact_for_dense_and_sparse_jobs() -> None:
    """The last firing in a span, for an every-second job over days and a daily one."""
    every_second = Recurrence.of("* * * * * *", "UTC")
    until = datetime(2026, 1, 3, 4, 5, 6, 700_000, tzinfo=UTC)
    assert every_second.latest_between(utc(2026, 1, 1), until) == utc(2026, 1, 3, 4, 5, 6)
    daily = Recurrence.of("0 3 * * *", LONDON)
    assert daily.latest_between(utc(2026, 1, 1), utc(2026, 6, 2, 12)) == datetime(
        2026, 6, 2, 3, tzinfo=LONDON
    )
    assert daily.latest_between(utc(2026, 6, 2, 2, 59), utc(2026, 6, 2, 1, 59)) is None
    assert daily.latest_between(utc(2026, 6, 2, 1, 59), utc(2026, 6, 2, 2)) == datetime(
        2026, 6, 2, 3, tzinfo=LONDON
    )


# --- random expressions against a brute-force reading of the rule ---------------------------
def reference(rec: Recurrence, start: datetime, end: datetime) -> list[datetime]:
    """Every firing in (start, end] the slow way: each UTC minute judged by the rule in
    workers/recurrence.py's docstring (five-field expressions, minute transitions)."""
    zone, cron = rec.zone, rec.cron

    def allowed(wall: datetime) -> bool:
        return (
            cron.matches(wall)
            and not (rec.business_days and wall.weekday() >= 5)
            and (rec.active_hours is None or rec.active_hours.is_open(wall))
        )

    found = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while moment <= end:
        wall = moment.astimezone(zone).replace(tzinfo=None)
        first_pass = wall.replace(tzinfo=zone, fold=0).astimezone(UTC) == moment
        fires = allowed(wall) and (cron.follows_clock or first_pass)
        before = (moment - timedelta(seconds=1)).astimezone(zone).utcoffset()
        after = moment.astimezone(zone).utcoffset()
        assert before is not None and after is not None
        if not fires and not cron.follows_clock and after > before:
            # The clocks jump forward now: a skipped wall time fires at this moment.
            skipped = (moment + before).replace(tzinfo=None)
            while skipped < (moment + after).replace(tzinfo=None) and not fires:
                fires = allowed(skipped)
                skipped += timedelta(minutes=1)
        if fires:
            found.append(moment)
        moment += timedelta(minutes=1)
    return found


# (zone, a UTC start two days before the end) around each zone's changes
WINDOWS = [
    ("Europe/London", utc(2026, 3, 28, 12)),
    ("Europe/London", utc(2026, 10, 24, 12)),
    ("America/New_York", utc(2026, 3, 7, 18)),
    ("America/New_York", utc(2026, 10, 31, 18)),
    ("Australia/Lord_Howe", utc(2026, 4, 3, 6)),  # half-hour DST
    ("Australia/Lord_Howe", utc(2026, 10, 3, 6)),
    ("America/Havana", utc(2026, 3, 7, 12)),  # changes at midnight
    ("America/Havana", utc(2026, 10, 31, 12)),
    ("America/Sao_Paulo", utc(2018, 11, 3, 12)),  # back to 23:00 the day before
    ("America/Sao_Paulo", utc(2019, 2, 16, 12)),
    ("Asia/Kolkata", utc(2026, 6, 1)),
]

expressions = st.tuples(
    st.sampled_from(["*", "*/15", "*/7", "0", "30", "0,30", "5-10", "45-59/5"]),
    st.sampled_from(["*", "*/2", "*/5", "0", "1", "2", "3", "0-3", "1,2", "23", "22-23"]),
    st.sampled_from(["*", "*", "1", "2-8", "*/2"]),
    st.sampled_from(["*", "*", "2-4", "10,11"]),
    st.sampled_from(["*", "*", "sun", "mon-fri", "sat,sun"]),
).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    expression=expressions,
    window=st.sampled_from(WINDOWS),
    business_days=st.booleans(),
    active_hours=st.sampled_from([None, None, "00:00-02:30", "01:30-03:00", "22:00-01:30"]),
)
def test_next_after_agrees_with_a_minute_by_minute_scan(
    expression: str, window: tuple[str, datetime], business_days: bool, active_hours: str | None
) -> None:
    """For random expressions around DST changes in several zones (half-hour, midnight,
    none), next_after finds exactly the firings a scan of every minute finds."""
    zone, start = window
    rec = Recurrence.of(expression, zone, business_days=business_days, active_hours=active_hours)
    end = start + timedelta(days=2)
    expected = reference(rec, start, end)
    assert [t.astimezone(UTC) for t in firings(rec, start, end)] == expected
    if expected:
        middle = expected[len(expected) // 2]
        latest = rec.latest_between(start, middle + timedelta(seconds=30))
        assert latest is not None and latest.astimezone(UTC) == middle


def test_the_windows_hold_offset_changes() -> None:
    """Each DST window of the property test does contain a change of offset."""
    for name, start in WINDOWS[:-1]:
        zone = ZoneInfo(name)
        assert (
            start.astimezone(zone).utcoffset()
            != (start + timedelta(days=2)).astimezone(zone).utcoffset()
        ), name
