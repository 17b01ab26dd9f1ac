"""Fixtures for the web tests: the real app over real Redis and DB, with demo data."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.db import session_factory
from herald.demo import load_demo_data
from herald.models import Assignment, Submission, Task, User
from herald.settings import Settings
from tests.conftest import make_settings
from web import create_app
from web.keys import SETTINGS

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@dataclass(frozen=True)
class Demo:
    users: dict[str, User]
    assignment_id: int
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture
async def demo(engine: AsyncEngine) -> Demo:
    """The demo course, assignment and accounts (password ``demo``)."""
    sessions = session_factory(engine)
    await load_demo_data(sessions, "demo")
    async with sessions() as db:
        users = {u.username: u for u in (await db.scalars(select(User))).all()}
        assignment = await db.scalar(select(Assignment))
    assert assignment is not None
    return Demo(users, assignment.id, sessions)


@pytest.fixture
async def make_client(
    tmp_path: Path, redis_server: str, database_url: str, redis: Redis, demo: Demo
) -> AsyncIterator[ClientFactory]:
    """Start the app with settings overrides (``HERALD_*`` env names) and return a client."""
    clients: list[Client] = []

    async def factory(**overrides: str) -> Client:
        settings = make_settings(tmp_path, redis_server, database_url, **overrides)
        # On the port the settings name, so the page's Origin is one the app allows.
        server = TestServer(create_app(settings), host="127.0.0.1", port=settings.web_port)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    """A client of the app with default settings."""
    return await make_client()


def settings_of(client: Client) -> Settings:
    """The settings the client's app runs with."""
    assert client.app is not None
    return client.app[SETTINGS]


async def login(client: Client, username: str, password: str = "demo") -> str:  # noqa: S107
    """Sign in through the API; returns the CSRF token."""
    response = await client.post("/api/session", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return str((await response.json())["csrf_token"])


def upload_form(
    data: bytes,
    filename: str = "essay.txt",
    *,
    csrf: str | None = None,
    content_type: str = "application/octet-stream",
) -> FormData:
    form = FormData()
    if csrf is not None:
        form.add_field("csrf_token", csrf)
    form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    return form


def raw_multipart(
    filename: str,
    data: bytes,
    *,
    encoded: bool = False,
    content_type: str = "text/plain",
) -> tuple[bytes, dict[str, str]]:
    """A multipart body with the filename written as browsers do (aiohttp's client
    percent-encodes it, which would hide markup from the escaping tests), or with
    ``encoded`` as RFC 5987 ``filename*``, which carries any character (NUL, newline)."""
    boundary = "herald-test-boundary"
    name_param = (
        f"filename*=UTF-8''{quote(filename, safe='')}" if encoded else f'filename="{filename}"'
    )
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; {name_param}\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def uploads_left(settings: Settings) -> list[Path]:
    folder = settings.files_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


async def assert_nothing_stored(client: Client, demo: Demo) -> None:
    """No file waits in the upload folder and no submission or task row exists."""
    assert uploads_left(settings_of(client)) == []
    async with demo.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Submission)) == 0
        assert await db.scalar(select(func.count()).select_from(Task)) == 0


async def submit_essay(client: Client, demo: Demo) -> int:
    """Alice uploads a small essay through the API; returns the submission id."""
    csrf = await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"My essay\n"),
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 202, await response.text()
    return int((await response.json())["id"])
