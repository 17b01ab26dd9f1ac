"""Completion messages: the owner of a report hears once, in the inbox and live, that it
is ready (with the download) or failed (with the reason); a settle retried after its
commit adds nothing; cancelled tasks, tasks without an owner and pipeline steps send
nothing."""

from __future__ import annotations

import json
import uuid

from redis.asyncio import Redis
from sqlalchemy import select

from herald.models import Message, MessageKind, Task, TaskStatus, utcnow
from herald.names import EventType, user_topic
from tests.support import eventually
from tests.workers.outputs_support import (  # noqa: F401 - the fixture
    Classroom,
    classroom_fixture,
)
from workers.catalog import GRADES_REPORT, QUEUE_STATS_REPORT
from workers.kinds import Outcome, kind_named
from workers.ledger import Settle, settle_runs, start_runs
from workers.queue import Lease

TITLE = "Essay 1: Background tasks in practice"


async def _messages(room: Classroom, task_id: int) -> list[Message]:
    async with room.sessions() as db:
        found = await db.scalars(
            select(Message).where(Message.link == f"/tasks/{task_id}").order_by(Message.id)
        )
        return list(found.all())


async def test_the_owner_hears_once_in_the_inbox_and_live(
    classroom: Classroom, redis: Redis
) -> None:
    """A done report leaves one inbox message and one flash for its owner, both linking
    to the task and offering the download; the flash is published on user.{id}."""
    mark = classroom.users["mark"]
    pubsub = redis.pubsub()
    await pubsub.subscribe(user_topic(mark.id))
    try:
        task_id = await classroom.submit(
            GRADES_REPORT, {"assignment_id": classroom.assignment_id}, owner="mark"
        )
        (task,) = await classroom.run(task_id)
        flashes: list[dict] = []

        async def flash_arrived() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                event = json.loads(message["data"])
                if event["type"] == EventType.FLASH:
                    flashes.append(event["data"])
            return bool(flashes)

        await eventually(flash_arrived, timeout=10, what="the completion flash")
    finally:
        await pubsub.aclose()
    assert task.status == TaskStatus.DONE
    inbox, flash = await _messages(classroom, task_id)
    text = f"Your grades report for {TITLE} is ready (4 submissions, 2 graded)."
    download = {"label": "Download", "url": f"/api/tasks/{task_id}/output"}
    assert (inbox.kind, inbox.user_id, inbox.text, inbox.level) == (
        MessageKind.INBOX,
        mark.id,
        text,
        "success",
    )
    assert inbox.options == {"button": download}
    assert (flash.kind, flash.user_id, flash.text) == (MessageKind.FLASH, mark.id, text)
    assert flash.options is not None and flash.options["button"] == download
    assert flashes[0]["id"] == flash.id and flashes[0]["text"] == text


async def test_a_failure_says_why_and_a_cancel_says_nothing(classroom: Classroom) -> None:
    """Failed for good: a warning with the reason and no download. Cancelled: nothing."""
    failed_id = await classroom.submit(GRADES_REPORT, {"assignment_id": 999_999}, owner="mark")
    (failed,) = await classroom.run(failed_id)
    assert failed.status == TaskStatus.FAILED
    messages = await _messages(classroom, failed_id)
    assert [(m.kind, m.level, m.text) for m in messages] == [
        (kind, "warning", "Your grades report failed: there is no assignment 999999")
        for kind in (MessageKind.INBOX, MessageKind.FLASH)
    ]
    assert all(not (m.options or {}).get("button") for m in messages)


def _lease(task_id: int, kind: str) -> Lease:
    return Lease(str(task_id), "io", kind, uuid.uuid4().hex, 1, 3)


async def _settle_twice(
    room: Classroom, task_id: int, status: TaskStatus, outcome: Outcome | None = None
) -> list[bool]:
    """Start a run of the task and settle its end twice, as a settle retried after its
    DB part committed does; whether each applied."""
    task = await room.task(task_id)
    spec = kind_named(task.kind)
    now = utcnow()
    started = await room.transactions.run(
        lambda conn: start_runs(conn, [(_lease(task_id, task.kind), spec)], now)
    )
    (run,) = started.runs
    applied = []
    for _ in range(2):
        item = Settle(run, status, outcome=outcome, detail=outcome.detail if outcome else "why")
        await room.transactions.run(lambda conn, item=item: settle_runs(conn, [item], now))
        applied.append(item.applied)
    return applied


async def test_a_retried_settle_sends_nothing_twice(classroom: Classroom) -> None:
    """The messages are written in the settle's own transaction, which applies once."""
    task_id = await classroom.submit(QUEUE_STATS_REPORT, {}, owner="ada")
    applied = await _settle_twice(classroom, task_id, TaskStatus.DONE, Outcome(detail="3 tasks"))
    assert applied == [True, False]
    messages = await _messages(classroom, task_id)
    assert sorted(m.kind for m in messages) == [MessageKind.FLASH, MessageKind.INBOX]
    assert messages[0].text == "Your queue statistics report is done (3 tasks)."

    failing = await classroom.submit(QUEUE_STATS_REPORT, {}, owner="ada")
    assert await _settle_twice(classroom, failing, TaskStatus.FAILED) == [True, False]
    assert len(await _messages(classroom, failing)) == 2
    cancelled = await classroom.submit(QUEUE_STATS_REPORT, {}, owner="ada")
    assert await _settle_twice(classroom, cancelled, TaskStatus.CANCELLED) == [True, False]
    assert await _messages(classroom, cancelled) == []


async def test_no_owner_or_a_pipeline_step_means_no_message(classroom: Classroom) -> None:
    """A scheduled task (no owner) and a task of a submission are not announced."""
    unowned = await classroom.submit(QUEUE_STATS_REPORT, {}, owner=None)
    await _settle_twice(classroom, unowned, TaskStatus.DONE, Outcome(detail="x"))
    assert await _messages(classroom, unowned) == []
    step = await classroom.submit(QUEUE_STATS_REPORT, {}, owner="alice")
    async with classroom.sessions.begin() as db:
        task = await db.get(Task, step)
        assert task is not None
        task.submission_id = classroom.submissions["alice"]
    await _settle_twice(classroom, step, TaskStatus.DONE, Outcome(detail="x"))
    assert await _messages(classroom, step) == []


def test_every_kind_people_submit_is_registered_with_completion_messages() -> None:
    """The catalog names only registered kinds, each with the completion hooks."""
    from workers.catalog import CATALOG
    from workers.completion import CompletionHooks

    for name in CATALOG:
        assert isinstance(kind_named(name).hooks, CompletionHooks), name
