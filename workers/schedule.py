"""The recurring jobs: the built-in schedule, plus ``HERALD_SCHEDULE_FILE``.

The file is TOML; each ``[jobs.NAME]`` table adds a job, or changes the
built-in job of that name (only the keys it gives; ``enabled = false`` turns it
off)::

    [jobs.nightly-report]
    cron = "0 6 * * mon-fri"          # 5 fields, or 6 with a leading seconds field
    kind = "reports.grades"
    params = { course = "DEMO101" }
    queue = "io"                        # default: the kind's queue
    priority = -10                      # -100..100
    business_days = true                # Monday to Friday only
    active_hours = "08:00-18:00"        # in HERALD_TIMEZONE; the queue-window syntax
    missed = "once"                     # or "skip" (the default)

Everything is checked when a process loads the schedule; a mistake stops it with
:class:`ScheduleError` naming the file, the job and what is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from herald.settings import Settings, SettingsError
from workers.cron import CronError
from workers.queue import MAX_PRIORITY, MIN_PRIORITY
from workers.recurrence import HORIZON, Recurrence
from workers.window import WindowError

__all__ = [
    "BUILTIN_JOBS",
    "MissedPolicy",
    "ScheduleError",
    "ScheduledJob",
    "load_schedule",
    "parse_jobs",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PARAMS_LIMIT = 64 * 1024


class ScheduleError(SettingsError):
    """The schedule cannot be used; the message names the file, the job and the fault."""


class MissedPolicy(StrEnum):
    """What a firing no scheduler handled in time (all were down) turns into."""

    SKIP = "skip"  # dropped: the job waits for its next time
    ONCE = "once"  # one catch-up run, for the latest missed firing, if at most 24 h old


@dataclass(frozen=True)
class ScheduledJob:
    """A recurring job: when it fires, and the task each firing submits."""

    name: str
    cron: str
    kind: str
    when: Recurrence
    params: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None  # None: the kind's own queue
    priority: int = 0
    business_days: bool = False
    active_hours: str | None = None
    missed: MissedPolicy = MissedPolicy.SKIP
    enabled: bool = True
    about: str = ""
    builtin: bool = False


# The built-in schedule: kept short, each job a real need. A schedule file changes
# or disables one by its name.
BUILTIN_JOBS: dict[str, dict[str, Any]] = {
    "outputs.purge": {
        "cron": "0 3 * * *",
        "kind": "outputs.purge",
        # A purge missed overnight is still wanted in the morning, once.
        "missed": "once",
        "about": "delete task outputs older than HERALD_OUTPUT_RETENTION_DAYS",
    },
}

_KEYS = {
    "cron": str,
    "kind": str,
    "params": dict,
    "queue": str,
    "priority": int,
    "business_days": bool,
    "active_hours": str,
    "missed": str,
    "enabled": bool,
    "about": str,
}


def _job(
    name: str, table: dict[str, Any], zone: str, *, builtin: bool, now: datetime
) -> ScheduledJob:
    """One job from its table; ``ValueError`` says what is wrong with it."""
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    for key, kind in _KEYS.items():
        value = table.get(key)
        # bool is an int to Python; a priority of `true` is still a mistake.
        if value is not None and (
            not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        ):
            raise ValueError(f"{key} must be {_TYPE_NAMES[kind]}, not {value!r}")
    for key in ("cron", "kind"):
        if not table.get(key):
            raise ValueError(f"{key} is required")
    params = table.get("params") or {}
    try:
        encoded = json.dumps(params)
    except (TypeError, ValueError):
        raise ValueError("params must hold JSON values (TOML dates and times are not)") from None
    if len(encoded) > _PARAMS_LIMIT:
        raise ValueError(f"params must be at most {_PARAMS_LIMIT // 1024} KiB of JSON")
    priority = table.get("priority", 0)
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}")
    queue = table.get("queue")
    if queue is not None and not _NAME.fullmatch(queue):
        raise ValueError(f"queue {queue!r} is not a queue name")
    try:
        missed = MissedPolicy(table.get("missed", MissedPolicy.SKIP))
    except ValueError:
        choices = ", ".join(repr(p.value) for p in MissedPolicy)
        raise ValueError(f"missed must be one of {choices}") from None
    try:
        when = Recurrence.of(
            table["cron"],
            zone,
            business_days=table.get("business_days", False),
            active_hours=table.get("active_hours"),
        )
    except (CronError, WindowError) as exc:
        raise ValueError(str(exc)) from None
    job = ScheduledJob(
        name=name,
        cron=when.cron.text,
        kind=table["kind"],
        when=when,
        params=params,
        queue=queue,
        priority=priority,
        business_days=table.get("business_days", False),
        active_hours=table.get("active_hours"),
        missed=missed,
        enabled=table.get("enabled", True),
        about=table.get("about", ""),
        builtin=builtin,
    )
    if job.enabled and when.next_after(now) is None:
        years = HORIZON.days // 366
        raise ValueError(
            f"never fires: no time in the next {years} years matches cron {job.cron!r}"
            + (" on business days" if job.business_days else "")
            + (f" within active hours {job.active_hours!r}" if job.active_hours else "")
        )
    return job


_TYPE_NAMES = {
    str: "a string",
    dict: "a table",
    int: "an integer",
    bool: "true or false",
}


def parse_jobs(
    document: dict[str, Any],
    zone: str,
    *,
    source: str = "the built-in schedule",
    now: datetime | None = None,
) -> list[ScheduledJob]:
    """The built-in jobs merged with ``document`` (a parsed schedule file), checked."""
    now = now or datetime.now(UTC)
    extra = sorted(set(document) - {"jobs"})
    if extra:
        raise ScheduleError(
            f"{source}: unknown top-level key {extra[0]!r} (jobs go in [jobs.NAME] tables)"
        )
    tables = document.get("jobs", {})
    if not isinstance(tables, dict):
        raise ScheduleError(f"{source}: 'jobs' must be tables, [jobs.NAME]")
    jobs: list[ScheduledJob] = []
    for name in [*BUILTIN_JOBS, *(n for n in tables if n not in BUILTIN_JOBS)]:
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ScheduleError(f"{source}: job {name!r}: must be a table, [jobs.{name}]")
        if not _NAME.fullmatch(name):
            raise ScheduleError(
                f"{source}: job {name!r}: a job name is 1–64 letters, digits, '.', '_' or '-'"
            )
        builtin = name in BUILTIN_JOBS
        merged = {**BUILTIN_JOBS.get(name, {}), **table}
        try:
            jobs.append(_job(name, merged, zone, builtin=builtin, now=now))
        except ValueError as exc:
            raise ScheduleError(f"{source}: job {name!r}: {exc}") from None
    return jobs


def load_schedule(settings: Settings, *, now: datetime | None = None) -> list[ScheduledJob]:
    """Every job (disabled ones included): the built-in schedule and the schedule file."""
    path: Path | None = settings.schedule_file
    if path is None:
        return parse_jobs({}, settings.timezone, now=now)
    source = f"HERALD_SCHEDULE_FILE {path}"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScheduleError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"{source}: not valid TOML: {exc}") from None
    return parse_jobs(document, settings.timezone, source=source, now=now)
