"""Queue time windows: parsing, overnight spans, week wrap-around, and clear errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from workers.window import TimeWindow, WindowError

# 2026-11-23 is a Monday.
MON = 23


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute)


def test_overnight_weekday_window() -> None:
    """'Mon-Fri 18:00-08:00' opens weekday evenings and runs into the next morning."""
    window = TimeWindow.parse("Mon-Fri 18:00-08:00")
    assert not window.is_open(at(MON, 12))
    assert window.is_open(at(MON, 18))
    assert window.is_open(at(MON + 1, 7, 59))  # Tuesday morning, from Monday's span
    assert not window.is_open(at(MON + 1, 8))
    assert window.is_open(at(MON + 5, 7))  # Saturday morning, from Friday's span
    assert not window.is_open(at(MON + 5, 18))  # Saturday evening: no span
    assert not window.is_open(at(MON, 7))  # Monday morning: Sunday has no span


def test_sunday_span_wraps_into_monday() -> None:
    """A span starting Sunday night runs past the week's end into Monday."""
    window = TimeWindow.parse("Sun 22:00-02:00")
    assert window.is_open(at(MON - 1, 23))
    assert window.is_open(at(MON, 1, 30))
    assert not window.is_open(at(MON, 2))


def test_days_lists_ranges_every_day_and_full_days() -> None:
    """Lists with '+', wrapping ranges, no days (every day), and 00:00-24:00."""
    assert TimeWindow.parse("Mon+Wed 09:00-10:00").is_open(at(MON + 2, 9, 30))
    assert not TimeWindow.parse("Mon+Wed 09:00-10:00").is_open(at(MON + 1, 9, 30))
    assert TimeWindow.parse("Fri-Mon 00:00-24:00").is_open(at(MON - 1, 12))
    assert not TimeWindow.parse("Fri-Mon 00:00-24:00").is_open(at(MON + 1, 12))
    every_night = TimeWindow.parse("22:00-06:00")
    assert all(every_night.is_open(at(MON + d, 23)) for d in range(7))
    assert TimeWindow.parse("sat 00:00-24:00, sun 00:00-24:00").is_open(at(MON - 2, 3))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "at least one span"),
        ("Mon-Fri", "cannot read"),
        ("Moo 09:00-10:00", "not a day"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 09:60-10:00", "not a time of day"),
        ("Mon 24:00-10:00", "not a time of day"),
        ("09:00-10:00; 11:00-12:00", "cannot read"),
    ],
)
def test_bad_windows_are_refused_with_a_reason(spec: str, message: str) -> None:
    """A window Herald cannot read is refused with a message saying what is wrong."""
    with pytest.raises(WindowError, match=message):
        TimeWindow.parse(spec)
