"""What a running step sees: its ids, a coalesced progress reporter, event emission."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.events import EventPublisher
from herald.models import SubmissionStatus, Task
from herald.names import EventType, submission_topic
from herald.settings import Settings
from workers.pipeline import PipelineStep, overall_progress, step_progress, step_state

__all__ = ["PROGRESS_INTERVAL", "StepContext", "submission_state"]

# At most this often per task does a progress report touch the DB and the wire;
# the final state is always sent (by the runner, when the step ends).
PROGRESS_INTERVAL = 0.2


def submission_state(
    submission_id: int, status: SubmissionStatus, progress: int, detail: str | None
) -> dict[str, Any]:
    return {"id": submission_id, "status": str(status), "progress": progress, "detail": detail}


@dataclass
class StepContext:
    """Handed to a step handler: report progress with :meth:`progress`."""

    task: Task
    step: PipelineStep
    submission_id: int
    attempt: int
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    publisher: EventPublisher
    _last_report: float = field(default=0.0)

    @property
    def idempotency_key(self) -> str:
        """Stable per (task, step): pass it to external services so a re-run repeats nothing."""
        return f"herald:task:{self.task.id}:{self.step.name}"

    async def progress(self, percent: float, detail: str | None = None) -> None:
        """Record progress (0–100); calls closer together than PROGRESS_INTERVAL are dropped."""
        now = time.monotonic()
        if now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        self.task.progress = max(0, min(99, int(percent)))
        if detail is not None:
            self.task.detail = detail
        async with self.sessions.begin() as db:
            # Only this run's progress counts (see runner's DB fencing).
            await db.execute(
                update(Task)
                .where(Task.id == self.task.id, Task.run_id == self.task.run_id)
                .values(progress=self.task.progress, detail=self.task.detail)
            )
        await self.emit(EventType.STEP_PROGRESS, SubmissionStatus.PROCESSING)

    async def emit(
        self, type_: EventType, status: SubmissionStatus, detail: str | None = None
    ) -> None:
        """Publish this step's state with the submission's on ``submission.{id}``."""
        index = self.task.step_index or 0
        progress = overall_progress(status, [100] * index + [step_progress(self.task)])
        await self.publisher.publish(
            submission_topic(self.submission_id),
            type_,
            {
                "submission": submission_state(self.submission_id, status, progress, detail),
                "step": step_state(self.task),
            },
        )
