"""Completion messages: when a task someone submitted themselves (a report, an export,
an import) ends done or failed for good, its owner gets a message in their inbox and
a live flash, each linking to the task's page, with a "Download" button when it made
a file.

Both messages are written by the kind's hooks inside the engine's settle
transaction, which applies once per run's end (the run's fence: see
``workers.ledger``). A settle retried after a crash therefore writes nothing twice,
and a crash after the commit still leaves the inbox message and the flash (shown on
the next page view); only the live delivery of the flash is published afterwards.
Pipeline steps (tasks with a submission) and tasks without an owner get nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, insert, select

from herald.flash import Flash, flash_json, publish_flashes
from herald.models import Assignment, Message, MessageKind, Task, TaskStatus, utcnow
from workers.catalog import user_kind
from workers.context import Services, TaskRun
from workers.kinds import KindHooks, Outcome
from workers.queue import Job

__all__ = ["COMPLETION_HOOKS", "CompletionHooks", "completion_text", "task_link"]

MAX_REASON: Final = 300
MAX_SUBJECT: Final = 120


def task_link(task_id: int) -> str:
    """The page of one task (written by the web's task routes)."""
    return f"/tasks/{task_id}"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _noun(run: TaskRun) -> str:
    entry = user_kind(run.kind)
    if entry is not None:
        return entry.noun
    return (run.spec.label or run.kind).lower()


def _subject(conn: Connection, run: TaskRun) -> str:
    """`` for Essay 1`` when the task is about an assignment, else nothing."""
    assignment_id = run.params.get("assignment_id")
    if isinstance(assignment_id, int) and not isinstance(assignment_id, bool):
        title = conn.scalar(select(Assignment.title).where(Assignment.id == assignment_id))
        if title:
            return f" for {_shorten(title, MAX_SUBJECT)}"
    filename = run.params.get("filename")
    if isinstance(filename, str) and filename:
        return f" of {_shorten(filename, MAX_SUBJECT)}"
    return ""


def completion_text(noun: str, subject: str, *, done: bool, has_output: bool, detail: str) -> str:
    """``Your grades report for Essay 1 is ready (12 submissions).`` or ``… failed: why``."""
    if not done:
        return f"Your {noun}{subject} failed: {_shorten(detail, MAX_REASON)}"
    text = f"Your {noun}{subject} is {'ready' if has_output else 'done'}"
    detail = _shorten(detail, MAX_REASON).rstrip(".")
    return f"{text} ({detail})." if detail else f"{text}."


def _concerned(run: TaskRun) -> bool:
    return run.owner_id is not None and run.submission_id is None


def _store(conn: Connection, run: TaskRun, text: str, done: bool, has_output: bool) -> None:
    link = task_link(run.id)
    button = ("Download", f"/api/tasks/{run.id}/output") if has_output else None
    flash = Flash(text, level="success" if done else "warning", link=link, button=button)
    now = utcnow()
    row = {"user_id": run.owner_id, "level": flash.level, "text": text, "link": link}
    conn.execute(
        insert(Message),
        [
            # The inbox keeps it; it carries the download as the flash does.
            {
                **row,
                "kind": MessageKind.INBOX,
                "options": {"button": flash.options()["button"]} if button else None,
                "created_at": now,
                "expires_at": None,
            },
            {
                **row,
                "kind": MessageKind.FLASH,
                "options": flash.options(),
                "created_at": now,
                "expires_at": now + flash.ttl,
            },
        ],
    )


class CompletionHooks(KindHooks):
    """Hooks of the kinds people submit: the owner hears how it ended."""

    def on_done(self, conn: Connection, run: TaskRun, outcome: Outcome) -> list[Job]:
        if _concerned(run):
            has_output = outcome.output is not None
            text = completion_text(
                _noun(run),
                _subject(conn, run),
                done=True,
                has_output=has_output,
                detail=outcome.detail or "",
            )
            _store(conn, run, text, True, has_output)
        return []

    def on_ended(self, conn: Connection, run: TaskRun, reason: str) -> list[Job]:
        # Called for a failure for good and for a cancel; the row, already updated in
        # this transaction, says which. A cancel was the owner's (or an admin's) doing.
        status = conn.scalar(select(Task.status).where(Task.id == run.id))
        if _concerned(run) and status == TaskStatus.FAILED:
            text = completion_text(
                _noun(run), _subject(conn, run), done=False, has_output=False, detail=reason
            )
            _store(conn, run, text, False, False)
        return []

    async def after_settled(
        self, run: TaskRun, outcome: Outcome | None, services: Services
    ) -> None:
        if not _concerned(run) or run.status not in (TaskStatus.DONE, TaskStatus.FAILED):
            return
        assert run.owner_id is not None
        async with services.sessions() as db:
            # The flash this end stored (a settle retried after its commit finds the same).
            flash = await db.scalar(
                select(Message)
                .where(
                    Message.user_id == run.owner_id,
                    Message.kind == MessageKind.FLASH,
                    Message.link == task_link(run.id),
                    Message.created_at >= utcnow() - timedelta(minutes=10),
                )
                .order_by(Message.id.desc())
                .limit(1)
            )
        if flash is not None:
            await publish_flashes(services.publisher, [(run.owner_id, flash_json(flash))])


COMPLETION_HOOKS = CompletionHooks()
