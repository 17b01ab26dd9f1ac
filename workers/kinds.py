"""Task kinds: what a task of each kind runs, on which queue, with which retry policy.

A kind's ``hooks`` let a family of kinds keep its own records in step with the
task's (the submission pipeline updates its submission and queues the next
step); they run inside the engine's batched transactions, so the task row and
those records always change together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from workers.queue import Job

if TYPE_CHECKING:
    from workers.context import Services, TaskContext, TaskRun

__all__ = [
    "KINDS",
    "MAX_RETRY_DELAY",
    "KindHooks",
    "Outcome",
    "TaskFailed",
    "TaskKind",
    "UnknownKind",
    "kind_named",
    "register",
]

MAX_RETRY_DELAY = 300.0


class TaskFailed(Exception):
    """Raised by a handler for a failure no retry can fix: the task fails at once."""


class UnknownKind(LookupError):
    """No task kind of that name is registered."""


@dataclass(frozen=True)
class Outcome:
    """What a handler hands back: a line for people, a JSON-able result, and the file
    it made for its owner to download (written with ``workers.outputs.new_output_path``;
    the engine records it on the task when the run is settled done)."""

    detail: str | None = None
    result: dict[str, Any] | None = None
    output: Path | None = None


Handler = Callable[["TaskContext"], Awaitable[Outcome | None]]


class KindHooks:
    """Bookkeeping a family of kinds keeps beside the task row; every method is a no-op.

    ``on_*`` run inside the engine's transaction (after the task row's own
    change, only when that change applied), synchronously, on its connection;
    ``after_*`` run after the commit.
    """

    def on_started(self, conn: Connection, runs: Sequence[TaskRun]) -> None:
        """Runs have started (one transaction for the batch)."""

    async def after_started(self, run: TaskRun, services: Services) -> None:
        """A run has started and the start is committed."""

    def on_done(self, conn: Connection, run: TaskRun, outcome: Outcome) -> Sequence[Job]:
        """A run succeeded; returns jobs for the tasks this queued (the engine puts
        them in Redis before the run's own job leaves it)."""
        return ()

    def on_ended(self, conn: Connection, run: TaskRun, reason: str) -> list[Job]:
        """A run failed for good (``reason`` says why) or was cancelled; returns the
        jobs of follow-up tasks it queued in ``conn`` (e.g. a pipeline that goes on)."""
        return []

    async def after_settled(
        self, run: TaskRun, outcome: Outcome | None, services: Services
    ) -> None:
        """A run's end (done, failed, cancelled: ``run.status`` says which) is committed.
        ``outcome`` is the handler's, for a run that finished; ``None`` otherwise."""

    async def after_recovered(self, run: TaskRun, services: Services) -> None:
        """A claimed job's task had already finished (a crash between the DB and Redis
        parts of its settle): make sure whatever follows it is queued."""

    def on_retried(self, conn: Connection, task_id: int) -> None:
        """An operator put a failed or cancelled task back on its queue."""

    async def after_retry(self, run: TaskRun, services: Services) -> None:
        """A failed attempt is committed and the job waits for its backoff."""


NO_HOOKS = KindHooks()


@dataclass(frozen=True)
class TaskKind:
    """One kind of task: its handler and its policy."""

    name: str
    queue: str
    handler: Handler
    label: str = ""
    max_attempts: int = 3
    retry_base: float = 1.0  # seconds before the first retry; doubles each attempt
    hooks: KindHooks = field(default=NO_HOOKS)
    # Diagnostic kinds log their runs at debug level: a benchmark's 20,000 no-ops
    # would otherwise be 20,000 lines.
    quiet: bool = False
    # Events about the run go to the owner's user.{id} topic (the pipeline has its own topic).
    notify_owner: bool = True
    # The context handed to the handler, if a family needs more than TaskContext.
    make_context: Callable[[TaskRun, Services], TaskContext] | None = None

    def retry_delay(self, attempt: int) -> float:
        """Backoff after failed attempt ``attempt`` (1-based): base, 2×base, 4×base… capped."""
        return min(self.retry_base * 2 ** (attempt - 1), MAX_RETRY_DELAY)


KINDS: dict[str, TaskKind] = {}


def register(kind: TaskKind) -> TaskKind:
    """Make a kind runnable by workers and submittable by the CLI and API."""
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"task kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> TaskKind:
    """The registered kind called ``name``; :class:`UnknownKind` with the known names if none."""
    _load_builtin_kinds()
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise UnknownKind(f"no task kind {name!r} (known: {known})") from None


def _load_builtin_kinds() -> None:
    # Importing the modules registers their kinds; done lazily because they import
    # the context, which imports this module.
    import workers.diag
    import workers.exports
    import workers.grades
    import workers.imports
    import workers.outputs
    import workers.reports
    import workers.submission_kinds  # noqa: F401
