"""Every name on the wire, in one place: WAMP realm, roles, procedures and topics,
Redis keys and channels, and event types.

Topics and Redis channels share their names (DESIGN.md): the bridge relays the
Redis channel ``submission.420`` to the WAMP topic ``submission.420``.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "ADMIN_TASKS",
    "BRIDGE_CHANNELS",
    "BRIDGE_PATTERNS",
    "BROADCAST",
    "PROC_AUTHENTICATE",
    "PROC_AUTHORIZE",
    "REALM",
    "ROLE_BACKEND",
    "ROLE_BROWSER",
    "EventType",
    "TopicFamily",
    "assignment_topic",
    "course_topic",
    "parse_topic",
    "submission_topic",
    "user_topic",
]

# --- WAMP -----------------------------------------------------------------
REALM = "herald"
ROLE_BACKEND = "backend"
ROLE_BROWSER = "user"
BACKEND_AUTHID = "herald-backend"
PROC_AUTHENTICATE = "herald.auth.authenticate"
PROC_AUTHORIZE = "herald.auth.authorize"
ERROR_AUTH_FAILED = "herald.error.authentication_failed"
# Close reasons a browser session is killed with (wamp.session.kill*); the page
# reconnects with a fresh ticket, which fails once the web session is gone.
CLOSE_SIGNED_OUT = "herald.close.signed_out"
CLOSE_ACCOUNT_DISABLED = "herald.close.account_disabled"
CLOSE_ACCESS_CHANGED = "herald.close.access_changed"


# --- Topics ---------------------------------------------------------------
class TopicFamily(StrEnum):
    SUBMISSION = "submission"
    ASSIGNMENT = "assignment"
    USER = "user"
    COURSE = "course"


BROADCAST = "broadcast"
ADMIN_TASKS = "admin.tasks"

# Ids in topics are canonical decimal: no sign, no leading zero, ASCII digits only,
# and no larger than an id column can hold (INTEGER on PostgreSQL): a bigger id names
# no row, and binding it to a query would be an error rather than a "no".
MAX_ROW_ID = 2**31 - 1
_TOPIC_RE = re.compile(r"(submission|assignment|user|course)\.([1-9][0-9]{0,9})", re.ASCII)


def submission_topic(submission_id: int) -> str:
    return f"{TopicFamily.SUBMISSION}.{submission_id}"


def assignment_topic(assignment_id: int) -> str:
    return f"{TopicFamily.ASSIGNMENT}.{assignment_id}"


def user_topic(user_id: int) -> str:
    return f"{TopicFamily.USER}.{user_id}"


def course_topic(course_id: int) -> str:
    return f"{TopicFamily.COURSE}.{course_id}"


def parse_topic(topic: str) -> tuple[TopicFamily, int] | None:
    """Split ``family.id`` topics; ``None`` for anything not exactly in that form."""
    match = _TOPIC_RE.fullmatch(topic)
    if match is None:
        return None
    ident = int(match.group(2))
    if ident > MAX_ROW_ID:
        return None
    return TopicFamily(match.group(1)), ident


# The bridge listens to these Redis patterns and channels.
BRIDGE_PATTERNS = tuple(f"{family}.*" for family in TopicFamily)
BRIDGE_CHANNELS = (BROADCAST, ADMIN_TASKS)


# --- Redis keys -----------------------------------------------------------
KEY_PREFIX = "herald:"


def seq_key(topic: str) -> str:
    """Counter behind the envelope's per-topic ``seq``."""
    return f"{KEY_PREFIX}seq:{topic}"


def session_key(session_digest: str) -> str:
    return f"{KEY_PREFIX}session:{session_digest}"


def user_sessions_key(user_id: int) -> str:
    return f"{KEY_PREFIX}user-sessions:{user_id}"


def ticket_key(ticket_digest: str) -> str:
    return f"{KEY_PREFIX}ticket:{ticket_digest}"


def session_wamp_key(session_digest: str) -> str:
    """Set of the WAMP session ids that joined with tickets of this web session."""
    return f"{KEY_PREFIX}session-wamp:{session_digest}"


def wamp_session_key(wamp_session_id: int) -> str:
    """The web session digest a WAMP session joined with (the reverse of session_wamp_key)."""
    return f"{KEY_PREFIX}wamp-session:{wamp_session_id}"


def login_failures_key(counter: str) -> str:
    """Failed sign-ins of one ``account:{username digest}`` or ``address:{bucket}``
    (web.ratelimit). One hash tag for all: the limiter's script touches two at once,
    which Redis Cluster allows only within one slot."""
    return f"{KEY_PREFIX}{{login-failures}}:{counter}"


# Pub/sub channel announcing sign-outs and access changes to every router-auth
# process (herald.access_events); it carries ids only, never tokens.
ACCESS_EVENTS_CHANNEL = f"{KEY_PREFIX}access-events"


def queue_ready_key(queue: str) -> str:
    """Sorted set of job ids ready to run, scored by priority then arrival."""
    return f"{KEY_PREFIX}q:{queue}:ready"


