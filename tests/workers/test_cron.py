"""Cron expressions: fields, names, steps, the day-field rule, shorthands, and clear
errors for what Herald cannot read."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest

from workers.cron import CronError, CronExpression


def test_five_fields_fire_at_second_zero_and_six_fields_lead_with_seconds() -> None:
    """Five fields are minute-first with seconds fixed at 0; a sixth, leading, field is seconds."""
    five = CronExpression.parse("30 9 * * *")
    assert five.seconds == (0,) and five.minutes == (30,) and five.hours == (9,)
    six = CronExpression.parse("*/15 30 9 * * *")
    assert six.seconds == (0, 15, 30, 45) and six.minutes == (30,)


def test_lists_ranges_steps_and_names() -> None:
    """Lists, ranges, stepped ranges, 'a/n', and month and day names in any case."""
    cron = CronExpression.parse("0,20-22,40-50/5 8/4 1-3,15 JAN,jun-Aug MON-fri")
    assert cron.minutes == (0, 20, 21, 22, 40, 45, 50)
    assert cron.hours == (8, 12, 16, 20)
    assert cron.days == {1, 2, 3, 15}
    assert cron.months == (1, 6, 7, 8)
    assert cron.weekdays == {1, 2, 3, 4, 5}


def test_sunday_is_both_zero_and_seven() -> None:
    """Day of week 7 is Sunday, like 0."""
    assert CronExpression.parse("0 0 * * 7").weekdays == {0}
    assert CronExpression.parse("0 0 * * 5-7").weekdays == {5, 6, 0}


def test_shorthands() -> None:
    """@daily and friends stand for their usual expressions."""
    daily, midnight = CronExpression.parse("@daily"), CronExpression.parse("@midnight")
    assert replace(daily, text="") == replace(midnight, text="")
    assert daily.text == "@daily"  # kept as written, for people
    hourly = CronExpression.parse("@HOURLY")
    assert hourly.minutes == (0,) and len(hourly.hours) == 24
    weekly = CronExpression.parse("@weekly")
    assert weekly.weekdays == {0} and weekly.hours == (0,)


def test_day_fields_combine_like_vixie_cron() -> None:
    """Both day fields restricted: either matches; one starting with '*': both must."""
    either = CronExpression.parse("0 9 1 * mon")
    assert either.matches_day(date(2026, 11, 1))  # the 1st, a Sunday
    assert either.matches_day(date(2026, 11, 2))  # a Monday
    assert not either.matches_day(date(2026, 11, 3))
    both = CronExpression.parse("0 9 */2 * mon")
    assert both.matches_day(date(2026, 11, 23))  # Monday the 23rd: odd day and Monday
    assert not both.matches_day(date(2026, 11, 30))  # Monday the 30th: even day
    assert not both.matches_day(date(2026, 11, 25))  # odd day, but a Wednesday


def test_matches_a_wall_clock_time() -> None:
    """matches() checks every field of a naive time, seconds included."""
    cron = CronExpression.parse("5 30 9 * * mon-fri")
    assert cron.matches(datetime(2026, 11, 23, 9, 30, 5))
    assert not cron.matches(datetime(2026, 11, 23, 9, 30, 6))
    assert not cron.matches(datetime(2026, 11, 22, 9, 30, 5))  # a Sunday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("* * * *", "expected 5 fields (minute hour day month weekday) or 6"),
        ("0 0 0 * * * 2026", "found 7"),
        ("*/0 * * * *", "step '0' in '*/0' is not ≥ 1"),
        ("*/x * * * *", "step 'x'"),
        ("0 17-9 * * *", "range '17-9' runs backwards"),
        ("0 9 * * mon,,fri", "empty item in the day of week field"),
        ("0 9 * * funday", "'funday' is not a day of week"),
        ("0 9 * jan-smarch *", "'smarch' is not a month"),
        ("0 9 L * *", "'L' (last) is not supported"),
        ("0 9 15W * *", "'W' (nearest weekday) is not supported"),
        ("0 9 * * 5#3", "'#' (nth weekday) is not supported"),
        ("0 9 ? * mon", "'?' is Quartz syntax: use '*'"),
        ("@reboot", "unknown shorthand (known: @yearly"),
        ("0 0 30 2 *", "never fires (no chosen month has that day)"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("", "expected 5 fields"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    """Each mistake is refused with the expression and what is wrong with it."""
    with pytest.raises(CronError) as caught:
        CronExpression.parse(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"cron {' '.join(text.split())!r}")


def test_29_february_is_allowed() -> None:
    """A day only leap years have is a day (it fires every four years)."""
    assert CronExpression.parse("0 0 29 2 *").days == {29}


def test_clock_following_is_decided_by_the_minute_and_hour_fields() -> None:
    """Vixie cron's rule: a minute or hour field starting with '*' follows the clock."""
    assert CronExpression.parse("*/15 * * * *").follows_clock
    assert CronExpression.parse("0 * * * *").follows_clock
    assert CronExpression.parse("* 2 * * *").follows_clock
    assert not CronExpression.parse("30 2 * * *").follows_clock
    assert not CronExpression.parse("0 9-17 * * *").follows_clock
    assert not CronExpression.parse("*/5 30 2 * * *").follows_clock  # seconds do not count
