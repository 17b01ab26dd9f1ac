"""The ``herald`` command line (also ``python -m herald``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from herald.settings import Settings, SettingsError

__all__ = ["main"]

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]

# What a container runs, and the --check its health check runs every few seconds: none
# of them needs the operator commands' imports (SQLAlchemy and the models, about 1 s of
# CPU per start), so the parser leaves those commands out when one of these is asked for.
SERVICE_COMMANDS = frozenset({"web", "bridge", "router-auth", "router", "worker", "scheduler"})


def _run_service(settings: Settings, name: str, service: Service) -> int:
    """Run an async service until SIGINT/SIGTERM sets its stop event."""
    from herald.logs import configure_logging

    configure_logging(settings, name)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await service(settings, stop)

    asyncio.run(runner())
    return 0


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from herald.logs import configure_logging
    from herald.up import run_up

    configure_logging(settings, "up")
    return run_up(settings, os.environ, workers=args.workers)


def _cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _web_check(settings)
    from web.app import serve

    return _run_service(settings, "web", serve)


def _cmd_bridge(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _health_key_check(settings, "bridge")
    from components.bridge import serve

    return _run_service(settings, "bridge", serve)


def _cmd_router_auth(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _health_key_check(settings, "router-auth")
    from router.service import serve

    return _run_service(settings, "router-auth", serve)


def _cmd_router(settings: Settings, args: argparse.Namespace) -> int:
    from herald.crossbar import crossbar_command, crossbar_env, render_config

    if args.check:
        return _router_check(settings)
    node_dir = settings.var_dir / "crossbar"
    render_config(settings, node_dir)
    argv = crossbar_command(node_dir)
    os.execve(argv[0], argv, {**os.environ, **crossbar_env(settings)})  # noqa: S606 - replaces this process with Crossbar


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _health_key_check(settings, "worker")
    from workers.worker import UnsafeRedis, serve

    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())

    async def service(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, queues=queues, concurrency=args.concurrency)

    try:
        return _run_service(settings, "worker", service)
    except UnsafeRedis as exc:
        print(f"herald worker: {exc}", file=sys.stderr)
        return 2


def _cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _health_key_check(settings, "scheduler")
    from workers.schedule import load_schedule
    from workers.scheduler import serve

    jobs = load_schedule(settings)  # a bad schedule file stops the process here (exit 2)

    async def service(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, jobs)

    return _run_service(settings, "scheduler", service)


# --- health checks: what a container's HEALTHCHECK runs (exit 0 healthy, 1 not) ---------
# Each answers within CHECK_TIMEOUT seconds, well inside a health check's own timeout.
CHECK_TIMEOUT = 5.0
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - bind addresses, probed via loopback


def _health_key_check(settings: Settings, process: str) -> int:
    """Exit 0 when a ``process`` on this host keeps its Redis health key fresh.

    The key is held only while the process is ready (a worker claiming, the bridge
    joined to its router and subscribed to Redis, router auth registered), so this
    says more than "the process is alive".
    """
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from herald.health import healthy_on_this_host

    async def check() -> bool:
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=CHECK_TIMEOUT,
            socket_timeout=CHECK_TIMEOUT,
        )
        try:
            return await healthy_on_this_host(redis, process)
        finally:
            await redis.aclose()

    try:
        healthy = asyncio.run(check())
    except (RedisError, OSError) as exc:
        print(f"cannot read health keys from Redis: {type(exc).__name__}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"no healthy {process} on this host", file=sys.stderr)
        return 1
    print("healthy")
    return 0


def _web_check(settings: Settings) -> int:
    """Exit 0 when this host's web process answers its /healthz with 200 (DB, Redis and
    the router's port all answer); otherwise print what fails."""
    import json
    import urllib.error
    import urllib.request

    host = "127.0.0.1" if settings.web_host in _WILDCARDS else settings.web_host
    url = f"http://{host}:{settings.web_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        try:
            failing = json.loads(exc.read()).get("failing", [])
        except ValueError:
            failing = []
        print(
            f"web unhealthy: HTTP {exc.code}, failing: {', '.join(failing) or '?'}", file=sys.stderr
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"web does not answer at {url}: {exc}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


def _router_check(settings: Settings) -> int:
    """Exit 0 when this host's Crossbar accepts on its browser and backend ports."""
    from herald.crossbar import router_ready

    if not router_ready(settings):
        print(
            f"router not accepting on port {settings.router_port} (browsers) "
            f"and {settings.backend_port} (backend)",
            file=sys.stderr,
        )
        return 1
    print("healthy")
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from herald.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}")
    return 0


def _cmd_demo_data(settings: Settings, _args: argparse.Namespace) -> int:
    from herald.db import create_engine, session_factory
    from herald.demo import load_demo_data

    async def load() -> bool:
        engine = create_engine(settings)
        try:
            return await load_demo_data(session_factory(engine), settings.demo_password)
        finally:
            await engine.dispose()

    print("demo data loaded" if asyncio.run(load()) else "database has users: demo data skipped")
    return 0


def _parser(*, operator_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald", description="Herald: realtime background tasks for learning systems."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole platform on this machine (demo data included)")
    up.add_argument("--workers", type=int, default=1, help="worker processes to start")
    up.set_defaults(func=_cmd_up)
    services = (
        ("web", "serve pages and the JSON API", _cmd_web, "its /healthz answers 200"),
        ("bridge", "relay Redis events to WAMP", _cmd_bridge, "a bridge on this host is healthy"),
        (
            "router-auth",
            "WAMP authenticator and authorizer for Crossbar",
            _cmd_router_auth,
            "router auth on this host is healthy",
        ),
        ("router", "run the Crossbar router", _cmd_router, "this host's router accepts"),
    )
    for name, help_text, func, healthy in services:
        service = sub.add_parser(name, help=help_text)
        service.add_argument("--check", action="store_true", help=f"exit 0 if {healthy}")
        service.set_defaults(func=func)

    worker = sub.add_parser("worker", help="run queued tasks")
    worker.add_argument("--queues", default="io,cpu,diag", help="comma-separated queue names")
    worker.add_argument("--concurrency", type=int, default=None, help="jobs run at once")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if a worker on this host is healthy"
    )
    worker.set_defaults(func=_cmd_worker)

    scheduler = sub.add_parser("scheduler", help="fire the recurring jobs (one per machine)")
    scheduler.add_argument(
        "--check", action="store_true", help="exit 0 if a scheduler on this host is healthy"
    )
    scheduler.set_defaults(func=_cmd_scheduler)

    if operator_commands:
        from herald.cli_schedule import add_schedule_commands
        from herald.cli_tasks import add_task_commands

        add_task_commands(sub)
        add_schedule_commands(sub)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=_cmd_migrate)
    sub.add_parser(
        "demo-data", help="load the demo course and accounts into an empty database"
    ).set_defaults(func=_cmd_demo_data)

    if operator_commands:
        from herald.cli_users import add_user_commands

        add_user_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    service = bool(words) and words[0] in SERVICE_COMMANDS
    args = _parser(operator_commands=not service).parse_args(words)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"herald: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except SettingsError as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
