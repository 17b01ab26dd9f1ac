"""The submission pipeline run by a real worker against real Redis and each database."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import select

from herald.db import create_engine, session_factory
from herald.models import (
    Message,
    MessageKind,
    Submission,
    SubmissionStatus,
    Task,
    TaskEvent,
    TaskStatus,
)
from herald.names import submission_topic
from herald.settings import Settings
from tests.clamd_server import CLAMD, NOT_INSTALLED, ClamdServer
from tests.outside_world import SECRET, AdminSystem, FakeService, SmtpServer, admin_app
from tests.support import eventually, free_port
from tests.workers.support import assert_graph_order, submit_file, worker_running
from workers import step_handlers, steps
from workers.kinds import KINDS, kind_named
from workers.pipeline import STEP_INDEX, SUBMISSION_STEPS
from workers.scanner import EICAR_SIGNATURE
from workers.step_context import StepContext


@pytest.fixture
async def running_worker(settings: Settings, redis: Redis) -> AsyncIterator[asyncio.Event]:
    async with worker_running(settings) as stop:
        yield stop


async def _final_state(settings: Settings, sub_id: int) -> tuple[Submission, list[Task]]:
    engine = create_engine(settings)
    async with session_factory(engine)() as db:
        sub = await db.get(Submission, sub_id)
        tasks = list(
            (
                await db.scalars(
                    select(Task).where(Task.submission_id == sub_id).order_by(Task.step_index)
                )
            ).all()
        )
    await engine.dispose()
    assert sub is not None
    return sub, tasks


async def _wait_final(settings: Settings, sub_id: int) -> tuple[Submission, list[Task]]:
    async def final() -> bool:
        sub, _ = await _final_state(settings, sub_id)
        return sub.status in {
            SubmissionStatus.COMPLETE,
            SubmissionStatus.REJECTED,
            SubmissionStatus.FAILED,
        }

    await eventually(final, timeout=30, what="submission to finish")
    return await _final_state(settings, sub_id)


async def test_text_submission_runs_every_step_and_emits_ordered_events(
    settings: Settings, redis: Redis, running_worker: asyncio.Event
) -> None:
    """A text upload passes scan, store and record; events arrive with seq 1..n."""
    pubsub = redis.pubsub()
    await pubsub.psubscribe("submission.*")
    text = ("Background tasks keep students' uploads fast. " * 400).encode()
    sub_id = await submit_file(settings, text, "essay.txt", "text/plain")
    sub, tasks = await _wait_final(settings, sub_id)
    assert sub.status == SubmissionStatus.COMPLETE
    assert [t.status for t in tasks] == [TaskStatus.DONE] * len(SUBMISSION_STEPS)
    assert sub.word_count == 2400
    stored = Path(sub.stored_path or "")
    assert stored.read_bytes() == text and stored.name == sub.sha256
    assert not Path(sub.upload_path).exists()

    events = []
    while not events or events[-1]["type"] != "submission.status":
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        if message is not None:
            events.append(json.loads(message["data"]))
    await pubsub.aclose()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["topic"] for e in events} == {submission_topic(sub_id)}
    done = [e["data"]["step"]["name"] for e in events if e["type"] == "step.done"]
    assert_graph_order(done)
    assert events[-1]["type"] == "submission.status"
    assert events[-1]["data"]["submission"] == {
        "id": sub_id,
        "status": "complete",
        "progress": 100,
        "detail": None,
    }


async def test_infected_upload_is_quarantined_and_rejected(
    settings: Settings, redis: Redis, running_worker: asyncio.Event
) -> None:
    """An EICAR-carrying file is quarantined, never stored, and its submission rejected."""
    content = b"my essay\n" + EICAR_SIGNATURE + b"\n"
    sub_id = await submit_file(settings, content, "virus.txt", "text/plain")
    sub, tasks = await _wait_final(settings, sub_id)
    assert sub.status == SubmissionStatus.REJECTED
    assert "EICAR" in (sub.status_detail or "")
    assert [t.status for t in tasks] == [TaskStatus.DONE] + [TaskStatus.SKIPPED] * (
        len(SUBMISSION_STEPS) - 1
    )
    assert sub.stored_path is None
    assert Path(sub.upload_path).parent.name == "quarantine"
    assert not (settings.files_dir / "objects").exists()


async def test_transient_failure_is_retried_with_backoff(
    settings: Settings,
    redis: Redis,
    running_worker: asyncio.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step failing twice is retried after 1 s then 2 s, and the submission completes."""
    real = step_handlers.HANDLERS["record"]
    failures = 0

    async def flaky(ctx: StepContext, submission: Submission) -> steps.StepOutcome:
        nonlocal failures
        if failures < 2:  # the injected fault: a transient I/O error
            failures += 1
            raise OSError("transient: file server unavailable")
        return await real(ctx, submission)

    monkeypatch.setitem(step_handlers.HANDLERS, "record", flaky)
    sub_id = await submit_file(settings, b"three little words\n", "short.txt", "text/plain")
    sub, tasks = await _wait_final(settings, sub_id)
    assert sub.status == SubmissionStatus.COMPLETE
    record = tasks[STEP_INDEX["record"]]
    assert record.status == TaskStatus.DONE and record.attempts == 3
    starts = await _event_times(settings, record.id, TaskStatus.RUNNING)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 2
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0


