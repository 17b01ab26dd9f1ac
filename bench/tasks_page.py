"""How fast the Background Tasks screen and the tasks API answer with 100,000 tasks.

    python bench/tasks_page.py [--tasks 100000] [--baseline 1000] [--rounds 30] [--explain]

For SQLite, and for PostgreSQL too when HERALD_TEST_POSTGRES_URL is set, builds two
fresh migrated databases with the demo data: one with ``--tasks`` realistic tasks
(``tests/web/tasks_data.py``: mostly submission steps, with reports, imports, grade
releases, failures and running work, over 60 days), one with ``--baseline`` of the
same mix. On each it starts the web app in this process (over a private
redis-server), signs in as the demo admin, and times each request ``--rounds``
times after a warm-up. The time is the server's: from the app's outermost
middleware receiving the request to the response being handed back (page
rendering included; the loopback network and the client not). Medians are printed
side by side with their ratio: about 1 means the screen does not slow down as the
table grows. SQLite is not ANALYZEd (the app never does it); PostgreSQL is, as its
autovacuum would be after a bulk load.

With ``--explain`` it prints the plan of every query on ``tasks`` that each request
made, for checking that every filter reads an index, not the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == REPO_ROOT / "bench":
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import event, func, select, text, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from herald.db import create_engine, session_factory  # noqa: E402
from herald.demo import load_demo_data  # noqa: E402
from herald.logs import configure_logging  # noqa: E402
from herald.migrate import upgrade_async  # noqa: E402
from herald.models import Task, User  # noqa: E402
from herald.passwords import hash_password  # noqa: E402
from herald.settings import Settings  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support import RedisServer  # noqa: E402
from tests.web.tasks_data import Filled, fill_tasks  # noqa: E402
from web import create_app  # noqa: E402
from web.keys import ENGINE  # noqa: E402

POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL")
STUDENT_PASSWORD = "bench-student"  # noqa: S105 - a throwaway account in a throwaway DB


def requests_for(filled: Filled) -> list[tuple[str, str, str]]:
    """(label, who, path): the screen and the API, first, filtered and deep pages."""
    # 99 % of the way down, but with a full page of 50 below it.
    deep = filled.first_id + max(51, (filled.last_id - filled.first_id) // 100)
    day = (filled.start + timedelta(days=15)).date().isoformat()
    return [
        ("page /tasks (newest 50)", "ada", "/tasks"),
        ("page /tasks?status=failed", "ada", "/tasks?status=failed"),
        ("page /tasks, deep (before=cursor)", "ada", f"/tasks?before={deep}"),
        ("page /tasks (a user's My tasks)", "student", "/tasks"),
        ("api /api/tasks (newest 50)", "ada", "/api/tasks"),
        ("api ?kind=reports.grades", "ada", "/api/tasks?kind=reports.grades"),
        ("api ?queue=bulk&status=done", "ada", "/api/tasks?queue=bulk&status=done"),
        ("api ?owner=student00042", "ada", "/api/tasks?owner=student00042"),
        ("api ?from=day&to=day (one day)", "ada", f"/api/tasks?from={day}&to={day}"),
        ("api deep (before=cursor)", "ada", f"/api/tasks?before={deep}"),
    ]


@asynccontextmanager
async def database(kind: str, root: Path) -> AsyncIterator[str]:
    """A fresh database URL of ``kind`` (sqlite or postgresql), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{root / f'tasks-{uuid.uuid4().hex[:8]}.db'}"
        return
    import asyncpg

    assert POSTGRES_URL is not None
    name = f"herald_bench_{uuid.uuid4().hex[:10]}"
    admin_url = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def prepare(url: str, count: int) -> tuple[Filled, str]:
    """Migrate and fill; the filled rows, and the username of the busiest owner of
    tasks that are not submission steps (whose My tasks the bench opens)."""
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        await load_demo_data(session_factory(engine), "demo")
        started = time.perf_counter()
        filled = await fill_tasks(engine, count)
        print(
            f"  {count:,} tasks inserted in {time.perf_counter() - started:.1f}s", file=sys.stderr
        )
        async with engine.begin() as conn:
            busiest = await conn.scalar(
                select(Task.owner_id)
                .where(Task.submission_id.is_(None), Task.owner_id.is_not(None))
                .group_by(Task.owner_id)
                .order_by(func.count().desc(), Task.owner_id)
                .limit(1)
            )
            username = await conn.scalar(select(User.username).where(User.id == busiest))
            await conn.execute(
                update(User)
                .where(User.id == busiest)
                .values(password_hash=hash_password(STUDENT_PASSWORD))
            )
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("ANALYZE")
                )
    finally:
        await engine.dispose()
    assert username is not None
    return filled, username


class Server:
    """The web app in this process, with a timing middleware outermost."""

    def __init__(self, root: Path, redis_url: str, database_url: str) -> None:
        self.settings = make_settings(root, redis_url, database_url, HERALD_LOG_LEVEL="warning")
        self.app = create_app(self.settings)
        self.times: list[float] = []
        self.statements: list[tuple[str, Any]] = []
        self.recording = False
        self.app.middlewares.insert(0, self._timing)
        self.runner = web.AppRunner(self.app, access_log=None)

    @web.middleware
    async def _timing(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            self.times.append(time.perf_counter() - started)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.settings.web_port)
        await site.start()
        engine: AsyncEngine = self.app[ENGINE]
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)
        return self.settings.web_url

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if (
            self.recording
            and statement.lstrip().upper().startswith("SELECT")
            and " tasks" in statement
        ):
            self.statements.append((statement, parameters))

    async def stop(self) -> None:
        await self.runner.cleanup()


