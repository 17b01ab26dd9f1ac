"""The web process the burst and spike benchmarks run: Herald's app (``web.create_app``,
as ``herald web`` serves it) plus two things that exist only in benchmarks.

- An outermost middleware that puts the server's own time on every response as
  ``Server-Timing: app;dur=<ms>``: from the moment aiohttp hands the parsed request
  headers to the application to the moment the response is ready to be written.
  The upload's body is streamed inside that span (the handler reads it), so it
  covers receiving the 1 MB; it does not cover the TCP accept or the wait for the
  event loop before the headers were parsed.
- ``POST /bench/inline/{aid}?service=0|1``: "the old way", the pipeline run inside
  the request. It accepts the upload exactly as the product does (permission,
  streamed upload, the submission row), then runs the very step handlers the
  workers run (``workers.step_handlers.HANDLERS``: scan with clamd, store, record,
  the built-in similarity engine) one after another, and with ``service=1`` also
  the external plagiarism check (the same handler with ``HERALD_PLAGIARISM_URL``),
  before answering. Its JSON says how long each step took.

    python -m bench._spike_web   # with the HERALD_* environment of bench/_spike_stack.py
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import update

from herald.logs import configure_logging
from herald.models import Submission, SubmissionStatus, TaskStatus, utcnow
from herald.settings import Settings
from web import create_app, submissions
from web.auth import require_user
from web.keys import DB, PUBLISHER, QUEUE, REDIS, SETTINGS
from web.queries import parse_id
from web.submissions import check_can_submit
from web.uploads import accepted_types, receive_upload
from workers import queue
from workers.context import Services, TaskRun
from workers.kinds import kind_named
from workers.pipeline import STEP_INDEX, SUBMISSION_STEPS, step_kind
from workers.queue import Lease
from workers.step_context import StepContext, StepOutcome
from workers.step_handlers import HANDLERS

T = TypeVar("T")
TIMING_HEADER = "Server-Timing"
INLINE_STEPS = ("scan", "store", "record", "plagiarism")


# Time spent in the named parts of accepting an upload, for the Server-Timing breakdown.
_phases: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("phases")


@web.middleware
async def server_timing(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    phases: dict[str, float] = {}
    _phases.set(phases)
    began = time.perf_counter()
    response = await handler(request)
    ended = time.perf_counter()
    total = ended - began
    parts = [f"app;dur={total * 1000:.3f}"]
    if "body_end" in phases:
        # The acknowledgement proper: from the last byte of the file to the 202.
        phases["after_body"] = ended - phases.pop("body_end")
    parts += [
        f"{name};dur={seconds * 1000:.3f}"
        for name, seconds in phases.items()
        if not name.endswith("_end")
    ]
    response.headers[TIMING_HEADER] = ", ".join(parts)
    return response


def _timed(name: str, function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(function)
    async def timed(*args: Any, **kwargs: Any) -> T:
        began = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            ended = time.perf_counter()
            phases = _phases.get(None)
            if phases is not None:
                phases[name] = phases.get(name, 0.0) + ended - began
                phases[f"{name}_end"] = ended

    return timed


def time_upload_phases() -> None:
    """Wrap the parts of web.submissions.accept_submission, by name, so the response
    says where the time went: permission check, body, enqueue, announce (the DB
    transaction is the rest)."""
    submissions.check_can_submit = _timed("check", submissions.check_can_submit)
    submissions.receive_upload = _timed("body", submissions.receive_upload)
    submissions.announce_marking = _timed("announce", submissions.announce_marking)
    queue.RedisQueue.enqueue = _timed("enqueue", queue.RedisQueue.enqueue)  # type: ignore[method-assign]


def _context(services: Services, submission: Submission, step: str) -> StepContext:
    """What a worker hands the step's handler; id 0 is no task row, so progress
    writes touch nothing (the old way had no task rows)."""
    spec = kind_named(step_kind(SUBMISSION_STEPS[STEP_INDEX[step]]))
    lease = Lease("0", spec.queue, spec.name, secrets.token_hex(8), 1, spec.max_attempts)
    run = TaskRun(
        lease=lease,
        spec=spec,
        id=0,
        params={"submission_id": submission.id, "step": step},
        owner_id=submission.student_id,
        submission_id=submission.id,
        step_index=STEP_INDEX[step],
        started_at=utcnow(),
        status=TaskStatus.RUNNING,
    )
    return InlineStepContext(run, services)


class InlineStepContext(StepContext):
    """A step's context in the old way: there is no task row to record progress on,
    so progress is only published, as the page would have been told it."""

    async def progress(self, percent: float, detail: str | None = None) -> None:
        self.run.progress = max(0, min(99, int(percent)))
        if detail is not None:
            self.run.detail = detail
        await self.emit_progress()


async def _run_step(services: Services, submission: Submission, step: str) -> StepOutcome:
    outcome = await HANDLERS[step](_context(services, submission, step), submission)
    for name, value in outcome.submission_updates.items():
        setattr(submission, name, value)
    return outcome


async def inline_upload(request: web.Request) -> web.Response:
    user, _ = require_user(request)
    assignment_id = parse_id(request.match_info["aid"])
    with_service = request.query.get("service") == "1"
    assignment = await check_can_submit(request, user, assignment_id)
    settings: Settings = request.app[SETTINGS]
    upload = await receive_upload(
        request, settings, allowed=accepted_types(assignment.allowed_types)
    )
    async with request.app[DB].begin() as db:
        submission = Submission(
            assignment_id=assignment_id,
            student_id=user.id,
            status=SubmissionStatus.PROCESSING,
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            sha256=upload.sha256,
            upload_path=str(upload.path),
        )
        db.add(submission)
    redis = request.app[REDIS]
    local = Services(
        dataclasses.replace(settings, plagiarism_url=None),
        request.app[DB],
        request.app[QUEUE],
        request.app[PUBLISHER],
        redis,
    )
    timings: dict[str, float] = {}
    for step in INLINE_STEPS:
        began = time.perf_counter()
        outcome = await _run_step(local, submission, step)
        timings[step] = time.perf_counter() - began
        if outcome.reject:
            break
    if with_service and settings.plagiarism_url:
        began = time.perf_counter()
        await _run_step(dataclasses.replace(local, settings=settings), submission, "plagiarism")
        timings["plagiarism_service"] = time.perf_counter() - began
    async with request.app[DB].begin() as db:
        await db.execute(
            update(Submission)
            .where(Submission.id == submission.id)
            .values(
                status=SubmissionStatus.COMPLETE,
                stored_path=submission.stored_path,
                word_count=submission.word_count,
            )
        )
    return web.json_response({"id": submission.id, "steps": timings}, status=201)


async def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings, "web")
    time_upload_phases()
    app = create_app(settings)
    app.middlewares.insert(0, server_timing)
    app.router.add_post("/bench/inline/{aid}", inline_upload)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
