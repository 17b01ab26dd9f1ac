"""Queue time windows: the hours in which a queue runs, e.g. ``Mon-Fri 18:00-08:00``.

A window is one or more comma-separated spans ``[DAYS] HH:MM-HH:MM``. DAYS is a
day (``Sat``), a range (``Mon-Fri``, wrapping allowed: ``Fri-Mon``) or a list
joined by ``+`` (``Mon+Wed``); without DAYS the span applies every day. A span
whose end is not after its start runs past midnight: ``Mon-Fri 18:00-08:00``
opens at 18:00 on each weekday and closes at 08:00 the next morning, so a job
waiting on Friday evening runs until Saturday 08:00. ``24:00`` ends a day.

Outside its window a queue starts nothing new; its jobs wait, none is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DAYS", "TimeWindow", "WindowError"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MINUTES_PER_DAY = 24 * 60
_WEEK = 7 * _MINUTES_PER_DAY
_SPAN = re.compile(
    r"(?:(?P<days>[a-z]{3}(?:-[a-z]{3}|(?:\+[a-z]{3})*))\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
)


class WindowError(ValueError):
    """A window specification Herald cannot read."""


def _minutes(text: str, spec: str, *, allow_24: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise WindowError(f"{text!r} in window {spec!r} is not a time of day")
    return hours * 60 + minutes


def _days(text: str | None, spec: str) -> list[int]:
    if text is None:
        return list(range(7))
    parts = text.split("+") if "+" in text else text.split("-")
    for part in parts:
        if part not in DAYS:
            raise WindowError(f"{part!r} in window {spec!r} is not a day (use Mon..Sun)")
    if "+" in text or len(parts) == 1:
        return [DAYS.index(p) for p in parts]
    first, last = DAYS.index(parts[0]), DAYS.index(parts[1])
    return [(first + offset) % 7 for offset in range((last - first) % 7 + 1)]


@dataclass(frozen=True)
class TimeWindow:
    """Open intervals in minutes of the week (Monday 00:00 = 0), possibly wrapping."""

    spec: str
    spans: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, spec: str) -> TimeWindow:
        """Read a window; raise :class:`WindowError` with a message for a person."""
        text = spec.strip().lower()
        if not text:
            raise WindowError("a window needs at least one span, e.g. 'Mon-Fri 18:00-08:00'")
        spans: list[tuple[int, int]] = []
        for part in (p.strip() for p in text.split(",")):
            match = _SPAN.fullmatch(part)
            if match is None:
                raise WindowError(
                    f"cannot read {part!r} in window {spec!r}: expected e.g. 'Mon-Fri 18:00-08:00'"
                )
            start = _minutes(match["start"], spec, allow_24=False)
            end = _minutes(match["end"], spec, allow_24=True)
            length = (end - start) % _MINUTES_PER_DAY or _MINUTES_PER_DAY
            for day in _days(match["days"], spec):
                begin = day * _MINUTES_PER_DAY + start
                spans.append((begin, begin + length))
        return cls(spec=spec.strip(), spans=tuple(spans))

    def is_open(self, when: datetime) -> bool:
        """Whether the queue may start work at ``when`` (in the window's time zone)."""
        minute = when.weekday() * _MINUTES_PER_DAY + when.hour * 60 + when.minute
        for begin, end in self.spans:
            # A span may run past Sunday midnight into Monday: test the minute a week on too.
            if begin <= minute < end or begin <= minute + _WEEK < end:
                return True
        return False