async def signed_in(base_url: str, username: str, password: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    response = await session.post("/api/session", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return session


async def explain(url: str, statements: list[tuple[str, Any]]) -> list[str]:
    engine = create_engine(url)
    lines = []
    try:
        async with engine.connect() as conn:
            for statement, parameters in statements:
                if engine.dialect.name == "sqlite":
                    rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                    plan = [str(row[-1]) for row in rows]
                else:
                    rows = await conn.exec_driver_sql(
                        "EXPLAIN (COSTS OFF) " + statement, parameters
                    )
                    plan = [str(row[0]) for row in rows]
                lines.append("    " + " ".join(statement.split())[:150])
                lines += [f"      {line}" for line in plan]
    finally:
        await engine.dispose()
    return lines


@dataclass
class Site:
    """One database of ``count`` tasks, served, with a signed-in admin and student."""

    url: str
    filled: Filled
    server: Server
    sessions: dict[str, aiohttp.ClientSession]

    async def get(self, who: str, path: str) -> tuple[float, float, int]:
        """One GET: the server's time and the client's (request sent to whole body
        read, over loopback) in ms, and how many task rows it answered."""
        self.server.times.clear()
        started = time.perf_counter()
        async with self.sessions[who].get(path) as response:
            assert response.status == 200, (path, await response.text())
            body = await response.text()
        client = (time.perf_counter() - started) * 1000
        rows = (
            body.count('"url": "/tasks/')
            if path.startswith("/api/")
            else body.count("<tr data-task-id=")
        )
        return self.server.times[-1] * 1000, client, rows

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()
        await self.server.stop()


@asynccontextmanager
async def site(kind: str, count: int, root: Path, redis_url: str) -> AsyncIterator[Site]:
    async with database(kind, root) as url:
        print(f"{kind}: filling {count:,} tasks…", file=sys.stderr)
        filled, student = await prepare(url, count)
        server = Server(root / f"{kind}-{count}", redis_url, url)
        base_url = await server.start()
        served = Site(
            url,
            filled,
            server,
            {
                "ada": await signed_in(base_url, "ada", "demo"),
                "student": await signed_in(base_url, student, STUDENT_PASSWORD),
            },
        )
        try:
            yield served
        finally:
            await served.close()


async def plans_of(big: Site, label: str, who: str, path: str) -> list[str]:
    big.server.statements.clear()
    big.server.recording = True
    await big.get(who, path)
    big.server.recording = False
    return [f"  {label}  ({path})", *await explain(big.url, big.server.statements)]


async def compare(kind: str, args: argparse.Namespace, root: Path, redis_url: str) -> None:
    """Each request on the baseline and on the big database, alternately (so whatever
    else the machine does weighs on both alike); medians and their ratio."""
    async with (
        site(kind, args.baseline, root, redis_url) as base,
        site(kind, args.tasks, root, redis_url) as big,
    ):
        rows, plans, notes = [], [], []
        for (label, who, path), (_, _, base_path) in zip(
            requests_for(big.filled), requests_for(base.filled), strict=True
        ):
            for _ in range(3):  # warm-up: connection pools, template cache, DB pages
                await base.get(who, base_path)
                await big.get(who, path)
            server: tuple[list[float], list[float]] = ([], [])
            client: tuple[list[float], list[float]] = ([], [])
            counts = (0, 0)
            for _ in range(args.rounds):
                for index, (served, url) in enumerate(((base, base_path), (big, path))):
                    server_ms, client_ms, found = await served.get(who, url)
                    server[index].append(server_ms)
                    client[index].append(client_ms)
                    counts = (found, counts[1]) if index == 0 else (counts[0], found)
            small, large = statistics.median(server[0]), statistics.median(server[1])
            rows.append(
                f"| {label} | {small:.1f} ms ({counts[0]}) | {large:.1f} ms ({counts[1]}) "
                f"| {large / small:.2f} |"
            )
            if label.startswith("page /tasks (newest"):
                notes.append(
                    f"GET /tasks as the client sees it (loopback, whole page read): "
                    f"{statistics.median(client[0]):.1f} ms with {args.baseline:,} tasks, "
                    f"{statistics.median(client[1]):.1f} ms with {args.tasks:,}."
                )
            if args.explain:
                plans += await plans_of(big, label, who, path)
    print(f"\n### {kind}: server time, median of {args.rounds}\n")
    print(f"| request | {args.baseline:,} tasks (rows) | {args.tasks:,} tasks (rows) | ratio |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    print("\n" + "\n".join(notes))
    if plans:
        print(f"\nQuery plans with {args.tasks:,} tasks ({kind}):\n")
        print("\n".join(plans))


async def run(args: argparse.Namespace) -> None:
    kinds = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
    with tempfile.TemporaryDirectory(prefix="herald-bench-tasks-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        redis.start()
        try:
            for kind in kinds:
                await compare(kind, args, root, redis.url)
        finally:
            redis.stop()
    if not POSTGRES_URL:
        print("\n(PostgreSQL skipped: set HERALD_TEST_POSTGRES_URL to measure it too.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the big database")
    parser.add_argument("--baseline", type=int, default=1_000, help="tasks in the baseline")
    parser.add_argument("--rounds", type=int, default=30, help="requests timed per figure")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    args = parser.parse_args()
    configure_logging(Settings.from_env({"HERALD_LOG_LEVEL": "warning"}), "bench")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
