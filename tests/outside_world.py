"""Real local servers playing the world outside Herald, for tests: an SMTP server
(aiosmtpd), the admin system receiving signed webhooks, and an external plagiarism
service; each records what it received and misbehaves on demand."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import json
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.support import free_port
from workers.similarity import fingerprint, similarity
from workers.webhook import IDEMPOTENCY_HEADER, REPLAYED_HEADER, SIGNATURE_HEADER, verify_signature

__all__ = ["SECRET", "AdminSystem", "Check", "FakeService", "Recorder", "SmtpServer", "admin_app"]

# The secret the fake admin system verifies signatures with.
SECRET = "wh-secret-4f9a7c2e1b8d"


@dataclass
class Recorder:
    """An aiosmtpd handler keeping what arrives and refusing chosen recipients."""

    messages: list[tuple[Any, Any]] = field(default_factory=list)  # (session, envelope)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((session, envelope))
        return "250 Message accepted for delivery"

    def parsed(self, index: int = -1) -> EmailMessage:
        message = email.message_from_bytes(
            self.messages[index][1].original_content, policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        return message


class SmtpServer:
    def __init__(self, host: str = "127.0.0.1", **options: Any) -> None:
        self.handler = Recorder()
        self.host = host
        self.port = free_port()
        self.controller = Controller(self.handler, hostname=host, port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()  # returns once the server answers a connection
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class AdminSystem:
    """What the fake admin system saw, and how it is told to misbehave."""

    url: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> id
    requests: list[web.Request] = field(default_factory=list)
    # None: behave; an int: answer that status; "hang": never answer;
    # "store-then-hang": keep the record, then never answer (the answer is "lost").
    fail: int | str | None = None
    retry_after: str | None = None
    repeat_status: int = 200  # what a repeated key gets: 200 (replayed) or 409
    release: asyncio.Event = field(default_factory=asyncio.Event)


def admin_app(admin: AdminSystem) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        admin.requests.append(request)
        body = await request.read()
        if admin.fail in ("hang", "store-then-hang"):
            if admin.fail == "store-then-hang":
                store(request, body)
            await admin.release.wait()  # until the test ends: the client must time out
        if isinstance(admin.fail, int):
            headers = {"Retry-After": admin.retry_after} if admin.retry_after else {}
            return web.json_response({"error": "told to fail"}, status=admin.fail, headers=headers)
        if not verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER), body):
            return web.json_response({"error": "bad signature"}, status=401)
        if request.content_type != "application/json" or IDEMPOTENCY_HEADER not in request.headers:
            return web.json_response({"error": "bad request"}, status=400)
        key = request.headers[IDEMPOTENCY_HEADER]
        if key in admin.keys:
            record_id = admin.keys[key]
            if admin.repeat_status == 409:
                return web.json_response({"id": record_id}, status=409)
            return web.json_response({"id": record_id}, headers={REPLAYED_HEADER: "true"})
        return web.json_response({"id": store(request, body)}, status=201)

    def store(request: web.Request, body: bytes) -> str:
        record_id = f"rec-{len(admin.records) + 1}"
        admin.records[record_id] = json.loads(body)
        admin.keys[request.headers[IDEMPOTENCY_HEADER]] = record_id
        return record_id

    async def moved(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/records")

    app = web.Application()
    app.router.add_post("/records", receive)
    app.router.add_post("/old", moved)
    return app


@dataclass
class Check:
    reference: str
    text: str
    created: float


@dataclass
class FakeService:
    """The hypothetical service: a check is done ``delay`` seconds after it was
    created (the real ~30 s is this parameter), scored with the built-in engine
    against every earlier check; faults are queued per request type."""

    delay: float = 0.3
    never_finish: bool = False
    fail_checks: bool = False
    post_faults: list[int] = field(default_factory=list)
    get_faults: list[int] = field(default_factory=list)
    garbage_polls: int = 0
    posts: int = 0
    checks: dict[str, Check] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    hang_posts: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def create(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.hang_posts:
            await self.hold.wait()
        if self.post_faults:
            return web.json_response({"error": "injected"}, status=self.post_faults.pop(0))
        body = await request.json()
        if not body.get("text"):
            return web.json_response({"error": "no text to check"}, status=400)
        key = request.headers["Idempotency-Key"]
        if key in self.by_key:
            return web.json_response({"id": self.by_key[key]}, status=200)
        check_id = f"chk-{next(self._ids)}"
        self.checks[check_id] = Check(body["reference"], body["text"], time.monotonic())
        self.by_key[key] = check_id
        return web.json_response({"id": check_id}, status=201)

    async def status(self, request: web.Request) -> web.Response:
        if self.get_faults:
            return web.json_response({"error": "injected"}, status=self.get_faults.pop(0))
        if self.garbage_polls:
            self.garbage_polls -= 1
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        check = self.checks.get(request.match_info["id"])
        if check is None:
            return web.json_response({"error": "no such check"}, status=404)
        elapsed = time.monotonic() - check.created
        if self.never_finish or elapsed < self.delay:
            return web.json_response(
                {"status": "pending", "progress": min(99, 100 * elapsed / max(self.delay, 1e-9))}
            )
        if self.fail_checks:
            return web.json_response({"status": "failed", "error": "the text could not be read"})
        mine = fingerprint(check.text)
        matches = []
        for other in self.checks.values():
            if other.created < check.created:
                percent = similarity(mine, fingerprint(other.text))[0]
                if percent > 0:
                    matches.append({"reference": other.reference, "percent": percent})
        score = max((m["percent"] for m in matches), default=0.0)
        return web.json_response({"status": "done", "score": score, "matches": matches})

    @property
    def created(self) -> int:
        return len(self.checks)
