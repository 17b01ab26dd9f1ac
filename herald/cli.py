"""The ``herald`` command line (also ``python -m herald``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from herald.cli_schedule import add_schedule_commands
from herald.cli_tasks import add_task_commands
from herald.cli_users import add_user_commands
from herald.db import create_engine, session_factory
from herald.logs import configure_logging
from herald.settings import Settings, SettingsError

__all__ = ["main"]

Service = Callable[[Settings, asyncio.Event], Awaitable[None]]


def _run_service(settings: Settings, name: str, service: Service) -> int:
    """Run an async service until SIGINT/SIGTERM sets its stop event."""
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
    from herald.up import run_up

    configure_logging(settings, "up")
    return run_up(settings, os.environ, workers=args.workers)


def _cmd_web(settings: Settings, _args: argparse.Namespace) -> int:
    from web.app import serve

    return _run_service(settings, "web", serve)


def _cmd_bridge(settings: Settings, _args: argparse.Namespace) -> int:
    from components.bridge import serve

    return _run_service(settings, "bridge", serve)


def _cmd_router_auth(settings: Settings, _args: argparse.Namespace) -> int:
    from router.service import serve

    return _run_service(settings, "router-auth", serve)


def _cmd_router(settings: Settings, _args: argparse.Namespace) -> int:
    from herald.crossbar import crossbar_command, crossbar_env, render_config

    node_dir = settings.var_dir / "crossbar"
    render_config(settings, node_dir)
    argv = crossbar_command(node_dir)
    os.execve(argv[0], argv, {**os.environ, **crossbar_env(settings)})  # noqa: S606 - replaces this process with Crossbar


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return asyncio.run(_worker_check(settings))
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
    from herald.cli_schedule import scheduler_check
    from workers.schedule import load_schedule
    from workers.scheduler import serve

    if args.check:
        return asyncio.run(scheduler_check(settings))
    jobs = load_schedule(settings)  # a bad schedule file stops the process here (exit 2)

    async def service(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, jobs)

    return _run_service(settings, "scheduler", service)


async def _worker_check(settings: Settings) -> int:
    """Exit 0 when a worker on this host keeps its health key fresh."""
    from redis.asyncio import Redis

    from herald.health import health_key, instance_id

    redis = Redis.from_url(settings.redis_url)
    try:
        pattern = health_key("worker", instance_id("*"))
        async for _ in redis.scan_iter(match=pattern, count=100):
            print("healthy")
            return 0
    finally:
        await redis.aclose()
    print("no healthy worker on this host", file=sys.stderr)
    return 1


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from herald.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}")
    return 0


def _cmd_demo_data(settings: Settings, _args: argparse.Namespace) -> int:
    from herald.demo import load_demo_data

    async def load() -> bool:
        engine = create_engine(settings)
        try:
            return await load_demo_data(session_factory(engine), settings.demo_password)
        finally:
            await engine.dispose()

    print("demo data loaded" if asyncio.run(load()) else "database has users: demo data skipped")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald", description="Herald: realtime background tasks for learning systems."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole platform on this machine (demo data included)")
    up.add_argument("--workers", type=int, default=1, help="worker processes to start")
    up.set_defaults(func=_cmd_up)
    sub.add_parser("web", help="serve pages and the JSON API").set_defaults(func=_cmd_web)
    sub.add_parser("bridge", help="relay Redis events to WAMP").set_defaults(func=_cmd_bridge)
    sub.add_parser(
        "router-auth", help="WAMP authenticator and authorizer for Crossbar"
    ).set_defaults(func=_cmd_router_auth)
    sub.add_parser("router", help="run the Crossbar router").set_defaults(func=_cmd_router)

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

    add_task_commands(sub)
    add_schedule_commands(sub)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=_cmd_migrate)
    sub.add_parser(
        "demo-data", help="load the demo course and accounts into an empty database"
    ).set_defaults(func=_cmd_demo_data)

    add_user_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
