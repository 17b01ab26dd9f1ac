"""The world outside Herald for the burst and spike benchmarks: a plagiarism service,
the admin system and an SMTP server, each a real local server that counts what it
receives per submission, so a run can prove every submission had exactly one of each.

The admin system and SMTP server are the test suite's (``tests/outside_world.py``).
The plagiarism service is the suite's protocol without its O(n²) scoring (the test
fake re-fingerprints every earlier check on each poll, which at thousands of checks
would make the fake, not Herald, the bottleneck): a check is done ``delay`` seconds
after it was created, the stated stand-in for the real service's ~30 s of work.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.outside_world import SECRET, AdminSystem, SmtpServer, admin_app
from tests.support import free_port
from workers.webhook import IDEMPOTENCY_HEADER

__all__ = ["SECRET", "CountingPlagiarismService", "World", "outside_world"]

_SUBMISSION_KEY = re.compile(r"submission-(\d+)")


def submission_of(key: str) -> int | None:
    """The submission id in an idempotency key or Message-ID (``submission-<id>…``)."""
    found = _SUBMISSION_KEY.search(key)
    return int(found.group(1)) if found else None


@dataclass
class CountingPlagiarismService:
    """POST /api/checks (idempotent by key) and GET /api/checks/{id}; counts every POST."""

    delay: float
    posts: collections.Counter[int] = field(default_factory=collections.Counter)
    created: dict[str, float] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    polls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def create(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        submission_id = submission_of(key)
        if submission_id is not None:
            self.posts[submission_id] += 1
        body = await request.json()
        if not body.get("text"):
            return web.json_response({"error": "no text to check"}, status=400)
        if key in self.by_key:
            return web.json_response({"id": self.by_key[key]}, status=200)
        check_id = f"chk-{next(self._ids)}"
        self.created[check_id] = time.monotonic()
        self.by_key[key] = check_id
        return web.json_response({"id": check_id}, status=201)

    async def status(self, request: web.Request) -> web.Response:
        self.polls += 1
        created = self.created.get(request.match_info["id"])
        if created is None:
            return web.json_response({"error": "no such check"}, status=404)
        elapsed = time.monotonic() - created
        if elapsed < self.delay:
            return web.json_response({"status": "pending", "progress": 100 * elapsed / self.delay})
        return web.json_response({"status": "done", "score": 0.0, "matches": []})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/api/checks", self.create)
        app.router.add_get("/api/checks/{id}", self.status)
        return app


@dataclass
class World:
    plagiarism: CountingPlagiarismService
    admin: AdminSystem
    smtp: SmtpServer
    plagiarism_url: str

    def env(self) -> dict[str, str]:
        """The ``HERALD_*`` settings that point Herald at these servers."""
        return {
            "HERALD_PLAGIARISM_URL": self.plagiarism_url,
            "HERALD_ADMIN_WEBHOOK_URL": self.admin.url,
            "HERALD_ADMIN_WEBHOOK_SECRET": SECRET,
            "HERALD_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}",
        }

    def webhook_calls(self) -> collections.Counter[int]:
        """Signed webhook POSTs received, per submission (retries and replays included)."""
        calls: collections.Counter[int] = collections.Counter()
        for request in self.admin.requests:
            submission_id = submission_of(request.headers.get(IDEMPOTENCY_HEADER, ""))
            if submission_id is not None:
                calls[submission_id] += 1
        return calls

    def emails(self) -> collections.Counter[int]:
        """Receipts the SMTP server accepted, per submission (by their Message-ID)."""
        sent: collections.Counter[int] = collections.Counter()
        for index in range(len(self.smtp.handler.messages)):
            submission_id = submission_of(str(self.smtp.handler.parsed(index)["Message-ID"]))
            if submission_id is not None:
                sent[submission_id] += 1
        return sent


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@asynccontextmanager
async def outside_world(plagiarism_delay: float) -> AsyncIterator[World]:
    """The three servers, on free loopback ports, in this process."""
    admin_port, service_port = free_port(), free_port()
    admin = AdminSystem(url=f"http://127.0.0.1:{admin_port}/records")
    service = CountingPlagiarismService(delay=plagiarism_delay)
    runners = [await _serve(admin_app(admin), admin_port)]
    try:
        runners.append(await _serve(service.app(), service_port))
        with SmtpServer() as smtp:
            yield World(service, admin, smtp, f"http://127.0.0.1:{service_port}/api/")
    finally:
        admin.release.set()
        await asyncio.gather(*(runner.cleanup() for runner in runners))
