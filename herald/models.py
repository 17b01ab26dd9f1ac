"""SQLAlchemy 2 models: the database is the truth for users, courses, submissions
and tasks; Redis only carries the work and the live events."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Alert",
    "AlertKind",
    "Assignment",
    "Base",
    "Broadcast",
    "BroadcastAck",
    "BroadcastLevel",
    "Course",
    "CourseRole",
    "Enrolment",
    "Message",
    "MessageKind",
    "QueueSample",
    "QueueSetting",
    "Submission",
    "SubmissionFingerprint",
    "SubmissionStatus",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "User",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class CourseRole(StrEnum):
    STUDENT = "student"
    MARKER = "marker"
    ADMIN = "admin"


STAFF_ROLES = frozenset({CourseRole.MARKER, CourseRole.ADMIN})


class SubmissionStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    COMPLETE = "complete"
    REJECTED = "rejected"
    FAILED = "failed"


SUBMISSION_FINAL = frozenset(
    {SubmissionStatus.COMPLETE, SubmissionStatus.REJECTED, SubmissionStatus.FAILED}
)


class TaskStatus(StrEnum):
    WAITING = "waiting"  # a pipeline step whose earlier steps have not finished
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


TASK_TERMINAL = frozenset(
    {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED}
)


class MessageKind(StrEnum):
    FLASH = "flash"
    INBOX = "inbox"


class BroadcastLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    URGENT = "urgent"  # shown as a modal, over the page until dismissed


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


def _enum(enum_cls: type[StrEnum]) -> Enum:
    # Stored as plain strings (no native ENUM type) so a new member needs no
    # ALTER TYPE on PostgreSQL.
    return Enum(
        enum_cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    enrolments: Mapped[list[Enrolment]] = relationship(back_populates="user")


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))

    enrolments: Mapped[list[Enrolment]] = relationship(back_populates="course")
    assignments: Mapped[list[Assignment]] = relationship(back_populates="course")


class Enrolment(Base):
    __tablename__ = "enrolments"
    __table_args__ = (UniqueConstraint("user_id", "course_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    role: Mapped[CourseRole] = mapped_column(_enum(CourseRole))

    user: Mapped[User] = relationship(back_populates="enrolments")
    course: Mapped[Course] = relationship(back_populates="enrolments")


class Assignment(Base):
    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[datetime | None]
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    # MIME types of the files this assignment takes, as the upload sniffer names
    # them (e.g. ["application/pdf"]); None: every type the site accepts.
    allowed_types: Mapped[list[str] | None] = mapped_column(JSON)

    course: Mapped[Course] = relationship(back_populates="assignments")


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignments.id", ondelete="CASCADE"), index=True
    )
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[SubmissionStatus] = mapped_column(
        _enum(SubmissionStatus), default=SubmissionStatus.RECEIVED
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    upload_path: Mapped[str] = mapped_column(String(1024))
    stored_path: Mapped[str | None] = mapped_column(String(1024))
    word_count: Mapped[int | None]
    status_detail: Mapped[str | None] = mapped_column(Text)
    grade: Mapped[str | None] = mapped_column(String(32))
    grade_released_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    assignment: Mapped[Assignment] = relationship()
    student: Mapped[User] = relationship()
    tasks: Mapped[list[Task]] = relationship(
        back_populates="submission", order_by="Task.step_index"
    )


class SubmissionFingerprint(Base):
    """One winnowed fingerprint of a submission's text (see ``workers.similarity``).

    Each distinct hash is kept once per submission, so a re-run stores the same
    rows. ``assignment_id`` is copied from the submission so that finding the
    other submissions of an assignment that share a hash is one index range:
    (assignment_id, hash) with submission_id on the end, which the similarity
    query reads without touching the table.
    """

    __tablename__ = "submission_fingerprints"
    __table_args__ = (
        Index(
            "ix_submission_fingerprints_assignment_hash", "assignment_id", "hash", "submission_id"
        ),
    )

    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True
    )
    # A 64-bit hash read as a signed integer, so it fits BIGINT on every backend.
    hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    # The first word of the k-gram's first occurrence: where a matched passage starts.
    position: Mapped[int] = mapped_column(Integer)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_kind", "status", "kind"),
        Index("ix_tasks_owner_created", "owner_id", "created_at"),
        # The dashboard's history (throughput, failures, execution times) and the
        # failures-in-the-last-hour counts: one index range per status, and with the
        # queue on the end the counts per queue read the index alone.
        Index("ix_tasks_status_finished", "status", "finished_at", "queue"),
        # The backlog check: a queue's oldest queued tasks, without a sort.
        Index("ix_tasks_status_queue_queued", "status", "queue", "queued_at"),
        # The Background Tasks screen's keyset pages (newest first, by id): a filter on
        # status, kind, queue or owner is one index range read in id order, no sort; a
        # time range reads created_at (web.tasks_query, migration 0009).
        Index("ix_tasks_status_id", "status", "id"),
        Index("ix_tasks_kind_id", "kind", "id"),
        Index("ix_tasks_queue_id", "queue", "id"),
        Index("ix_tasks_owner_id_id", "owner_id", "id"),
        Index("ix_tasks_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Immediate mode: runs at once, outside its queue's window and max-active cap.
    immediate: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # Fencing in the DB: set by each run when it starts; every later write of that
    # run is conditional on it, so a run that has been superseded writes nothing.
    run_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submission_id: Mapped[int | None] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    step_index: Mapped[int | None]
    output_path: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    submission: Mapped[Submission | None] = relationship(back_populates="tasks")
    events: Mapped[list[TaskEvent]] = relationship(
        back_populates="task", order_by="TaskEvent.id", cascade="all, delete-orphan"
    )


class TaskEvent(Base):
    """The audit trail: one row per state change of a task."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)

    task: Mapped[Task] = relationship(back_populates="events")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_user_acked", "user_id", "acked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[MessageKind] = mapped_column(_enum(MessageKind))
    level: Mapped[str] = mapped_column(String(16), default="info")
    text: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(1024))
    # How a flash is shown: {"button": {"label", "url"}, "modal": bool, "autohide": seconds}.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]


