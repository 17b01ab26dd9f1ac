"""The task pages without JavaScript: Background Tasks for admins (filters, paging),
My tasks for everyone, one task's page, and the cancel and retry forms."""

from __future__ import annotations

import re
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.models import Task, TaskStatus, utcnow
from tests.web.conftest import Client, Demo, login, submit_essay
from tests.web.test_pages import ESCAPED, PAYLOAD
from tests.web.test_tasks_api import noop, set_status, submit
from workers.control import TaskRequest


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    html = await response.text()
    assert response.status == status, (path, html[:2000])
    return html


def row_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-task-id="(\d+)"', html)]


async def test_admins_get_background_tasks_and_users_their_own(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Admins see every task with filters and a Mine tab; a student sees My tasks: only
    their own, without their submission's steps; both find Tasks in the menu."""
    alice, bob = demo.users["alice"].id, demo.users["bob"].id
    await submit_essay(client, demo)  # Alice's submission: seven step tasks of hers
    mine, bobs, failed = await submit(engine, redis, noop(alice), noop(bob), noop(bob))
    await set_status(demo, failed, TaskStatus.FAILED, error="Traceback…\nValueError: bad row 7")

    await login(client, "ada")
    html = await page(client, "/tasks")
    assert "<h1>Background tasks</h1>" in html and 'role="search"' in html
    assert '<a href="/tasks" aria-current="page">Tasks</a>' in html
    shown = row_ids(html)
    assert shown[:3] == [failed, bobs, mine] and len(shown) == 10  # the steps too
    assert "ValueError: bad row 7" in html
    assert 'data-topic="admin.tasks"' in html
    assert row_ids(await page(client, "/tasks?status=failed")) == [failed]
    assert row_ids(await page(client, "/tasks?owner=bob&kind=diag.noop")) == [failed, bobs]
    assert "No user is called" in await page(client, "/tasks?owner=nobody")
    bad = await page(client, "/tasks?status=lost", status=400)
    assert "Unknown status" in bad and row_ids(bad) == []
    assert row_ids(await page(client, "/tasks?mine=1")) == []

    await login(client, "alice")
    html = await page(client, "/tasks")
    assert "<h1>My tasks</h1>" in html and 'role="search"' not in html
    assert row_ids(html) == [mine]
    assert f'data-topic="user.{alice}"' in html
    assert row_ids(await page(client, "/tasks?owner=bob&status=failed")) == [mine]  # ignored


async def test_older_and_newer_links_walk_the_list(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """Paging links carry the filters and a cursor: older, then newer and newest."""
    ids = await submit(engine, redis, *(noop() for _ in range(60)))
    await login(client, "ada")
    html = await page(client, "/tasks?kind=diag.noop")
    assert row_ids(html) == ids[::-1][:50]
    older = re.search(r'href="(/tasks\?kind=diag.noop&amp;before=\d+)" rel="next"', html)
    assert older and "Newer" not in html and ">Newest<" not in html
    html = await page(client, older.group(1).replace("&amp;", "&"))
    assert row_ids(html) == ids[::-1][50:]
    newer = re.search(r'href="(/tasks\?kind=diag.noop&amp;after=\d+)" rel="prev"', html)
    assert newer and 'rel="next"' not in html and ">Newest<" in html
    assert row_ids(await page(client, newer.group(1).replace("&amp;", "&"))) == ids[::-1][:50]


async def test_the_task_page_shows_everything_escaped(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """One task's page shows its parameters, traceback, timeline and purged output as
    text; other people's tasks are a 404."""
    bob = demo.users["bob"].id
    (task_id,) = await submit(
        engine, redis, TaskRequest("diag.noop", {"note": PAYLOAD}, owner_id=bob)
    )
    await set_status(
        demo,
        task_id,
        TaskStatus.FAILED,
        error=f"Traceback (most recent call last):\nValueError: {PAYLOAD}",
        finished_at=utcnow(),
        result={
            "output": {
                "filename": "report.csv",
                "purged_at": "2026-11-01T03:00:00.000Z",
                "retention_days": 14,
            }
        },
    )
    await login(client, "bob")
    html = await page(client, f"/tasks/{task_id}")
    assert ESCAPED in html and "<script>alert" not in html
    assert '<pre class="traceback" data-field="traceback">Traceback (most recent call' in html
    assert "report.csv: deleted on" in html and "(kept 14 days)" in html
    assert f'data-task-detail data-task-id="{task_id}"' in html
    assert "Retry</button>" not in html  # owners do not retry
    await login(client, "ada")
    html = await page(client, f"/tasks/{task_id}")
    assert re.search(r'data-task-action="retry"\s*>', html), "retry offered to admins"
    await login(client, "alice")
    assert "There is nothing here" not in await page(client, f"/tasks/{task_id}", status=404)


async def test_cancel_and_retry_forms_work_without_javascript(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """The forms act and come back to the page they were on (a local path only); a
    refused action is an error page with the reason."""
    alice = demo.users["alice"].id
    (task_id,) = await submit(engine, redis, noop(alice))
    csrf = await login(client, "alice")
    form = {"csrf_token": csrf, "next": "/tasks?x=1"}
    answer = await client.post(f"/tasks/{task_id}/cancel", data=form, allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/tasks?x=1")
    again = await client.post(f"/tasks/{task_id}/cancel", data=form, allow_redirects=False)
    assert again.status == 409 and "has already ended" in await again.text()
    refused = await client.post(f"/tasks/{task_id}/retry", data=form, allow_redirects=False)
    assert refused.status == 403 and "Only admins retry tasks." in await refused.text()

    csrf = await login(client, "ada")
    form = {"csrf_token": csrf, "next": "//evil.example/"}
    answer = await client.post(f"/tasks/{task_id}/retry", data=form, allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, f"/tasks/{task_id}")
    async with demo.sessions() as db:
        task = await db.get(Task, task_id)
    assert task is not None and task.status == TaskStatus.QUEUED


async def test_my_tasks_offer_the_download_until_the_output_is_purged(
    client: Client, demo: Demo, engine: AsyncEngine, redis: Redis
) -> None:
    """A finished task's output is a download link on My tasks, and once purged a line
    saying when it was deleted and how long outputs are kept."""
    from tests.web.test_tasks_api import _task_with_output

    task_id = await _task_with_output(client, demo, engine, redis, "grades.csv")
    await login(client, "bob")
    html = await page(client, "/tasks")
    assert (
        f'<a href="/api/tasks/{task_id}/output" data-field="download" download>grades.csv</a>'
        in html
    )
    async with demo.sessions.begin() as db:
        await db.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(
                output_path=None,
                result={
                    "output": {
                        "filename": "grades.csv",
                        "retention_days": 14,
                        "purged_at": (utcnow() - timedelta(days=1)).isoformat(),
                    }
                },
            )
        )
    html = await page(client, "/tasks")
    assert "grades.csv: deleted on" in html and "(kept 14 days)" in html
    assert f"/api/tasks/{task_id}/output" not in html
