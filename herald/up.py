"""``herald up``: the whole platform on one machine with the embedded defaults."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping
from types import FrameType

from herald.db import create_engine, session_factory
from herald.demo import DEMO_ACCOUNTS, load_demo_data
from herald.logs import get_logger
from herald.migrate import upgrade
from herald.settings import Settings
from herald.supervisor import StartupError, Supervisor, backend_secret

__all__ = ["run_up"]

log = get_logger(__name__)


class _Stop(Exception):
    """Raised from the signal handler to unwind into the shutdown path."""


async def _load_demo(settings: Settings) -> bool:
    engine = create_engine(settings)
    try:
        return await load_demo_data(session_factory(engine), settings.demo_password)
    finally:
        await engine.dispose()


def _banner(settings: Settings, seconds: float, demo_loaded: bool) -> str:
    accounts = "\n".join(
        f"    {a.username:<6} {a.role.value:<8} password: {settings.demo_password}"
        for a in DEMO_ACCOUNTS
    )
    return (
        f"\nHerald is up ({seconds:.1f}s): open {settings.web_url}\n"
        f"  router   {settings.router_public_url}\n"
        f"  database {settings.database_url}\n"
        f"  redis    {settings.redis_url}\n"
        f"  demo accounts ({'loaded now' if demo_loaded else 'already present'}):\n{accounts}\n"
        "Press Ctrl-C to stop every process.\n"
    )


def run_up(settings: Settings, environ: Mapping[str, str], workers: int = 1) -> int:
    """Start Redis (if private), migrate, load demo data, start every process; block."""
    started = time.monotonic()
    env = {**environ, "HERALD_BACKEND_SECRET": backend_secret(settings, environ)}
    env.setdefault("HERALD_REDIS_URL", settings.redis_url)
    settings = Settings.from_env(env)
    supervisor = Supervisor(settings, env, log_dir=settings.var_dir / "logs")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only the first signal stops: a second one (Ctrl-C pressed twice, a wrapper
        # forwarding SIGTERM) must not break into the shutdown the first began.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if settings.redis_is_private:
            supervisor.start_private_redis()
            log.info("up.ready", process="redis", url=settings.redis_url)
        upgrade(settings.database_url)
        demo_loaded = asyncio.run(_load_demo(settings))
        supervisor.start_router()
        log.info("up.ready", process="router", port=settings.router_port)
        # The authenticator must be registered before browsers can join.
        supervisor.start_service("router-auth")
        supervisor.start_service("bridge")
        for _ in range(workers):
            supervisor.start_service("worker")
        supervisor.start_service("scheduler")
        supervisor.start_service("web")
        print(_banner(settings, time.monotonic() - started, demo_loaded), flush=True)
        print(f"Logs: {settings.var_dir / 'logs'}", flush=True)
        while (dead := supervisor.first_exited()) is None:
            time.sleep(0.5)
        log.error("up.child_exited", process=dead.name, code=dead.proc.returncode)
        print(dead.log_tail(), file=sys.stderr)
        return 1
    except _Stop as stop:
        log.info("up.stopping", signal=str(stop))
        return 0
    except StartupError as exc:
        print(f"herald up: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop_all()
        log.info("up.stopped", pid=os.getpid())