async def test_persistent_failure_fails_after_max_attempts(
    settings: Settings,
    redis: Redis,
    running_worker: asyncio.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step that always raises ends failed after 3 attempts, with its traceback kept."""

    async def broken(ctx: StepContext, submission: Submission) -> steps.StepOutcome:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(step_handlers.HANDLERS, "scan", broken)
    fast = dataclasses.replace(kind_named("submission.scan"), retry_base=0.05)
    monkeypatch.setitem(KINDS, "submission.scan", fast)
    sub_id = await submit_file(settings, b"doomed\n", "doomed.txt", "text/plain")
    sub, tasks = await _wait_final(settings, sub_id)
    assert sub.status == SubmissionStatus.FAILED
    assert "upload the file again" in (sub.status_detail or "")
    scan = tasks[0]
    assert scan.status == TaskStatus.FAILED and scan.attempts == 3
    assert "Traceback" in (scan.error or "") and "handler bug" in (scan.error or "")
    assert [t.status for t in tasks[1:]] == [TaskStatus.SKIPPED] * (len(SUBMISSION_STEPS) - 1)


async def _event_times(settings: Settings, task_id: int, status: TaskStatus) -> list[float]:
    engine = create_engine(settings)
    async with session_factory(engine)() as db:
        rows = await db.scalars(
            select(TaskEvent.at)
            .where(TaskEvent.task_id == task_id, TaskEvent.status == status)
            .order_by(TaskEvent.id)
        )
        times = [at.timestamp() for at in rows]
    await engine.dispose()
    return times


ESSAY = (
    "Deadline day used to freeze the upload page while the server scanned, stored and "
    "checked every file in turn. Moving that work to queued workers lets the page answer "
    "at once, and each step reports its progress to the student's browser as it runs. "
) * 12


async def test_default_pipeline_does_every_job_for_real(
    settings: Settings, redis: Redis, running_worker: asyncio.Event
) -> None:
    """On the embedded defaults: similarity by the built-in engine, admin sync skipped
    as not configured, a PNG preview, a receipt in the outbox and an inbox message; a
    classmate's copy of the same essay then scores as a near-copy of it."""
    first = await submit_file(settings, ESSAY.encode(), "essay.txt", "text/plain")
    sub, tasks = await _wait_final(settings, first)
    assert sub.status == SubmissionStatus.COMPLETE
    by_step = {SUBMISSION_STEPS[t.step_index or 0].name: t for t in tasks}
    assert {name: t.status for name, t in by_step.items()} == dict.fromkeys(
        by_step, TaskStatus.DONE
    )
    assert by_step["plagiarism"].result == {
        "engine": "built-in",
        "score": 0,
        "fingerprints": by_step["plagiarism"].result["fingerprints"],
        "compared": 0,
        "matches": [],
    }
    assert by_step["admin_sync"].detail == "Skipped: not configured"
    preview = Path(by_step["thumbnail"].result["thumbnail"])
    assert preview.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    receipt = settings.var_dir / "outbox" / f"submission-{first}.receipt.eml"
    assert "essay.txt" in receipt.read_text()
    engine = create_engine(settings)
    async with session_factory(engine)() as db:
        inbox = (
            await db.scalars(select(Message).where(Message.link == f"/submissions/{first}"))
        ).all()
    await engine.dispose()
    assert [m.kind for m in inbox] == [MessageKind.INBOX]

    copy = await submit_file(
        settings, ESSAY.replace("Deadline", "Submission").encode(), "mine.txt", "text/plain", "bob"
    )
    _sub, copied = await _wait_final(settings, copy)
    similarity = copied[STEP_INDEX["plagiarism"]].result
    assert similarity["score"] > 80
    assert similarity["matches"][0]["submission_id"] == first


async def test_an_optional_step_failing_for_good_lets_the_rest_finish(
    settings: Settings,
    redis: Redis,
    running_worker: asyncio.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The preview failing on every attempt is reported on its row; the receipt still goes
    out (the join runs) and the submission completes."""

    async def broken(ctx: StepContext, submission: Submission) -> steps.StepOutcome:
        raise RuntimeError("renderer crashed")

    monkeypatch.setitem(step_handlers.HANDLERS, "thumbnail", broken)
    fast = dataclasses.replace(kind_named("submission.thumbnail"), retry_base=0.05)
    monkeypatch.setitem(KINDS, "submission.thumbnail", fast)
    sub_id = await submit_file(settings, ESSAY.encode(), "essay.txt", "text/plain")
    sub, tasks = await _wait_final(settings, sub_id)
    assert sub.status == SubmissionStatus.COMPLETE
    assert tasks[STEP_INDEX["thumbnail"]].status == TaskStatus.FAILED
    assert tasks[STEP_INDEX["notify"]].status == TaskStatus.DONE


@pytest.fixture
def clamd_settings(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The test's settings with HERALD_CLAMD_URL pointing at a real clamd."""
    if CLAMD is None:
        pytest.skip(NOT_INSTALLED)
    server = ClamdServer(tmp_path_factory.mktemp("clamd"))
    server.start()
    try:
        yield dataclasses.replace(settings, clamd_url=server.url)
    finally:
        server.stop()


async def test_with_clamd_eicar_is_rejected_and_a_clean_file_passes(
    clamd_settings: Settings, redis: Redis
) -> None:
    async with worker_running(clamd_settings):
        clean = await submit_file(clamd_settings, ESSAY.encode(), "essay.txt", "text/plain")
        infected = await submit_file(
            clamd_settings, b"essay\n" + EICAR_SIGNATURE + b"\n", "virus.txt", "text/plain"
        )
        sub, tasks = await _wait_final(clamd_settings, clean)
        assert sub.status == SubmissionStatus.COMPLETE
        assert tasks[0].result == {"scanner": "ClamAV (clamd)", "sha256": sub.sha256}
        sub, tasks = await _wait_final(clamd_settings, infected)
        assert sub.status == SubmissionStatus.REJECTED
        assert "Eicar-Test-Signature" in (sub.status_detail or "")
        assert Path(sub.upload_path).parent.name == "quarantine"


async def test_admin_system_down_for_good_fails_its_step_visibly_and_the_rest_finishes(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the admin webhook: admin_sync retries, then fails for good with
    the reason on its row; the receipt still goes out and the submission completes."""
    down = dataclasses.replace(
        settings,
        admin_webhook_url=f"http://127.0.0.1:{free_port()}/records",
        admin_webhook_secret="a-secret-of-plenty-entropy-42",
    )
    fast = dataclasses.replace(kind_named("submission.admin_sync"), retry_base=0.02)
    monkeypatch.setitem(KINDS, "submission.admin_sync", fast)
    async with worker_running(down):
        sub_id = await submit_file(down, ESSAY.encode(), "essay.txt", "text/plain")
        sub, tasks = await _wait_final(down, sub_id)
    assert sub.status == SubmissionStatus.COMPLETE
    sync = tasks[STEP_INDEX["admin_sync"]]
    policy = SUBMISSION_STEPS[STEP_INDEX["admin_sync"]].max_attempts
    assert sync.status == TaskStatus.FAILED and sync.attempts == policy
    assert "WebhookUnavailable" in (sync.detail or "")
    assert tasks[STEP_INDEX["notify"]].status == TaskStatus.DONE


@asynccontextmanager
async def _serving(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_production_settings_talk_to_the_real_outside_world(
    settings: Settings, redis: Redis
) -> None:
    """With every service configured, each step uses it: the plagiarism service gets one
    check, the admin system one signed record, the SMTP server the receipt."""
    admin_port, service_port = free_port(), free_port()
    admin = AdminSystem(url=f"http://127.0.0.1:{admin_port}/records")
    service = FakeService(delay=0.2)
    service_app = web.Application()
    service_app.router.add_post("/api/checks", service.create)
    service_app.router.add_get("/api/checks/{id}", service.status)
    with SmtpServer() as smtp:
        production = dataclasses.replace(
            settings,
            smtp_url=f"smtp://127.0.0.1:{smtp.port}",
            admin_webhook_url=admin.url,
            admin_webhook_secret=SECRET,
            plagiarism_url=f"http://127.0.0.1:{service_port}/api/",
        )
        async with _serving(admin_app(admin), admin_port), _serving(service_app, service_port):
            try:
                async with worker_running(production):
                    sub_id = await submit_file(
                        production, ESSAY.encode(), "essay.txt", "text/plain"
                    )
                    sub, tasks = await _wait_final(production, sub_id)
            finally:
                service.hold.set()
    assert sub.status == SubmissionStatus.COMPLETE
    assert [t.status for t in tasks] == [TaskStatus.DONE] * len(SUBMISSION_STEPS)
    assert tasks[STEP_INDEX["plagiarism"]].result["engine"] == "external"
    assert service.posts == 1
    (record,) = admin.records.values()
    assert record["submission_id"] == sub_id and record["sha256"] == sub.sha256
    (receipt,) = [smtp.handler.parsed(i) for i in range(len(smtp.handler.messages))]
    assert receipt["To"].addresses[0].username == "alice"
    assert "essay.txt" in receipt.get_content()
    assert not (production.var_dir / "outbox").exists()
