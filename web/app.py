"""The web process: application factory and server loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from redis.asyncio import Redis

from herald.db import create_engine, session_factory
from herald.events import EventPublisher
from herald.health import instance_id as make_instance_id
from herald.health import keep_health
from herald.logs import get_logger
from herald.sessions import SessionStore
from herald.settings import Settings
from web import (
    api,
    broadcasts,
    dashboard,
    grading,
    imports,
    inbox,
    messages,
    metrics,
    pages,
    queues,
    reports,
    tasks_api,
    tasks_pages,
)
from web.auth import auth_middleware, csrf_middleware
from web.errors import error_middleware
from web.keys import DB, ENGINE, LOGIN_LIMITER, PUBLISHER, QUEUE, REDIS, SESSIONS, SETTINGS
from web.middleware import (
    forwarded_middleware,
    request_context_middleware,
    security_headers_middleware,
)
from web.ratelimit import LoginLimiter
from workers.queue import RedisQueue

__all__ = ["create_app", "serve"]

log = get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# JSON and urlencoded bodies are small; uploads stream past this limit on purpose.
CLIENT_MAX_SIZE = 1024 * 1024
SHUTDOWN_TIMEOUT = 10.0


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open every client the handlers use; close them all on shutdown."""
    settings = app[SETTINGS]
    redis = Redis.from_url(settings.redis_url)
    engine = create_engine(settings)
    try:
        app[REDIS] = redis
        app[ENGINE] = engine
        app[DB] = session_factory(engine)
        app[SESSIONS] = SessionStore(
            redis,
            session_ttl=settings.session_ttl_seconds,
            ticket_ttl=settings.ticket_ttl_seconds,
        )
        app[PUBLISHER] = EventPublisher(redis)
        app[QUEUE] = RedisQueue(redis)
        app[LOGIN_LIMITER] = LoginLimiter(redis, settings)
        yield
    finally:
        await engine.dispose()
        await redis.aclose()


def create_app(settings: Settings) -> web.Application:
    """The aiohttp application: pages, JSON API, static files, middlewares."""
    middlewares = [
        # Outermost first: logging sees the final status; every response,
        # errors included, gets the security headers.
        request_context_middleware,
        security_headers_middleware(settings),
        error_middleware,
        auth_middleware,
        csrf_middleware,
    ]
    if settings.trust_proxy:
        # Before everything else, so every later step sees the client's scheme and address.
        middlewares.insert(0, forwarded_middleware)
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=middlewares)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    app.router.add_routes(api.routes)
    app.router.add_routes(messages.routes)
    app.router.add_routes(inbox.routes)
    app.router.add_routes(broadcasts.routes)
    app.router.add_routes(grading.routes)
    app.router.add_routes(tasks_api.routes)
    app.router.add_routes(tasks_pages.routes)
    app.router.add_routes(reports.routes)
    app.router.add_routes(imports.routes)
    app.router.add_routes(queues.routes)
    app.router.add_routes(dashboard.routes)
    app.router.add_routes(metrics.routes)
    app.router.add_routes(pages.routes)
    app.router.add_static("/static", STATIC_DIR, name="static")
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve on ``web_host:web_port`` until ``stop`` is set, keeping the health key."""
    app = create_app(settings)
    # Our request middleware logs one line per request; aiohttp's would double it.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    health: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        await site.start()
        health = asyncio.create_task(
            keep_health(app[REDIS], "web", make_instance_id(), stop, url=settings.web_url),
            name="web-health",
        )
        log.info("web.started", url=settings.web_url)
        await stop.wait()
        log.info("web.stopping")
    finally:
        if health is not None:
            if not stop.is_set():
                health.cancel()
            # keep_health ends itself once stop is set and deletes its key.
            await asyncio.gather(health, return_exceptions=True)
        await runner.cleanup()
        log.info("web.stopped")
