"""The tasks API: who sees and acts on which task, filters and keyset pages, a failed
task's traceback and timeline, retry and cancel rules, outputs, and submitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import Transactions
from herald.models import Task, TaskStatus, utcnow
from tests.support import eventually
from tests.web.conftest import Client, Demo, login, settings_of
from tests.workers.support import worker_running
from workers.control import TaskRequest, submit_tasks
from workers.outputs import output_dir
from workers.queue import RedisQueue


async def submit(engine: AsyncEngine, redis: Redis, *requests: TaskRequest) -> list[int]:
    """Record and enqueue tasks as the CLI does; their ids."""
    transactions = Transactions(engine)
    try:
        done = await submit_tasks(transactions, RedisQueue(redis), list(requests))
    finally:
        transactions.close()
    return [item.id for item in done]


def noop(owner: int | None = None, **changes: Any) -> TaskRequest:
    return TaskRequest("diag.noop", owner_id=owner, **changes)


async def get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, (path, await response.text())
    return await response.json()


async def post(client: Client, path: str, csrf: str, body: Any = None) -> tuple[int, Any]:
    response = await client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    return response.status, await response.json()


async def set_status(demo: Demo, task_id: int, status: TaskStatus, **values: Any) -> None:
    async with demo.sessions.begin() as db:
        await db.execute(update(Task).where(Task.id == task_id).values(status=status, **values))


async def test_admins_see_every_task_and_others_only_their_own(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Admins list and read every task; a user lists only their own and gets a 404,
    not a 403, for anyone else's (whether it exists is not disclosed)."""
    alice, bob = demo.users["alice"].id, demo.users["bob"].id
    mine, bobs, nobodys = await submit(engine, redis, noop(alice), noop(bob), noop())
    assert (await client.get("/api/tasks")).status == 401

    await login(client, "ada")
    listed = await get(client, "/api/tasks")
    assert [row["id"] for row in listed["tasks"]] == [nobodys, bobs, mine]
    assert listed["topic"] == "admin.tasks" and listed["next"] is None
    row = listed["tasks"][2]
    assert row["owner_username"] == "alice" and row["kind_label"] == "No-op (diagnostic)"
    assert row["status"] == "queued" and row["url"] == f"/tasks/{mine}"
    assert row["queued_at"] and row["created_at"] and row["output"] is None
    assert (await get(client, f"/api/tasks/{bobs}"))["owner_username"] == "bob"
    mine_only = await get(client, "/api/tasks?mine=1")
    assert mine_only["tasks"] == []

    await login(client, "alice")
    listed = await get(client, "/api/tasks")
    assert [row["id"] for row in listed["tasks"]] == [mine]
    assert listed["topic"] == f"user.{alice}"
    assert (await get(client, "/api/tasks?owner=bob"))["tasks"] == []
    assert [r["id"] for r in (await get(client, f"/api/tasks?ids={mine},{bobs},x"))["tasks"]] == [
        mine
    ]
    for other in (bobs, nobodys, 999_999):
        missing = await get(client, f"/api/tasks/{other}", status=404)
        assert missing == {"error": "not_found", "message": "No such task."}
    await get(client, "/api/tasks/abc", status=404)


