"""When a recurring job fires: a cron expression read in a time zone, optionally
limited to business days (Monday–Friday) and to active hours.

Firings are whole seconds. Across DST changes the rule is Vixie cron's (Debian's
cron behaves the same), decided by the expression alone:

- a **fixed-time** job (neither its minute nor its hour field starts with ``*``:
  ``30 2 * * *``, ``0 9-17 * * mon-fri``) fires once for each wall-clock time it
  names. A time in the hour the clocks skip fires at the moment they jump
  (02:30 becomes 03:00 on the spring-forward night in New York); a time in the
  hour that repeats fires in its first pass only;
- a **clock-following** job (``*/15 * * * *``, ``0 * * * *``) keeps to the wall
  clock: nothing fires in the skipped hour, and the repeated hour fires in both
  passes, so ``*/15`` keeps running every fifteen real minutes.

The business-days and active-hours filters apply to the wall-clock time a firing
was scheduled for (for a skipped time: the time the expression named). Offsets
are assumed to change at most once in any 12 hours, as in every real zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from workers.cron import CronExpression
from workers.window import TimeWindow

__all__ = ["HORIZON", "Recurrence"]

# The furthest ahead a firing is looked for; an expression with none in that time
# (29 February on a Monday, within active hours it never reaches) is an error.
HORIZON = timedelta(days=366 * 10)
_PROBE = timedelta(hours=12)
_MINUTES_PER_DAY = 24 * 60
_WEEK = 7 * _MINUTES_PER_DAY
_SECOND = timedelta(seconds=1)
_STEPS = 100_000


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset


def _first_change(zone: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The first instant in ``(start, end]`` (UTC) whose offset differs from ``start``'s."""
    base = _offset(zone, start)
    before = start
    while before < end:
        probe = min(before + _PROBE, end)
        if _offset(zone, probe) != base:
            low, high = math.floor(before.timestamp()), math.floor(probe.timestamp())
            while high - low > 1:  # offset(low) == base != offset(high); changes are whole seconds
                mid = (low + high) // 2
                if _offset(zone, datetime.fromtimestamp(mid, UTC)) == base:
                    low = mid
                else:
                    high = mid
            return datetime.fromtimestamp(high, UTC)
        before = probe
    return None


