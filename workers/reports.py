"""Report task kinds: an assignment's grades, its similarity overview, and the queue
and task statistics. Each reads the database once, writes one file with
:func:`workers.outputs.new_output_path` and hands it back as the task's output.

- ``reports.grades`` ``{"assignment_id"}`` (course staff): a CSV row per submission.
- ``reports.similarity`` ``{"assignment_id", "format": "csv" | "pdf"}`` (course
  staff): each submission's similarity as the pipeline's plagiarism step recorded it
  (its task's result; nothing is recomputed), highest first.
- ``reports.queue_stats`` ``{"days": 1-366, default 7}`` (site admins): per queue and
  kind, the tasks created in the period by status, and how long the finished ones ran.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import and_, func, select

from herald.models import Submission, Task, TaskStatus, User, utcnow
from workers._assignment import AssignmentInfo, find_assignment
from workers.catalog import CATALOG, GRADES_REPORT, QUEUE_STATS_REPORT, SIMILARITY_REPORT
from workers.completion import COMPLETION_HOOKS
from workers.context import TaskContext
from workers.csvfiles import Cell, write_csv
from workers.kinds import Outcome, TaskFailed, TaskKind, register
from workers.outputs import new_output_path, writing
from workers.pdf import text_pdf
from workers.pipeline import STEP_INDEX, SUBMISSION_STEPS, step_kind

__all__ = ["grades_report", "percentile", "queue_stats_report", "similarity_report"]

# Progress is reported (and a cancel noticed) every this many rows.
ROWS_PER_REPORT: Final = 500
PLAGIARISM_KIND: Final = step_kind(SUBMISSION_STEPS[STEP_INDEX["plagiarism"]])
GRADES_HEADER: Final = (
    "student",
    "username",
    "submission id",
    "file",
    "submitted at (UTC)",
    "status",
    "grade",
    "released at (UTC)",
)
SIMILARITY_HEADER: Final = (
    "student",
    "username",
    "submission id",
    "file",
    "submitted at (UTC)",
    "check",
    "similarity %",
    "engine",
    "compared with",
    "closest submission",
    "closest student",
    "closest %",
    "other matches",
    "detail",
)
STATS_HEADER: Final = (
    "queue",
    "kind",
    "total",
    *(str(status) for status in TaskStatus),
    "run p50 (s)",
    "run p95 (s)",
    "from (UTC)",
    "to (UTC)",
)


async def _tick(ctx: TaskContext, done: int, total: int, share: float, what: str) -> None:
    """Every ROWS_PER_REPORT rows: report progress up to ``share``%, and stop if cancelled."""
    if done % ROWS_PER_REPORT == 0:
        if ctx.cancelled:
            raise asyncio.CancelledError
        await ctx.progress(share * done / max(total, 1), f"{done} of {total} {what}")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


async def grades_report(ctx: TaskContext) -> Outcome:
    """A CSV of every submission of the assignment with its grade, by student."""
    assignment = await find_assignment(ctx)
    await ctx.progress(5, "reading the submissions")
    async with ctx.sessions() as db:
        found = (
            await db.execute(
                select(Submission, User.display_name, User.username)
                .join(User, User.id == Submission.student_id)
                .where(Submission.assignment_id == assignment.id)
                .order_by(User.display_name, User.username, Submission.created_at, Submission.id)
            )
        ).all()
    rows: list[list[Cell]] = []
    for done, (submission, name, username) in enumerate(found, 1):
        rows.append(
            [
                name,
                username,
                submission.id,
                submission.filename,
                submission.created_at,
                str(submission.status),
                submission.grade,
                submission.grade_released_at,
            ]
        )
        await _tick(ctx, done, len(found), 90, "submissions")
    path = new_output_path(ctx, f"{assignment.course}-{assignment.title}-grades.csv")
    await asyncio.to_thread(write_csv, path, GRADES_HEADER, rows)
    graded = sum(1 for submission, _, _ in found if submission.grade is not None)
    return Outcome(
        detail=f"{_plural(len(rows), 'submission')}, {graded} graded",
        result={"submissions": len(rows), "graded": graded},
        output=path,
    )


@dataclass(frozen=True)
class _Match:
    label: str  # "#12", or an external service's reference
    student: str  # the username, when it is a submission of this assignment
    percent: float

    def text(self, digits: int = 1) -> str:
        return " ".join(p for p in (self.label, self.student, f"{self.percent:.{digits}f}%") if p)


def _matches(result: dict[str, Any], students: dict[int, str]) -> list[_Match]:
    """Each recorded match, closest first (the built-in engine names submissions,
    an external service references, ``submission-{id}`` for ours)."""
    found = []
    for match in result.get("matches") or []:
        if not isinstance(match, dict):
            continue
        percent = float(match.get("percent") or 0)
        other: int | None = None
        if isinstance(match.get("submission_id"), int):
            other = int(match["submission_id"])
            label = f"#{other}"
        elif isinstance(match.get("reference"), str):
            number = match["reference"].removeprefix("submission-")
            other = int(number) if number.isdigit() else None
            label = f"#{other}" if other is not None else match["reference"]
        else:
            continue
        found.append(_Match(label, students.get(other or 0, ""), percent))
    return sorted(found, key=lambda m: -m.percent)


@dataclass(frozen=True)
class _Similarity:
    """One submission's line of the overview."""

    name: str
    username: str
    submission: Submission
    check: str
    score: float | None
    result: dict[str, Any]
    matches: list[_Match]
    detail: str | None

    @property
    def order(self) -> tuple[bool, float, str, str, int]:
        """Highest score first; unchecked ones last; then by student."""
        return (
            self.score is None,
            -(self.score or 0),
            self.name,
            self.username,
            self.submission.id,
        )

    def cells(self) -> list[Cell]:
        closest = self.matches[0] if self.matches else None
        return [
            self.name,
            self.username,
            self.submission.id,
            self.submission.filename,
            self.submission.created_at,
            self.check,
            self.score,
            self.result.get("engine"),
            self.result.get("compared"),
            closest.label if closest else None,
            closest.student if closest else None,
            closest.percent if closest else None,
            "; ".join(match.text() for match in self.matches[1:]),
            self.detail,
        ]

    def line(self) -> str:
        shown = f"{self.score:5.1f}%" if self.score is not None else "    - "
        student = f"{self.name} ({self.username})"
        closest = self.matches[0].text(0) if self.matches else ""
        return (
            f"{shown:>6}  {student[:28]:<28} {self.submission.id:>7}  "
            f"{closest[:22]:<22} {self.check:<10}"
        )


