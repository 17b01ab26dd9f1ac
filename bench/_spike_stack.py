"""The real stack the burst and spike benchmarks run against: a private redis-server,
a migrated database (SQLite, or a fresh PostgreSQL database), the demo data plus
seeded students, a private clamd with a local EICAR database, and the web and
worker processes started as their own OS processes, as ``herald up`` would.

Students are seeded straight into the database with one precomputed argon2 hash
(hashing thousands of passwords is not what is measured); they still sign in over
HTTP like anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from herald.db import create_engine, session_factory
from herald.demo import load_demo_data
from herald.migrate import upgrade_async
from herald.models import Assignment, CourseRole, Enrolment, User
from herald.passwords import hash_password
from herald.settings import Settings
from tests.clamd_server import ClamdServer
from tests.support import RedisServer, free_port

__all__ = ["PASSWORD", "Stack", "fresh_database", "percentile", "start_stack"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "spike-password"  # noqa: S105 - every seeded bench student's
SEED_BATCH = 1000


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


@contextlib.asynccontextmanager
async def fresh_database(kind: str, root: Path) -> AsyncIterator[str]:
    """A URL for an empty database: a SQLite file in ``root``, or a new PostgreSQL
    database next to ``HERALD_TEST_POSTGRES_URL``'s, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{root / 'herald.db'}"
        return
    base = os.environ.get("HERALD_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("--db postgres needs HERALD_TEST_POSTGRES_URL")
    name = f"herald_bench_{secrets.token_hex(4)}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def seed_students(settings: Settings, count: int) -> list[str]:
    """``count`` students enrolled in the demo course, all with :data:`PASSWORD`."""
    engine = create_engine(settings)
    try:
        sessions = session_factory(engine)
        await load_demo_data(sessions, "demo")
        password_hash = hash_password(PASSWORD)
        names = [f"student{n:05d}" for n in range(count)]
        async with sessions.begin() as db:
            course_id = await db.scalar(select(Assignment.course_id))
            for start in range(0, count, SEED_BATCH):
                batch = names[start : start + SEED_BATCH]
                ids = (
                    await db.scalars(
                        insert(User).returning(User.id),
                        [
                            {
                                "username": name,
                                "display_name": f"Student {name[7:]}",
                                "email": f"{name}@students.herald.invalid",
                                "password_hash": password_hash,
                                "is_admin": False,
                                "is_active": True,
                            }
                            for name in batch
                        ],
                    )
                ).all()
                await db.execute(
                    insert(Enrolment),
                    [
                        {"user_id": user_id, "course_id": course_id, "role": CourseRole.STUDENT}
                        for user_id in ids
                    ],
                )
        return names
    finally:
        await engine.dispose()


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    settings: Settings
    assignment_id: int
    students: list[str]
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start_web(self, module: str = "bench._spike_web") -> None:
        """The web process (``herald web``'s app, plus the bench's timing and inline routes)."""
        self.web = self._spawn([sys.executable, "-m", module], "web")

    def start_workers(self, processes: int, concurrency: int, queues: str = "io,cpu") -> None:
        for index in range(processes):
            argv = [sys.executable, "-m", "herald", "worker", "--queues", queues]
            argv += ["--concurrency", str(concurrency)]
            self.workers.append(self._spawn(argv, f"worker-{index}"))

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)

    async def wait_web(self, timeout: float = 60) -> None:  # noqa: ASYNC109 - a polling deadline
        """Poll until the web process answers HTTP (any status)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.web is not None and self.web.poll() is not None:
                    raise RuntimeError(f"web exited: see {self.root / 'web.log'}")
                try:
                    async with http.get(f"{self.base_url}/api/me") as response:
                        await response.read()
                        return
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.05)  # polling for readiness, not simulating work

    def profile(
        self, procs: list[subprocess.Popen[bytes]], name: str
    ) -> list[subprocess.Popen[bytes]]:
        """py-spy sampling each of ``procs`` into ``<root>/<name>-<n>.txt`` (collapsed
        stacks) until :meth:`stop_profilers`; py-spy must be installed in the venv."""
        py_spy = Path(sys.executable).with_name("py-spy")
        profilers = []
        for index, proc in enumerate(procs):
            out = self.root / f"{name}-{index}.txt"
            argv = [str(py_spy), "record", "--pid", str(proc.pid), "--format", "raw"]
            argv += ["--rate", "100", "--nonblocking", "--output", str(out)]
            profilers.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        return profilers

    @staticmethod
    def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
        for profiler in profilers:
            profiler.wait(60)

    def stop_processes(self) -> None:
        procs = [p for p in (self.web, *self.workers) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.web, self.workers = None, []


@contextlib.asynccontextmanager
async def start_stack(
    root: Path, db_kind: str, students: int, extra_env: dict[str, str]
) -> AsyncIterator[Stack]:
    """Backends up, schema migrated, students seeded; processes are started by the caller."""
    redis = RedisServer(root / "redis")
    redis.start()
    clamd = ClamdServer(root / "clamd", stream_max_length="30M")
    clamd.start()
    try:
        async with fresh_database(db_kind, root) as database_url:
            await upgrade_async(database_url)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_")},
                "HERALD_VAR_DIR": str(root / "var"),
                "HERALD_DATABASE_URL": database_url,
                "HERALD_REDIS_URL": redis.url,
                "HERALD_BACKEND_SECRET": secrets.token_urlsafe(24),
                "HERALD_WEB_PORT": str(free_port()),
                "HERALD_ROUTER_PORT": str(free_port()),
                "HERALD_ROUTER_BACKEND_PORT": str(free_port()),
                "HERALD_LOG_LEVEL": "warning",
                "HERALD_LOG_FORMAT": "json",
                "HERALD_DEMO_PASSWORD": "demo",
                "HERALD_CLAMD_URL": clamd.url,
                "PYTHONPATH": str(REPO_ROOT),
                **extra_env,
            }
            settings = Settings.from_env(env)
            names = await seed_students(settings, students)
            engine = create_engine(settings)
            async with session_factory(engine)() as db:
                assignment_id = await db.scalar(select(Assignment.id))
            await engine.dispose()
            assert assignment_id is not None
            stack = Stack(root, env, settings, assignment_id, names)
            try:
                yield stack
            finally:
                stack.stop_processes()
    finally:
        clamd.stop()
        redis.stop()