class Broadcast(Base):
    """A notice from an admin to everyone (``course_id`` None) or to one course's members.

    One row per broadcast, never one per recipient: who has seen it is the
    :class:`BroadcastAck` rows, so sending to 10,000 users writes one row.
    """

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[BroadcastLevel] = mapped_column(_enum(BroadcastLevel))
    text: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(1024))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Always set (herald.broadcasts bounds it): what a page view reads is the live set.
    expires_at: Mapped[datetime] = mapped_column(index=True)

    course: Mapped[Course | None] = relationship()
    sender: Mapped[User | None] = relationship()


class BroadcastAck(Base):
    """One user has seen one broadcast (the page acknowledged it, or they marked it read)."""

    __tablename__ = "broadcast_acks"

    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    acked_at: Mapped[datetime] = mapped_column(default=utcnow)


class QueueSetting(Base):
    """A queue's run-time settings; the DB is the truth, Redis mirrors what claims read.

    A queue without a row runs with the defaults: not paused, no cap, no window.
    """

    __tablename__ = "queue_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Jobs of this queue running at once across every worker; None: no cap.
    max_active: Mapped[int | None]
    # Hours in which the queue runs, e.g. "Mon-Fri 18:00-08:00"; None: always.
    window: Mapped[str | None] = mapped_column(String(200))
    # Every job of the queue runs at once, outside pause, window and cap.
    immediate: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QueueSample(Base):
    """One queue's depth at one moment: the dashboard's history of what Redis held.

    Written once per cluster every few seconds by ``workers.sampler`` and pruned after
    its retention; task rows cannot say how long a queue was, only what finished.
    """

    __tablename__ = "queue_samples"
    __table_args__ = (Index("ix_queue_samples_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    queue: Mapped[str] = mapped_column(String(64))
    waiting: Mapped[int] = mapped_column(Integer)  # ready and immediate jobs
    delayed: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)


class AlertKind(StrEnum):
    TASK_FAILED = "task_failed"
    BACKLOG = "backlog"


class Alert(Base):
    """An alert raised to the admins (``workers.alerts``): a flash each, and an email.

    ``key`` is unique, so however many times a failure is reported (a settle retried,
    the sweep that catches what a crash lost) it is raised once. A backlog alert is
    open until its queue's backlog clears (``ended_at``).
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind))
    queue: Mapped[str | None] = mapped_column(String(64))
    task_id: Mapped[int | None]
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    # Set once the email went out, or could never go (a permanent refusal, or none
    # configured); the sweep retries the others.
    emailed_at: Mapped[datetime | None]