def queue_leases_key(queue: str) -> str:
    """Sorted set of job ids being run, scored by lease deadline (ms)."""
    return f"{KEY_PREFIX}q:{queue}:leases"


def queue_delayed_key(queue: str) -> str:
    """Sorted set of job ids waiting for a time (retry backoff, run-at), scored by due time (ms)."""
    return f"{KEY_PREFIX}q:{queue}:delayed"


def queue_wake_key(queue: str) -> str:
    """List workers block on when the queue is empty; enqueues push a token."""
    return f"{KEY_PREFIX}q:{queue}:wake"


def queue_urgent_key(queue: str) -> str:
    """Sorted set of immediate-mode job ids: claimed before ``ready``, outside the
    queue's pause, window and max-active cap."""
    return f"{KEY_PREFIX}q:{queue}:urgent"


def queue_active_key(queue: str) -> str:
    """The max-active semaphore: capped job ids being run, scored by lease deadline (ms)."""
    return f"{KEY_PREFIX}q:{queue}:active"


def queue_settings_key(queue: str) -> str:
    """Hash mirroring the queue's DB settings that claims read: ``paused``, ``max_active``."""
    return f"{KEY_PREFIX}q:{queue}:settings"


QUEUE_ARRIVALS_KEY = f"{KEY_PREFIX}q:arrivals"
QUEUES_KEY = f"{KEY_PREFIX}queues"
# Sorted set of task ids that failed for good, scored by failure time (ms).
DEAD_LETTER_KEY = f"{KEY_PREFIX}dead"


# The scheduler's state (workers._schedule_state), in one hash slot so each of its
# scripts may touch all it needs on a cluster: a hash of per-job cursors, and a claim
# per firing.
SCHEDULE_STATE_KEY = f"{KEY_PREFIX}{{schedule}}:state"


def schedule_claim_key(job: str, due_ms: int) -> str:
    """Held by the scheduler submitting ``job``'s firing due at ``due_ms``."""
    return f"{KEY_PREFIX}{{schedule}}:claim:{job}:{due_ms}"


def job_key(job_id: str) -> str:
    """Hash with a job's kind, payload, attempts and current lease token."""
    return f"{KEY_PREFIX}job:{job_id}"


# --- Monitoring: metrics shared by every process, the once-per-cluster monitor --------
# Hashes of cluster-wide counters (herald.metrics): field -> count.
METRICS_TASKS_KEY = f"{KEY_PREFIX}metrics:tasks"
METRICS_DURATIONS_KEY = f"{KEY_PREFIX}metrics:durations"
METRICS_EVENTS_KEY = f"{KEY_PREFIX}metrics:events"
# Hash: router node -> JSON {"count", "at"} of its live browser sessions (router auth).
METRICS_WAMP_SESSIONS_KEY = f"{KEY_PREFIX}metrics:wamp-sessions"
# Held by the worker running the monitor pass (sampler, backlog check, alert sweep).
MONITOR_LOCK = f"{KEY_PREFIX}monitor-lock"
# Hash: queue -> the age in seconds of its oldest ready job, as the monitor last saw it.
BACKLOG_AGE_KEY = f"{KEY_PREFIX}monitor:backlog-age"
# Hash: queue -> UNIX time the monitor last saw it held (paused, or outside its window):
# jobs waiting while a queue is held by an operator are not a backlog.
QUEUE_HELD_KEY = f"{KEY_PREFIX}monitor:held"


# --- Event types ------------------------------------------------------------
class EventType(StrEnum):
    """The ``type`` of an event envelope."""

    STEP_STARTED = "step.started"
    STEP_PROGRESS = "step.progress"
    STEP_DONE = "step.done"
    STEP_FAILED = "step.failed"
    SUBMISSION_STATUS = "submission.status"
    # On admin.tasks: the states of the tasks that changed since the last batch.
    TASKS_CHANGED = "tasks.changed"
    # On admin.tasks: a task failed for good (the alert).
    TASK_FAILED = "task.failed"
    # On user.{owner}: one of the user's own tasks changed state or progress.
    TASK_STATE = "task.state"
    # On submission.{id}: its grade was released.
    GRADE_RELEASED = "grade.released"
    # On assignment.{id}: a release ran (how many grades it released).
    GRADES_RELEASED = "grades.released"
    # On assignment.{id}: its marking counts changed (submitted, processed, graded, released).
    MARKING_PROGRESS = "marking.progress"
    # On user.{id}: a flash message to show (herald.flash).
    FLASH = "flash"
    # On user.{id}: a message was acknowledged (other tabs take it down).
    MESSAGE_ACKED = "message.acked"
    # On broadcast (everyone) or course.{id} (its members): an admin's notice (herald.broadcasts).
    BROADCAST = "broadcast"
    # On user.{id}: the user saw a broadcast (their other tabs take it down).
    BROADCAST_ACKED = "broadcast.acked"
    # On admin.tasks: a queue's settings changed (web.queues); the Queues screen refetches.
    QUEUE_CHANGED = "queue.changed"
