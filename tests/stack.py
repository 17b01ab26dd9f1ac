"""The full Herald stack for end-to-end tests, started the way ``herald up`` does:
its own redis-server, Crossbar, router auth, bridge, a worker and the web app,
each a real process on private ports, readiness polled."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.health import health_key, instance_id
from herald.settings import Settings
from herald.supervisor import Supervisor
from tests.conftest import stack_env
from tests.support import RedisServer, port_open, wait_until
from workers.queue import RedisQueue
from workers.queue_settings import update_queue


@dataclass
class Stack:
    settings: Settings
    supervisor: Supervisor
    log_dir: Path

    @property
    def web_url(self) -> str:
        return self.settings.web_url

    def logs(self) -> str:
        """Every process log, for a failing test's report."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    # --- a router restart, as a Crossbar node going away and coming back ----------
    def router_running(self) -> bool:
        return any(c.name == "router" and c.proc.poll() is None for c in self.supervisor.children)

    def stop_router(self, grace: float = 15.0) -> None:
        """Stop Crossbar alone (SIGTERM, then SIGKILL) and wait until its ports close;
        the other processes keep running and lose their WAMP link."""
        for child in [c for c in self.supervisor.children if c.name == "router"]:
            if child.proc.poll() is None:
                child.proc.terminate()
                try:
                    child.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                    child.proc.wait()
            self.supervisor.children.remove(child)
        ports = (self.settings.router_port, self.settings.backend_port)
        wait_until(
            lambda: not any(port_open(port) for port in ports),
            timeout=grace,
            what="the router's ports to close",
        )

    def start_router(self) -> None:
        """Start Crossbar again (waits for its ports), unless it is running."""
        if not self.router_running():
            self.supervisor.start_router()

    def backend_joined(self) -> bool:
        """Whether router auth and the bridge hold their health keys, which they do only
        while joined to the router (and, for the bridge, subscribed to Redis)."""
        client = self.supervisor.redis_client()
        try:
            children = [c for c in self.supervisor.children if c.name in ("router-auth", "bridge")]
            return len(children) == 2 and all(
                client.exists(health_key(c.name, instance_id(c.proc.pid))) for c in children
            )
        finally:
            client.close()

    def ensure_router(self, timeout: float = 60.0) -> None:
        """The router running and every backend component rejoined: the shared stack's
        normal state, restored after a test that stopped the router."""
        self.start_router()
        wait_until(
            self.backend_joined,
            timeout=timeout,
            what="router auth and the bridge to rejoin the router",
        )


def start_stack(root: Path) -> Iterator[Stack]:
    """Start every process; yield the running stack; stop everything afterwards."""
    redis_server = RedisServer(root / "redis")
    redis_server.start()
    env = stack_env(root, redis_server.url, f"sqlite+aiosqlite:///{root / 'herald.db'}")
    settings = Settings.from_env(env)
    full_env = {**os.environ, **env}
    for command in ("migrate", "demo-data"):
        subprocess.run(
            [sys.executable, "-m", "herald", command],
            env=full_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    log_dir = root / "logs"
    supervisor = Supervisor(settings, full_env, log_dir=log_dir)
    stack = Stack(settings, supervisor, log_dir)
    try:
        supervisor.start_router()
        supervisor.start_service("router-auth")
        supervisor.start_service("bridge")
        supervisor.start_service("worker", "--concurrency", "4")
        supervisor.start_service("scheduler")
        supervisor.start_service("web")
    except Exception:
        supervisor.stop_all()
        redis_server.stop()
        pytest.fail(f"the stack did not start\n{stack.logs()}")
    try:
        yield stack
    finally:
        supervisor.stop_all()
        redis_server.stop()


@dataclass
class QueueSwitch:
    """Pauses and resumes a queue as an operator does: the DB setting, mirrored live."""

    sessions: async_sessionmaker[AsyncSession]
    queue: RedisQueue
    name: str

    async def pause(self) -> None:
        await update_queue(self.sessions, self.queue, self.name, paused=True)

    async def resume(self) -> None:
        await update_queue(self.sessions, self.queue, self.name, paused=False)
