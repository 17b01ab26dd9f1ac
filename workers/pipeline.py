"""The submission pipeline: which steps run, in which order, on which queue.

Each step is its own task (a DB row and a queue job). Only the first step is
queued at upload; when a step finishes, the worker queues the next one in the
same DB transaction that records the finish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from herald.events import iso
from herald.models import (
    SUBMISSION_FINAL,
    Submission,
    SubmissionStatus,
    Task,
    TaskStatus,
    utcnow,
)

__all__ = [
    "SUBMISSION_STEPS",
    "PipelineStep",
    "StepLike",
    "overall_progress",
    "plan_submission_tasks",
    "step_kind",
    "step_progress",
    "step_state",
]


@dataclass(frozen=True)
class PipelineStep:
    name: str
    queue: str
    label: str
    retry_base: float = 1.0  # seconds before the first retry; doubles each attempt
    max_attempts: int = 3


class StepLike(Protocol):
    """A pipeline task as the wire shows it: a DB row or a live run."""

    @property
    def step_index(self) -> int | None: ...

    @property
    def status(self) -> TaskStatus: ...

    @property
    def progress(self) -> int: ...

    @property
    def detail(self) -> str | None: ...

    @property
    def started_at(self) -> datetime | None: ...

    @property
    def finished_at(self) -> datetime | None: ...


# I/O-bound steps share the "io" queue; CPU-bound ones the "cpu" queue, so a
# deployment can size each pool for its nature.
SUBMISSION_STEPS: tuple[PipelineStep, ...] = (
    PipelineStep("verify", "io", "Checking the upload"),
    PipelineStep("scan", "cpu", "Scanning for viruses"),
    PipelineStep("store", "io", "Storing the file"),
    PipelineStep("analyse", "cpu", "Reading the text"),
)


def step_kind(step: PipelineStep) -> str:
    return f"submission.{step.name}"


def plan_submission_tasks(submission: Submission) -> list[Task]:
    """The pipeline's task rows for a new submission (first queued, rest waiting)."""
    now = utcnow()
    tasks = []
    for index, step in enumerate(SUBMISSION_STEPS):
        first = index == 0
        tasks.append(
            Task(
                kind=step_kind(step),
                queue=step.queue,
                priority=0,
                status=TaskStatus.QUEUED if first else TaskStatus.WAITING,
                progress=0,
                params={"submission_id": submission.id, "step": step.name},
                owner_id=submission.student_id,
                submission=submission,
                step_index=index,
                queued_at=now if first else None,
                max_attempts=step.max_attempts,
            )
        )
    return tasks


# The submission's state on the wire: the HTTP API and the events both use these,
# so a page that resyncs from the API sees exactly what the events told it.
_STEP_FINISHED = frozenset({TaskStatus.DONE, TaskStatus.SKIPPED})


def step_progress(task: StepLike) -> int:
    """0-100 for one step; a finished or skipped step counts in full."""
    if task.status in _STEP_FINISHED:
        return 100
    return max(0, min(100, task.progress or 0))


def overall_progress(status: SubmissionStatus, step_progresses: Iterable[int]) -> int:
    """0-100 over all pipeline steps (missing ones count 0); a finished submission is 100."""
    if status in SUBMISSION_FINAL:
        return 100
    return sum(step_progresses) // len(SUBMISSION_STEPS)


def step_state(task: StepLike) -> dict[str, Any]:
    """A pipeline task's absolute state, as events and the HTTP API show it."""
    step = SUBMISSION_STEPS[task.step_index or 0]
    return {
        "name": step.name,
        "label": step.label,
        "status": str(task.status),
        "progress": step_progress(task),
        "detail": task.detail,
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
    }