def _similarity(
    submission: Submission, name: str, username: str, task: Task | None, students: dict[int, str]
) -> _Similarity:
    result = task.result if task is not None and isinstance(task.result, dict) else {}
    score = result.get("score")
    done = task is not None and task.status == TaskStatus.DONE
    return _Similarity(
        name,
        username,
        submission,
        str(task.status) if task is not None else "not checked",
        float(score) if done and isinstance(score, int | float) else None,
        result,
        _matches(result, students),
        task.detail if task is not None else None,
    )


def _similarity_lines(assignment: AssignmentInfo, rows: list[_Similarity]) -> list[str]:
    """The PDF's lines: a fixed-width table (Courier), then what the columns mean."""
    return [
        f"Course {assignment.course}, assignment #{assignment.id}, "
        f"{_plural(len(rows), 'submission')}; generated {utcnow():%Y-%m-%d %H:%M} UTC.",
        "",
        f"{'Score':>6}  {'Student':<28} {'Sub.':>7}  {'Closest':<22} {'Check':<10}",
        "-" * 80,
        *(row.line() for row in rows),
        "",
        "Score: the share of the submission's text found in the closest other submission.",
        "Closest: that submission, its student and its share. Check: the plagiarism step's status.",
    ]


async def similarity_report(ctx: TaskContext) -> Outcome:
    """Each submission's recorded similarity, highest first (CSV or PDF)."""
    form = ctx.params.get("format", "csv")
    if form not in ("csv", "pdf"):
        raise TaskFailed("format must be csv or pdf")
    assignment = await find_assignment(ctx)
    await ctx.progress(5, "reading the similarity checks")
    async with ctx.sessions() as db:
        found = (
            await db.execute(
                select(Submission, User.display_name, User.username, Task)
                .join(User, User.id == Submission.student_id)
                .outerjoin(
                    Task, and_(Task.submission_id == Submission.id, Task.kind == PLAGIARISM_KIND)
                )
                .where(Submission.assignment_id == assignment.id)
                .order_by(Submission.id)
            )
        ).all()
    students = {submission.id: username for submission, _, username, _ in found}
    rows: list[_Similarity] = []
    for done, (submission, name, username, task) in enumerate(found, 1):
        rows.append(_similarity(submission, name, username, task, students))
        await _tick(ctx, done, len(found), 80, "submissions")
    rows.sort(key=lambda row: row.order)
    stem = f"{assignment.course}-{assignment.title}-similarity"
    if form == "pdf":
        data = text_pdf(
            f"Similarity overview: {assignment.title}", _similarity_lines(assignment, rows)
        )
        path = new_output_path(ctx, f"{stem}.pdf")

        def write() -> None:
            with writing(path) as out:
                out.write(data)

        await asyncio.to_thread(write)
    else:
        path = new_output_path(ctx, f"{stem}.csv")
        cells = [row.cells() for row in rows]
        await asyncio.to_thread(write_csv, path, SIMILARITY_HEADER, cells)
    scores = [row.score for row in rows if row.score is not None]
    highest = max(scores, default=None)
    detail = f"{_plural(len(rows), 'submission')}, {len(scores)} checked"
    if highest is not None:
        detail += f", highest {highest:.0f}%"
    return Outcome(
        detail=detail,
        result={"submissions": len(rows), "checked": len(scores), "highest": highest},
        output=path,
    )


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` 0–1) of sorted values; ``None`` if empty."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def queue_stats_report(ctx: TaskContext) -> Outcome:
    """Per queue and kind: counts by status and run-time percentiles over ``days``."""
    days = ctx.params.get("days", 7)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366:
        raise TaskFailed("days must be a whole number from 1 to 366")
    until = utcnow()
    since = until - timedelta(days=days)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    async with ctx.sessions() as db:
        grouped = await db.execute(
            select(Task.queue, Task.kind, Task.status, func.count())
            .where(Task.created_at >= since)
            .group_by(Task.queue, Task.kind, Task.status)
        )
        for queue, kind, status, count in grouped:
            counts[(queue, kind)][str(status)] += count
        total = sum(counts[key][TaskStatus.DONE.value] for key in counts)
        await ctx.progress(20, "reading run times")
        # The run time of a done task: its last attempt, from start to finish.
        runs = await db.stream(
            select(Task.queue, Task.kind, Task.started_at, Task.finished_at)
            .where(
                Task.created_at >= since,
                Task.status == TaskStatus.DONE,
                Task.started_at.is_not(None),
                Task.finished_at.is_not(None),
            )
            .execution_options(yield_per=5000)
        )
        done = 0
        async for queue, kind, started, finished in runs:
            assert started is not None and finished is not None  # as the query asked
            durations[(queue, kind)].append((finished - started).total_seconds())
            done += 1
            if done % 5000 == 0:
                await _tick(ctx, done, total, 80, "run times")
    rows: list[list[Cell]] = []
    tasks = 0
    for queue, kind in sorted(counts):
        by_status = counts[(queue, kind)]
        tasks += sum(by_status.values())
        ordered = sorted(durations[(queue, kind)])
        p50, p95 = percentile(ordered, 0.5), percentile(ordered, 0.95)
        rows.append(
            [
                queue,
                kind,
                sum(by_status.values()),
                *(by_status.get(str(status), 0) for status in TaskStatus),
                round(p50, 3) if p50 is not None else None,
                round(p95, 3) if p95 is not None else None,
                since,
                until,
            ]
        )
    path = new_output_path(ctx, f"queue-stats-{days}-days-{until:%Y-%m-%d}.csv")
    await asyncio.to_thread(write_csv, path, STATS_HEADER, rows)
    return Outcome(
        detail=f"{_plural(tasks, 'task')} in {_plural(len(rows), 'queue and kind pair')} "
        f"over {_plural(days, 'day')}",
        result={"rows": len(rows), "tasks": tasks, "days": days},
        output=path,
    )


for _name, _handler in (
    (GRADES_REPORT, grades_report),
    (SIMILARITY_REPORT, similarity_report),
    (QUEUE_STATS_REPORT, queue_stats_report),
):
    register(
        TaskKind(
            _name,
            "io",
            _handler,
            label=CATALOG[_name].label,
            max_attempts=3,
            hooks=COMPLETION_HOOKS,
        )
    )
