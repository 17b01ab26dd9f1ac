"""Cron expressions: reading them, and which wall-clock times they name.

Five fields ``minute hour day-of-month month day-of-week``, as in crontab(5), or
six with a leading ``second`` field (as Quartz and Spring write it), so a job
can fire every few seconds. Each field is ``*``, a number, a name (``jan``…``dec``,
``sun``…``sat``, any case), a range ``a-b``, a step ``*/n``, ``a-b/n`` or
``a/n`` (from ``a`` to the field's end), or a comma-separated list of those.
Day of week runs 0–7, both 0 and 7 being Sunday. ``@yearly`` (``@annually``),
``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` stand for
their usual expressions. Quartz's ``?``, ``L``, ``W`` and ``#`` are refused
with a message saying so.

Day of month and day of week combine as in Vixie cron and its descendants: if
either field starts with ``*`` a day must match both, otherwise either
(``0 9 1 * mon`` fires on the 1st and on every Monday).

This module only matches *naive* wall-clock times; time zones, DST and the
business-day and active-hours filters are :mod:`workers.recurrence`'s.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

__all__ = ["CronError", "CronExpression"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNSUPPORTED = {
    "?": "'?' is Quartz syntax: use '*'",
    "L": "'L' (last) is not supported",
    "W": "'W' (nearest weekday) is not supported",
    "#": "'#' (nth weekday) is not supported",
}


class CronError(ValueError):
    """A cron expression Herald cannot read, or one that can never fire."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_WEEKDAY = _Field("day of week", 0, 7, _WEEKDAYS)


def _value(token: str, field: _Field, expr: str) -> int:
    if token.isdigit():
        value = int(token)
    elif token.lower() in field.names:
        value = field.low + field.names.index(token.lower())
    else:
        for mark, why in _UNSUPPORTED.items():
            if mark in token.upper():
                raise CronError(f"cron {expr!r}: {why}")
        raise CronError(f"cron {expr!r}: {token!r} is not a {field.name}")
    if not field.low <= value <= field.high:
        raise CronError(
            f"cron {expr!r}: {field.name} {value} is out of range {field.low}-{field.high}"
        )
    return value


def _parse_field(text: str, field: _Field, expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {expr!r}: step {step_text!r} in {part!r} is not ≥ 1")
            step = int(step_text)
        if body == "*":
            low, high = field.low, field.high
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _value(first, field, expr), _value(last, field, expr)
            if low > high:
                raise CronError(f"cron {expr!r}: range {body!r} runs backwards")
        elif body:
            low = _value(body, field, expr)
            high = field.high if slash else low
        else:
            raise CronError(f"cron {expr!r}: empty item in the {field.name} field {text!r}")
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression: the allowed values of each field, sorted."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # cron numbering: 0 = Sunday … 6 = Saturday
    day_star: bool
    weekday_star: bool
    # Vixie cron's "wildcard job": the minute or hour field starts with '*'. Such a
    # job follows the wall clock through DST changes; others are fixed-time jobs.
    follows_clock: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Read ``text``; :class:`CronError` says what is wrong, for a person."""
        expr = " ".join(text.split())
        fields = _MACROS.get(expr.lower(), expr).split()
        if expr.startswith("@") and expr.lower() not in _MACROS:
            known = ", ".join(_MACROS)
            raise CronError(f"cron {expr!r}: unknown shorthand (known: {known})")
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise CronError(
                f"cron {expr!r}: expected 5 fields (minute hour day month weekday) "
                f"or 6 with a leading second field, found {len(fields)}"
            )
        second, minute, hour, day, month, weekday = fields
        months = _parse_field(month, _MONTH, expr)
        days = _parse_field(day, _DAY, expr)
        weekdays = frozenset(d % 7 for d in _parse_field(weekday, _WEEKDAY, expr))
        cron = cls(
            text=expr,
            seconds=tuple(sorted(_parse_field(second, _SECOND, expr))),
            minutes=tuple(sorted(_parse_field(minute, _MINUTE, expr))),
            hours=tuple(sorted(_parse_field(hour, _HOUR, expr))),
            days=days,
            months=tuple(sorted(months)),
            weekdays=weekdays,
            day_star=day.startswith("*"),
            weekday_star=weekday.startswith("*"),
            follows_clock=minute.startswith("*") or hour.startswith("*"),
        )
        if cron.day_star or cron.weekday_star:
            # Both must match: a day of month no chosen month has (30 February) never comes.
            longest = max(calendar.monthrange(2028, m)[1] for m in months)  # 2028: a leap year
            if min(days) > longest:
                raise CronError(f"cron {expr!r}: never fires (no chosen month has that day)")
        return cron

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` is one of the expression's days (both day fields combined)."""
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.day_star or self.weekday_star:
            return in_month and in_week
        return in_month or in_week

    def matches(self, when: datetime) -> bool:
        """Whether the wall-clock time ``when`` (seconds resolution) is one of its times."""
        return (
            when.month in self.months
            and self.matches_day(when.date())
            and when.hour in self.hours
            and when.minute in self.minutes
            and when.second in self.seconds
        )

    def __str__(self) -> str:
        return self.text
