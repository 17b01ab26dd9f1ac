"""Grading and releasing through the API: only the course's markers grade and release,
grades stay hidden from students until released, and a release tells each student."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select

from herald.models import Message, MessageKind, Task, TaskStatus
from herald.names import assignment_topic
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


async def _marking(client: Client, demo: Demo, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/assignments/{demo.assignment_id}/marking{query}")
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_marking_counts_follow_uploads_grades_and_releases(
    client: Client, demo: Demo, redis: Redis
) -> None:
    first = await submit_essay(client, demo)
    second = await submit_essay(client, demo)
    await login(client, "mark")
    counts = await _marking(client, demo, f"?submissions={first},{second},x,0")
    assert {k: counts[k] for k in ("submitted", "processed", "graded", "released")} == {
        "submitted": 2,
        "processed": 0,
        "graded": 0,
        "released": 0,
    }
    assert counts["grades"] == {
        str(first): {"grade": None, "released": False},
        str(second): {"grade": None, "released": False},
    }
    # A grade is announced on the assignment's topic, without figures: students may
    # follow that topic, and the counts are the markers' business.
    pubsub = redis.pubsub()
    await pubsub.subscribe(assignment_topic(demo.assignment_id))
    await pubsub.get_message(timeout=5)
    assert await _grade(client, first, "A") == 200
    event = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    await pubsub.aclose()
    assert event is not None
    envelope = json.loads(event["data"])
    assert envelope["type"] == "marking.progress"
    assert envelope["data"] == {"assignment_id": demo.assignment_id}

    async with worker_running(settings_of(client)):

        async def processed_and_released() -> bool:
            now = await _marking(client, demo)
            return now["processed"] == 2 and now["released"] == 1

        csrf = await login(client, "mark")
        release = await client.post(
            f"/api/assignments/{demo.assignment_id}/release",
            json={"at": None},
            headers={"X-CSRF-Token": csrf},
        )
        assert release.status == 202
        await eventually(processed_and_released, timeout=60, what="pipelines and the release")
    counts = await _marking(client, demo, f"?submissions={first}")
    assert (counts["graded"], counts["released"]) == (1, 1)
    assert counts["grades"] == {str(first): {"grade": "A", "released": True}}


async def test_marking_is_for_the_course_staff_only(client: Client, demo: Demo) -> None:
    await login(client, "alice")
    refused = await client.get(f"/api/assignments/{demo.assignment_id}/marking")
    assert refused.status == 403
    await login(client, "mark")
    assert (await client.get("/api/assignments/999999/marking")).status == 404


async def test_the_forms_grade_and_schedule_without_javascript(client: Client, demo: Demo) -> None:
    submission_id = await submit_essay(client, demo)
    csrf = await login(client, "mark")
    graded = await client.post(
        f"/submissions/{submission_id}/grade",
        data={"csrf_token": csrf, "grade": " B- "},
        allow_redirects=False,
    )
    assert graded.status == 303
    assert graded.headers["Location"] == (
        f"/assignments/{demo.assignment_id}#submission-{submission_id}"
    )
    counts = await _marking(client, demo, f"?submissions={submission_id}")
    assert counts["grades"][str(submission_id)] == {"grade": "B-", "released": False}

    url = f"/assignments/{demo.assignment_id}/release"
    # A local time in the browser's zone: 10:00 in London in December is 10:00 UTC.
    scheduled = await client.post(
        url,
        data={"csrf_token": csrf, "when": "at", "at": "2099-12-01T10:00", "tz": "Europe/London"},
        allow_redirects=False,
    )
    assert scheduled.status == 303
    (release,) = (await _marking(client, demo))["scheduled"]
    assert release["at"] == "2099-12-01T10:00:00.000Z"
    for bad in (
        {"when": "at", "at": "", "tz": "UTC"},
        {"when": "at", "at": "2099-12-01T10:00", "tz": "Mars/Olympus"},
    ):
        refused = await client.post(url, data={"csrf_token": csrf, **bad}, allow_redirects=False)
        assert refused.status == 400
    assert len((await _marking(client, demo))["scheduled"]) == 1

    page = await (await client.get(f"/assignments/{demo.assignment_id}")).text()
    assert 'data-count="graded">1<' in page
    assert "2099-12-01T10:00:00.000Z" in page


async def test_release_with_email_sends_each_student_one_notice(client: Client, demo: Demo) -> None:
    submission_id = await submit_essay(client, demo)
    assert await _grade(client, submission_id, "A*") == 200
    csrf = await login(client, "mark")
    url = f"/api/assignments/{demo.assignment_id}/release"
    headers = {"X-CSRF-Token": csrf}
    assert (
        await client.post(url, json={"at": None, "email": "yes"}, headers=headers)
    ).status == 400
    answer = await client.post(url, json={"at": None, "email": True}, headers=headers)
    assert answer.status == 202
    notice = settings_of(client).var_dir / "outbox" / f"submission-{submission_id}.grade.eml"
    async with worker_running(settings_of(client)):

        async def mailed() -> bool:
            return notice.exists()

        await eventually(mailed, timeout=30, what="the grade notice")
        # Released again: nothing new to release, nobody mailed twice.
        again = await client.post(url, json={"at": None, "email": True}, headers=headers)
        assert again.status == 202

        async def ran() -> bool:
            async with demo.sessions() as db:
                task = await db.get(Task, (await again.json())["task"])
                return task is not None and task.status == TaskStatus.DONE

        await eventually(ran, timeout=30, what="the second release")
    text = notice.read_text()
    assert "Subject: Your grade is out:" in text
    assert "A*" not in text  # the grade stays behind the sign-in
    assert f"/submissions/{submission_id}" in text
    async with demo.sessions() as db:
        emails = (await db.scalars(select(Task).where(Task.kind == "grades.email"))).all()
    assert [task.status for task in emails] == [TaskStatus.DONE]
