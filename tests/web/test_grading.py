"""Grading and releasing through the API: only the course's markers grade and release,
grades stay hidden from students until released, and a release tells each student."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from herald.models import Message, MessageKind, Task, TaskStatus
from tests.support import eventually
from tests.web.conftest import Client, Demo, login, settings_of, submit_essay
from tests.workers.support import worker_running


async def _grade(client: Client, submission_id: int, grade: object, username: str = "mark") -> int:
    csrf = await login(client, username)
    response = await client.put(
        f"/api/submissions/{submission_id}/grade",
        json={"grade": grade},
        headers={"X-CSRF-Token": csrf},
    )
    return response.status


async def _student_sees(client: Client, submission_id: int) -> object:
    await login(client, "alice")
    return (await (await client.get(f"/api/submissions/{submission_id}")).json())["grade"]


async def test_only_markers_grade_and_students_see_nothing_before_release(
    client: Client, demo: Demo
) -> None:
    submission_id = await submit_essay(client, demo)
    assert await _grade(client, submission_id, "A-") == 200
    assert await _grade(client, submission_id, "A+", username="alice") == 403
    assert await _grade(client, submission_id, "") == 400
    assert await _grade(client, submission_id, "x" * 33) == 400
    assert await _grade(client, submission_id, 90) == 400
    assert await _grade(client, 999_999, "B") == 404
    assert await _student_sees(client, submission_id) is None
    await login(client, "mark")
    staff_view = await (await client.get(f"/api/submissions/{submission_id}")).json()
    assert staff_view["grade"] is None  # released grades only, for everyone


async def test_release_now_shows_the_grade_and_flashes_the_student(
    client: Client, demo: Demo
) -> None:
    submission_id = await submit_essay(client, demo)
    assert await _grade(client, submission_id, "B+") == 200
    csrf = await login(client, "alice")
    refused = await client.post(
        f"/api/assignments/{demo.assignment_id}/release",
        json={"at": None},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status == 403
    csrf = await login(client, "mark")
    answer = await client.post(
        f"/api/assignments/{demo.assignment_id}/release",
        json={"at": None},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.status == 202, await answer.text()

    async with worker_running(settings_of(client)):

        async def released() -> bool:
            return await _student_sees(client, submission_id) == "B+"

        await eventually(released, timeout=30, what="the release to run")
    async with demo.sessions() as db:
        flashes = (
            await db.scalars(
                select(Message).where(
                    Message.user_id == demo.users["alice"].id, Message.kind == MessageKind.FLASH
                )
            )
        ).all()
    assert [f.options["button"]["url"] for f in flashes] == [f"/submissions/{submission_id}"]


async def test_a_scheduled_release_waits_for_its_time(client: Client, demo: Demo) -> None:
    submission_id = await submit_essay(client, demo)
    assert await _grade(client, submission_id, "C") == 200
    csrf = await login(client, "mark")
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    headers = {"X-CSRF-Token": csrf}
    url = f"/api/assignments/{demo.assignment_id}/release"
    first = await client.post(url, json={"at": at}, headers=headers)
    again = await client.post(url, json={"at": at}, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["task"] == (await again.json())["task"]  # scheduled once
    async with demo.sessions() as db:
        task = await db.get(Task, (await first.json())["task"])
        assert task is not None and task.status == TaskStatus.QUEUED
    assert await _student_sees(client, submission_id) is None
    headers = {"X-CSRF-Token": await login(client, "mark")}
    naive = await client.post(url, json={"at": "2026-12-01T09:00:00"}, headers=headers)
    assert naive.status == 400
    assert (await client.post(url, json={"at": "soon"}, headers=headers)).status == 400
