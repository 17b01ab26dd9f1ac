"""Alerts to the admins: a task that failed for good, a queue whose backlog aged past
``HERALD_BACKLOG_ALERT_SECONDS``.

An alert is an :class:`~herald.models.Alert` row with a unique key, stored in the
same transaction as a flash for every active site admin: whoever inserts the row
sends it, and whoever finds the key taken sends nothing, so an alert reported
twice (a settle retried after its DB part committed; the sweep catching up on
what a crash lost) is raised once. After the commit the flashes go out live and,
with ``HERALD_ALERT_EMAILS``, one email to those addresses under a key per alert
(the outbox keeps one file per key; a message that could not be sent is tried
again by the sweep).

The engine reports failures as it settles them, in the background
(:class:`AlertSender`), so the settle path never waits for a flash or an email;
the monitor's periodic :func:`sweep` raises any failure of the last hour that
has no alert yet and retries unsent emails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from redis.exceptions import RedisError
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.events import EventPublisher
from herald.flash import Flash, add_flashes, flash_json, publish_flashes
from herald.logs import get_logger
from herald.models import Alert, AlertKind, Task, TaskStatus, User, utcnow
from herald.settings import Settings
from workers.mailer import DEFAULT_SENDER, Mailer, MailError

__all__ = [
    "AlertSender",
    "FailedTask",
    "Raised",
    "alert_for_failure",
    "raise_alert",
    "sweep",
]

log = get_logger(__name__)

FAILURE_LEVEL = "warning"
BACKLOG_LEVEL = "urgent"
# The sweep raises failures this recent that have no alert yet (a crash lost them).
SWEEP_WINDOW = timedelta(hours=1)
# Unsent emails are retried this long after their alert, once the sender has had its go.
EMAIL_RETRY_AFTER = timedelta(minutes=1)
EMAIL_RETRY_FOR = timedelta(days=1)
# Alert rows are kept this long (the sweep looks back only SWEEP_WINDOW).
ALERT_RETENTION = timedelta(days=90)
DRAIN_SECONDS = 10.0
_REASON_LIMIT = 300


@dataclass(frozen=True)
class Raised:
    """An alert to raise: its unique key, what it says and where its flash points."""

    key: str
    kind: AlertKind
    text: str
    button: tuple[str, str]
    level: str
    queue: str | None = None
    task_id: int | None = None


@dataclass(frozen=True)
class FailedTask:
    id: int
    run_id: str | None
    kind: str
    queue: str
    reason: str | None


def _short(text: str | None) -> str:
    text = " ".join((text or "no reason recorded").split())
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def alert_for_failure(task: FailedTask) -> Raised:
    """The alert of one failure: keyed by the task and its run, so a task an operator
    retries and that fails again alerts again, while one failure alerts once."""
    return Raised(
        key=f"task-failed:{task.id}:{task.run_id or '-'}",
        kind=AlertKind.TASK_FAILED,
        text=f"Task {task.id} ({task.kind}, queue {task.queue}) failed for good: "
        f"{_short(task.reason)}",
        button=("Open the task", f"/tasks/{task.id}"),
        level=FAILURE_LEVEL,
        queue=task.queue,
        task_id=task.id,
    )


def _insert(db: AsyncSession) -> postgresql.Insert | sqlite.Insert:
    module = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(Alert)


async def raise_alert(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    alert: Raised,
) -> int | None:
    """Store the alert with a flash for every active admin, deliver them, email it;
    the alert's id, or ``None`` if its key was raised already (nothing is sent)."""
    async with sessions.begin() as db:
        alert_id = await db.scalar(
            _insert(db)
            .values(
                key=alert.key,
                kind=alert.kind,
                queue=alert.queue,
                task_id=alert.task_id,
                text=alert.text,
                created_at=utcnow(),
                # Nothing to email: done with, as far as the sweep is concerned.
                emailed_at=None if settings.alert_emails else utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(Alert.id)
        )
        if alert_id is None:
            return None
        admins = await db.scalars(select(User.id).where(User.is_admin, User.is_active))
        flash = Flash(alert.text, level=alert.level, button=alert.button)
        messages = add_flashes(db, list(admins), flash)
        await db.flush()
        payloads = [(message.user_id, flash_json(message)) for message in messages]
    await publish_flashes(publisher, payloads)
    log.warning("alert.raised", alert_id=alert_id, key=alert.key, admins=len(payloads))
    if settings.alert_emails:
        await _email(
            settings, sessions, alert_id, alert.kind, alert.text, alert.queue, alert.task_id
        )
    return alert_id


def _email_of(kind: AlertKind, task_id: int | None, queue: str | None) -> tuple[str, str]:
    """An alert email's subject, and the page it points to."""
    if kind == AlertKind.TASK_FAILED:
        return f"[Herald] Task {task_id} failed", f"/tasks/{task_id}"
    return f"[Herald] Queue {queue} has a backlog", "/admin/queues"


def _message(settings: Settings, alert_id: int, subject: str, text: str, path: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = DEFAULT_SENDER
    message["To"] = ", ".join(settings.alert_emails)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<alert-{alert_id}@{DEFAULT_SENDER.domain}>"
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"{text}\n\nSee it in Herald at:\n{path}\n\n"
        "-- \nHerald (an alert to the addresses in HERALD_ALERT_EMAILS)\n"
    )
    return message


async def _email(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    alert_id: int,
    kind: AlertKind,
    text: str,
    queue: str | None,
    task_id: int | None,
) -> None:
    """Send the alert's email; record it sent (or given up on a permanent refusal)."""
    subject, path = _email_of(kind, task_id, queue)
    try:
        message = _message(settings, alert_id, subject, text, path)
        await Mailer(settings).send(message, f"alert-{alert_id}")
    except MailError as exc:
        if exc.retryable:
            log.warning("alert.email_deferred", alert_id=alert_id, error=str(exc))
            return
        log.error("alert.email_refused", alert_id=alert_id, error=str(exc))
    except ValueError as exc:  # an address the email package cannot write
        log.error("alert.email_refused", alert_id=alert_id, error=str(exc))
    async with sessions.begin() as db:
        await db.execute(update(Alert).where(Alert.id == alert_id).values(emailed_at=utcnow()))


class AlertSender:
    """Raises the engine's failure alerts off its settle path, in background tasks
    that :meth:`drain` awaits when the worker stops."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._publisher = publisher
        self._tasks: set[asyncio.Task[None]] = set()

    def failed(self, tasks: Sequence[FailedTask]) -> None:
        """Alert these failures (each once, however often reported)."""
        if not tasks:
            return
        job = asyncio.create_task(self._send(list(tasks)), name="failure-alerts")
        self._tasks.add(job)
        job.add_done_callback(self._tasks.discard)

    async def _send(self, tasks: list[FailedTask]) -> None:
        for task in tasks:
            try:
                await raise_alert(
                    self._settings, self._sessions, self._publisher, alert_for_failure(task)
                )
            except (SQLAlchemyError, RedisError, OSError) as exc:
                # Stored nowhere yet: the monitor's sweep raises it on its next pass.
                log.warning("alert.deferred", task_id=task.id, error=str(exc))

    async def drain(self) -> None:
        """Let the alerts being sent finish (within a grace period), then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def sweep(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    now: datetime | None = None,
) -> int:
    """Raise every recent failure that has no alert yet, retry unsent emails, and
    drop old alerts; returns how many alerts it raised."""
    now = now or utcnow()
    async with sessions() as db:
        failed = (
            await db.execute(
                select(Task.id, Task.run_id, Task.kind, Task.queue, Task.detail).where(
                    Task.status == TaskStatus.FAILED, Task.finished_at >= now - SWEEP_WINDOW
                )
            )
        ).all()
        wanted = {alert_for_failure(FailedTask(*row)) for row in failed}
        known = set(
            await db.scalars(select(Alert.key).where(Alert.key.in_([a.key for a in wanted])))
        )
        unsent = (
            await db.execute(
                select(Alert.id, Alert.kind, Alert.task_id, Alert.queue, Alert.text).where(
                    Alert.emailed_at.is_(None),
                    Alert.created_at <= now - EMAIL_RETRY_AFTER,
                    Alert.created_at >= now - EMAIL_RETRY_FOR,
                )
            )
        ).all()
    raised = 0
    for alert in sorted(wanted, key=lambda a: a.key):
        if alert.key not in known and await raise_alert(settings, sessions, publisher, alert):
            raised += 1
    if settings.alert_emails:
        for row in unsent:
            await _email(settings, sessions, row.id, row.kind, row.text, row.queue, row.task_id)
    async with sessions.begin() as db:
        await db.execute(delete(Alert).where(Alert.created_at < now - ALERT_RETENTION))
    return raised
