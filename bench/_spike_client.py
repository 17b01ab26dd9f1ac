"""Students for the burst and spike benchmarks: each signed in over HTTP with its own
session cookie and CSRF token, uploading the way the browser does; plus the
documents they upload and a wait for the pipeline to finish."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass

import aiohttp
from sqlalchemy import func, select

from bench._spike_stack import PASSWORD, Stack
from bench.pipeline import essay
from herald.db import create_engine, session_factory
from herald.models import SUBMISSION_FINAL, Submission
from tests.documents import make_pdf

__all__ = ["Student", "Upload", "essay_pdf", "sign_in", "wait_drained"]

# Sign-ins are counted per address before the password check and taken back after a
# success (web/ratelimit.py), so more than HERALD_LOGIN_ADDRESS_LIMIT (25) sign-ins
# from one address in flight at once would be refused; keep well under it.
SIGN_IN_CONCURRENCY = 8


def essay_pdf(rng: random.Random, words: int = 3000, padding: int = 1 << 20) -> bytes:
    """A ~1 MB PDF: a ``words``-word essay plus an embedded font-sized random stream,
    the shape of a real exported essay (as bench/pipeline.py uses)."""
    return make_pdf(essay(rng, words), padding=os.urandom(padding))


@dataclass
class Upload:
    status: int
    client_ms: float
    server_ms: float
    phases: dict[str, float]  # ms per named part of the server's time
    submission_id: int | None
    body: dict[str, object]


def parse_server_timing(header: str) -> dict[str, float]:
    """``app;dur=12.3, body;dur=4.5`` → ``{"app": 12.3, "body": 4.5}``."""
    phases = {}
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        if params.startswith("dur="):
            phases[name] = float(params[4:])
    return phases


class Student:
    """One signed-in student: a cookie jar, a CSRF token, one connection pool."""

    def __init__(self, base_url: str, username: str) -> None:
        self.username = username
        self.csrf = ""
        self.http = aiohttp.ClientSession(
            base_url,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=600),
        )

    async def sign_in(self) -> None:
        async with self.http.post(
            "/api/session", json={"username": self.username, "password": PASSWORD}
        ) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"sign-in of {self.username}: {response.status} {body}")
            self.csrf = body["csrf_token"]

    async def upload(self, path: str, content: bytes, filename: str = "essay.pdf") -> Upload:
        form = aiohttp.FormData()
        form.add_field("file", content, filename=filename, content_type="application/pdf")
        began = time.perf_counter()
        async with self.http.post(path, data=form, headers={"X-CSRF-Token": self.csrf}) as resp:
            if resp.status < 500:
                body = await resp.json(content_type=None)
            else:
                body = {"error": (await resp.text())[:300]}
            client_ms = (time.perf_counter() - began) * 1000
            timing = resp.headers.get("Server-Timing", "")
        phases = parse_server_timing(timing)
        server_ms = phases.pop("app", float("nan"))
        submission_id = body.get("id") if isinstance(body, dict) else None
        return Upload(resp.status, client_ms, server_ms, phases, submission_id, body)

    async def close(self) -> None:
        await self.http.close()


async def sign_in(stack: Stack, usernames: list[str]) -> list[Student]:
    """Every student signed in over HTTP, a few at a time (see SIGN_IN_CONCURRENCY)."""
    students = [Student(stack.base_url, name) for name in usernames]
    gate = asyncio.Semaphore(SIGN_IN_CONCURRENCY)

    async def one(student: Student) -> None:
        async with gate:
            await student.sign_in()

    await asyncio.gather(*(one(s) for s in students))
    return students


async def wait_drained(stack: Stack, expected: int, timeout: float = 3600) -> float:  # noqa: ASYNC109
    """Poll the DB until ``expected`` submissions are final; returns when that was
    (``time.monotonic()``)."""
    deadline = time.monotonic() + timeout
    engine = create_engine(stack.settings)
    try:
        sessions = session_factory(engine)
        while True:
            async with sessions() as db:
                final = await db.scalar(
                    select(func.count())
                    .select_from(Submission)
                    .where(Submission.status.in_(SUBMISSION_FINAL))
                )
            if (final or 0) >= expected:
                return time.monotonic()
            for proc in stack.workers:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited ({proc.returncode}); see {stack.root}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{final} of {expected} submissions final after {timeout} s")
            await asyncio.sleep(0.25)  # polling the DB for the end, not simulating work
    finally:
        await engine.dispose()