async def test_filters_and_keyset_pages_give_every_row_exactly_once(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Walking the pages older and back newer yields every task once, in id order, for
    the whole list and for each filter, and each filter keeps exactly its tasks."""
    alice, bob = demo.users["alice"].id, demo.users["bob"].id
    requests = []
    for n in range(60):
        kind = "diag.sleep" if n % 3 == 0 else "diag.noop"
        requests.append(
            TaskRequest(kind, owner_id=(alice, bob, None)[n % 3 - 1], queue=("diag", "io")[n % 2])
        )
    ids = await submit(engine, redis, *requests)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: dict[int, dict[str, Any]] = {}
    for n, task_id in enumerate(ids):
        status = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.QUEUED, TaskStatus.RUNNING)[n % 4]
        created = start + timedelta(hours=n)
        await set_status(demo, task_id, status, created_at=created)
        rows[task_id] = {
            "kind": requests[n].kind,
            "queue": requests[n].queue,
            "owner": requests[n].owner_id,
            "status": status.value,
            "created": created,
        }
    await login(client, "ada")

    async def walk(query: str) -> list[int]:
        seen: list[int] = []
        url = f"/api/tasks?{query}&limit=7"
        page = await get(client, url)
        seen += [row["id"] for row in page["tasks"]]
        assert page["prev"] is None
        while page["next"] is not None:
            page = await get(client, f"{url}&before={page['next']}")
            assert page["prev"] == page["tasks"][0]["id"]
            seen += [row["id"] for row in page["tasks"]]
        back: list[int] = [row["id"] for row in page["tasks"]]
        while page["prev"] is not None:
            page = await get(client, f"{url}&after={page['prev']}")
            back = [row["id"] for row in page["tasks"]] + back
        assert back == seen, "newer pages give back what older ones gave"
        assert seen == sorted(seen, reverse=True) and len(set(seen)) == len(seen)
        return seen

    def expected(keep: Any) -> list[int]:
        return sorted((i for i, row in rows.items() if keep(row)), reverse=True)

    assert await walk("") == expected(lambda row: True)
    assert await walk("status=failed") == expected(lambda row: row["status"] == "failed")
    assert await walk("kind=diag.sleep") == expected(lambda row: row["kind"] == "diag.sleep")
    assert await walk("queue=io") == expected(lambda row: row["queue"] == "io")
    assert await walk("owner=bob") == expected(lambda row: row["owner"] == bob)
    assert await walk(f"owner={alice}&status=done") == expected(
        lambda row: row["owner"] == alice and row["status"] == "done"
    )
    # A naive time is in HERALD_TIMEZONE (UTC here); a bare date as "to" is the whole day.
    assert await walk("from=2026-01-02T00:00&to=2026-01-02") == expected(
        lambda row: row["created"].date() == datetime(2026, 1, 2).date()
    )
    assert await walk("owner=nobody-of-that-name") == []
    for bad in ("status=lost", "from=yesterday", "limit=0", "limit=201", "before=x", "mine=2"):
        answer = await get(client, f"/api/tasks?{bad}", status=400)
        assert answer["error"] == "bad_request" and answer["message"]


async def test_a_failed_task_shows_its_traceback_and_timeline(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """A diag.sleep told to fail runs its three attempts; the detail answers the last
    traceback, the error's summary, and every state change with its attempt."""
    (task_id,) = await submit(
        engine,
        redis,
        TaskRequest("diag.sleep", {"seconds": 0, "fail": True}, owner_id=demo.users["bob"].id),
    )
    await login(client, "ada")
    async with worker_running(settings_of(client)):

        async def failed() -> bool:
            return (await get(client, f"/api/tasks/{task_id}"))["status"] == "failed"

        await eventually(failed, timeout=30, what="the task to fail for good")
    detail = await get(client, f"/api/tasks/{task_id}")
    assert detail["traceback"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: diag.sleep asked to fail (attempt 3)" in detail["traceback"]
    assert detail["error"] == "RuntimeError: diag.sleep asked to fail (attempt 3)"
    assert detail["params"] == {"seconds": 0, "fail": True} and detail["result"] is None
    assert detail["attempts"] == detail["max_attempts"] == 3
    assert detail["duration"] is not None and detail["finished_at"]
    assert [(e["status"], e["attempt"]) for e in detail["events"]] == [
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("queued", 2),
        ("running", 3),
        ("failed", 3),
    ]
    assert detail["actions"] == {"cancel": False, "retry": True}
    (row,) = (await get(client, "/api/tasks?status=failed"))["tasks"]
    assert row["error"] == detail["error"] and "traceback" not in row
    # The owner reads it too, but may not retry it.
    await login(client, "bob")
    assert (await get(client, f"/api/tasks/{task_id}"))["actions"] == {
        "cancel": False,
        "retry": False,
    }


async def test_retry_and_cancel_follow_the_state_rules(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Retry is for admins and failed or cancelled tasks; cancel is for admins and the
    owner and unfinished tasks; anything else is a 409 with the reason, or a 404."""
    alice, bob = demo.users["alice"].id, demo.users["bob"].id
    waiting, failed, bobs = await submit(engine, redis, noop(alice), noop(alice), noop(bob))
    await set_status(demo, failed, TaskStatus.FAILED, finished_at=utcnow())

    csrf = await login(client, "alice")
    assert await post(client, f"/api/tasks/{failed}/retry", csrf) == (
        403,
        {"error": "forbidden", "message": "Only admins retry tasks."},
    )
    assert (await post(client, f"/api/tasks/{bobs}/retry", csrf))[0] == 404
    assert (await post(client, f"/api/tasks/{bobs}/cancel", csrf))[0] == 404
    status, answer = await post(client, f"/api/tasks/{waiting}/cancel", csrf)
    assert (status, answer["status"]) == (202, "cancelled")
    status, answer = await post(client, f"/api/tasks/{waiting}/cancel", csrf)
    assert status == 409 and answer["error"] == "conflict"
    assert answer["message"] == f"task {waiting} has already ended (cancelled)"

    csrf = await login(client, "ada")
    status, answer = await post(client, f"/api/tasks/{bobs}/retry", csrf)
    assert status == 409
    assert answer["message"] == f"only failed or cancelled tasks are retried; {bobs} is queued"
    for task_id in (failed, waiting):
        assert await post(client, f"/api/tasks/{task_id}/retry", csrf) == (
            202,
            {"id": task_id, "status": "queued"},
        )
        detail = await get(client, f"/api/tasks/{task_id}")
        assert (detail["status"], detail["attempts"]) == ("queued", 0)
        assert detail["events"][-1]["detail"] == "retried"
    assert (await post(client, f"/api/tasks/{bobs}/cancel", csrf))[0] == 202
    assert (await post(client, "/api/tasks/999999/cancel", csrf))[0] == 404
    assert (await post(client, "/api/tasks/999999/retry", csrf))[0] == 404


async def test_cancelling_a_running_task_stops_it_on_its_worker(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """A running task's cancel answers "running" (its worker was told), and the task
    then ends cancelled; its owner's topic hears of it."""
    alice = demo.users["alice"].id
    (task_id,) = await submit(
        engine, redis, TaskRequest("diag.sleep", {"seconds": 60}, owner_id=alice)
    )
    csrf = await login(client, "alice")
    async with worker_running(settings_of(client)):

        async def running() -> bool:
            return (await get(client, f"/api/tasks/{task_id}"))["status"] == "running"

        await eventually(running, timeout=30, what="the task to start")
        status, answer = await post(client, f"/api/tasks/{task_id}/cancel", csrf)
        assert (status, answer["status"]) == (202, "running")

        async def cancelled() -> bool:
            return (await get(client, f"/api/tasks/{task_id}"))["status"] == "cancelled"

        await eventually(cancelled, timeout=30, what="the worker to stop the task")
    status, answer = await post(client, f"/api/tasks/{task_id}/cancel", csrf)
    assert status == 409


async def _task_with_output(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis, name: str
) -> int:
    """A finished task of Bob's whose output file is on disk, recorded as a handler's is."""
    (task_id,) = await submit(engine, redis, noop(demo.users["bob"].id))
    folder = output_dir(settings_of(client), task_id)
    folder.mkdir(parents=True)
    (folder / "grades.csv").write_text("student,grade\nbob,A\n")
    await set_status(
        demo,
        task_id,
        TaskStatus.DONE,
        finished_at=utcnow(),
        output_path="grades.csv",
        result={
            "output": {"filename": name, "size": 20, "content_type": "text/csv; charset=utf-8"}
        },
    )
    return task_id


async def test_the_owner_downloads_the_output_until_it_is_purged(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """The owner and admins download a task's output as an attachment with its name
    and type; others get a 404; once the purge has deleted it, a 410 says when."""
    name = 'grades "Essay 1" – été.csv'
    task_id = await _task_with_output(client, demo, engine, redis, name)
    (plain,) = await submit(engine, redis, noop(demo.users["bob"].id))
    url = f"/api/tasks/{task_id}/output"
    for username in ("bob", "ada"):
        await login(client, username)
        response = await client.get(url)
        assert response.status == 200
        assert await response.read() == b"student,grade\nbob,A\n"
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="grades__Essay_1_____t_.csv"; '
            "filename*=UTF-8''grades%20%22Essay%201%22%20%E2%80%93%20%C3%A9t%C3%A9.csv"
        )
    row = (await get(client, f"/api/tasks?ids={task_id}"))["tasks"][0]
    assert row["output"]["available"] is True and row["output"]["url"] == url
    assert (await get(client, f"/api/tasks/{plain}/output", status=404))["message"] == (
        "This task has no output."
    )
    await login(client, "alice")
    await get(client, url, status=404)

    # Finished longer ago than outputs are kept: the real purge deletes it.
    await set_status(demo, task_id, TaskStatus.DONE, finished_at=utcnow() - timedelta(days=30))
    await login(client, "ada")
    (purge,) = await submit(
        engine, redis, TaskRequest("outputs.purge", owner_id=demo.users["ada"].id)
    )
    async with worker_running(settings_of(client)):

        async def purged() -> bool:
            return (await get(client, f"/api/tasks/{purge}"))["status"] == "done"

        await eventually(purged, timeout=30, what="the purge to run")
    gone = await get(client, url, status=410)
    day = utcnow().date().isoformat()
    assert gone == {
        "error": "gone",
        "message": f"This output was deleted on {day} (outputs are kept 14 days); "
        "run the task again for a new one.",
    }
    info = (await get(client, f"/api/tasks/{task_id}"))["output"]
    assert info["available"] is False and info["purged_at"].startswith(day)
    assert info["filename"] == name and info["retention_days"] == 14


@pytest.mark.parametrize("mode", ["queued", "immediate"])
async def test_submitting_checks_the_catalog(client: Client, demo: Demo, mode: str) -> None:
    """POST /api/tasks runs only catalog kinds, for whom the catalog allows, with clean
    parameters; the answer names the task and the owner's topic."""
    csrf = await login(client, "alice")
    assert await post(client, "/api/tasks", csrf, {"kind": "diag.sleep"}) == (
        400,
        {
            "error": "unknown_kind",
            "message": "Tasks of kind 'diag.sleep' cannot be submitted here.",
        },
    )
    status, answer = await post(client, "/api/tasks", csrf, {"kind": "outputs.purge"})
    assert status == 403 and answer["error"] == "forbidden"
    status, answer = await post(
        client, "/api/tasks", csrf, {"kind": "reports.grades", "params": {"assignment_id": 1}}
    )
    assert status == 403  # a student is not the course's marker
    csrf = await login(client, "ada")
    status, answer = await post(
        client, "/api/tasks", csrf, {"kind": "reports.queue_stats", "params": {"days": "x"}}
    )
    assert (status, answer["error"]) == (400, "bad_params")
    assert answer["message"] == "Days must be a whole number."
    for body in ({"kind": "outputs.purge", "mode": "now"}, {"params": {}}, [1]):
        assert (await post(client, "/api/tasks", csrf, body))[0] == 400
    status, answer = await post(client, "/api/tasks", csrf, {"kind": "outputs.purge", "mode": mode})
    ada = demo.users["ada"].id
    assert status == 202
    assert answer == {"id": answer["id"], "topic": f"user.{ada}", "url": f"/tasks/{answer['id']}"}
    async with demo.sessions() as db:
        task = await db.scalar(select(Task).where(Task.id == answer["id"]))
    assert task is not None
    assert (task.kind, task.owner_id, task.immediate) == ("outputs.purge", ada, mode == "immediate")