@dataclass(frozen=True)
class Recurrence:
    """A cron expression in a zone, with optional business-days and active-hours filters."""

    cron: CronExpression
    zone: ZoneInfo
    business_days: bool = False
    active_hours: TimeWindow | None = None
    # Minutes, hours and days of the week (Monday 00:00 = 0) the active hours touch.
    _open_minutes: frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    _open_hours: frozenset[int] = field(default=frozenset(), repr=False, compare=False)
    _open_days: frozenset[int] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def of(
        cls,
        cron: str | CronExpression,
        zone: str | ZoneInfo,
        *,
        business_days: bool = False,
        active_hours: str | TimeWindow | None = None,
    ) -> Recurrence:
        """Build one; :class:`~workers.cron.CronError` or
        :class:`~workers.window.WindowError` for bad input."""
        expression = CronExpression.parse(cron) if isinstance(cron, str) else cron
        window = TimeWindow.parse(active_hours) if isinstance(active_hours, str) else active_hours
        minutes: set[int] = set()
        if window is not None:
            for begin, end in window.spans:
                minutes.update(m % _WEEK for m in range(begin, end))
        return cls(
            expression,
            zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone),
            business_days,
            window,
            frozenset(minutes),
            frozenset(m // 60 for m in minutes),
            frozenset(m // _MINUTES_PER_DAY for m in minutes),
        )

    # --- wall-clock matching ---------------------------------------------------
    def _day_ok(self, day: date) -> bool:
        if self.business_days and day.weekday() >= 5:
            return False
        if self.active_hours is not None and day.weekday() not in self._open_days:
            return False
        return self.cron.matches_day(day)

    def _match(self, start: datetime, limit: datetime) -> datetime | None:
        """The first naive wall-clock time in ``[start, limit)`` (whole seconds) that the
        expression and the filters allow; ``None`` if there is none."""
        cron, active = self.cron, self.active_hours is not None
        t = start
        while t < limit:
            if t.month not in cron.months:
                later = [m for m in cron.months if m > t.month]
                year, month = (t.year, later[0]) if later else (t.year + 1, cron.months[0])
                t = datetime(year, month, 1)
                continue
            if not self._day_ok(t.date()):
                t = datetime.combine(t.date() + timedelta(days=1), datetime.min.time())
                continue
            hour = next((h for h in cron.hours if h >= t.hour), None)
            if hour is None:
                t = datetime.combine(t.date() + timedelta(days=1), datetime.min.time())
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0, second=0)
                continue
            week_minute = t.weekday() * _MINUTES_PER_DAY + t.hour * 60 + t.minute
            if active and week_minute // 60 not in self._open_hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            minute = next((m for m in cron.minutes if m >= t.minute), None)
            if minute is None:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if minute != t.minute:
                t = t.replace(minute=minute, second=0)
                continue
            if active and week_minute not in self._open_minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            second = next((s for s in cron.seconds if s >= t.second), None)
            if second is None:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            return t.replace(second=second)
        return None

    # --- instants ----------------------------------------------------------------
    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after the aware time ``after``, in the zone;
        ``None`` if there is none within :data:`HORIZON`."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        current = after.astimezone(UTC)
        inclusive = False
        limit = current + HORIZON
        for _ in range(_STEPS):
            offset = _offset(self.zone, current)
            local = (current + offset).replace(tzinfo=None)
            start = local if inclusive else local.replace(microsecond=0) + _SECOND
            found = self._match(start, (limit + offset).replace(tzinfo=None))
            if found is None:
                return None
            candidate = (found - offset).replace(tzinfo=UTC)
            change = _first_change(self.zone, current, candidate)
            if change is None:
                if not self.cron.follows_clock and self._second_pass(found, candidate):
                    current, inclusive = candidate, False
                    continue
                return candidate.astimezone(self.zone)
            after_change = _offset(self.zone, change)
            if after_change > offset and not self.cron.follows_clock:
                # The clocks jump forward at `change`: wall times in the gap fire then, once.
                gap_start = (change + offset).replace(tzinfo=None)
                gap_end = (change + after_change).replace(tzinfo=None)
                if self._match(gap_start, gap_end) is not None:
                    return change.astimezone(self.zone)
            current, inclusive = change, True
        raise RuntimeError(f"no firing of {self.cron} found in {_STEPS} steps")

    def _second_pass(self, wall: datetime, instant: datetime) -> bool:
        """Whether ``instant`` is the repeat of ``wall`` in an hour the clocks go through twice."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC) < instant

    def latest_between(self, after: datetime, until: datetime) -> datetime | None:
        """The last firing in ``(after, until]``, or ``None``: a few :meth:`next_after`
        calls however many firings the span holds (galloping back from ``until``, then
        bisecting; firings are whole seconds)."""
        first = self.next_after(after)
        if first is None or first > until:
            return None
        top = math.floor(until.timestamp())

        def fires_after(second: int) -> bool:  # is there a firing in (second, top]?
            found = self.next_after(datetime.fromtimestamp(second, UTC))
            return found is not None and found.timestamp() <= top

        good, bad = math.floor(after.timestamp()), top
        step = 1
        while bad - step > good:
            if fires_after(bad - step):
                good = bad - step
                break
            bad, step = bad - step, step * 2
        while bad - good > 1:
            mid = (good + bad) // 2
            if fires_after(mid):
                good = mid
            else:
                bad = mid
        # A firing in (good, top] but none in (good + 1, top]: it is good + 1.
        return datetime.fromtimestamp(good + 1, UTC).astimezone(self.zone)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` firings after ``after`` (fewer if the horizon ends first)."""
        found: list[datetime] = []
        current: datetime | None = after
        while len(found) < count and current is not None:
            current = self.next_after(current)
            if current is not None:
                found.append(current)
        return found
