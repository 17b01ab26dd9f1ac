"""The router-auth process: serve the authenticator and authorizer procedures
Crossbar calls, over a backend session that rejoins whenever Crossbar restarts,
and kill browser sessions whose access was taken away (router.revocation)."""

from __future__ import annotations

import asyncio
import socket

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.wamp.types import RegisterOptions
from redis.asyncio import Redis

from herald import names
from herald.db import create_engine, session_factory
from herald.health import instance_id
from herald.logs import get_logger
from herald.metrics import record_wamp_sessions
from herald.redis_pool import connect
from herald.sessions import SessionStore
from herald.settings import Settings
from herald.wamp import BackendLink, Readiness, finish_tasks, halt_on_exit
from router.authenticator import Authenticator
from router.authorizer import Authorizer
from router.decision_cache import DecisionCache
from router.revocation import SessionRevoker

__all__ = ["PROCESS", "redis_client", "serve"]

log = get_logger(__name__)

PROCESS = "router-auth"
SHUTDOWN_GRACE = 5.0
# Each authentication holds a connection for a few round trips only; more would not
# make Redis (one thread) answer faster.
REDIS_CONNECTIONS = 32


def redis_client(settings: Settings) -> Redis:
    """Router auth's Redis client, on a bounded *blocking* pool.

    A burst of joins (a lecture hall opening the page at once) then waits for a
    connection. redis-py's default pool raises "Too many connections" past 100 in
    use instead, and every join caught by that was refused (bench/live_sessions.py).
    """
    return connect(settings.redis_url, max_connections=REDIS_CONNECTIONS)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run router auth until ``stop`` is set, then close every client it opened."""
    settings.require_backend_secret()  # refuse to start without it, before opening anything
    redis = redis_client(settings)
    engine = create_engine(settings)
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with halt_on_exit(stop) as halt:
            sessions = session_factory(engine)
            store = SessionStore(
                redis,
                session_ttl=settings.session_ttl_seconds,
                ticket_ttl=settings.ticket_ttl_seconds,
            )
            cache = DecisionCache()
            authenticate = Authenticator(store, sessions, cache=cache)
            authorize = Authorizer(sessions, cache=cache)
            # One router node, however many router-auth replicas count its sessions.
            node = f"{socket.gethostname()}:{settings.backend_port}"
            revoker = SessionRevoker(
                store, cache, on_count=lambda count: record_wamp_sessions(redis, node, count)
            )

            async def on_join(session: ApplicationSession) -> None:
                # roundrobin: several router-auth replicas may serve the same procedures.
                options = RegisterOptions(invoke="roundrobin")
                await session.register(authenticate, names.PROC_AUTHENTICATE, options=options)
                await session.register(authorize, names.PROC_AUTHORIZE, options=options)
                revoker.attach(session)
                log.info("auth procedures registered")

            def on_change(up: bool) -> None:
                readiness.set("wamp", up)
                if not up:
                    revoker.attach(None)

            readiness = Readiness("wamp")
            link = BackendLink(settings, name=PROCESS, on_join=on_join, on_change=on_change)
            tasks.add(
                asyncio.create_task(
                    readiness.keep_health(redis, PROCESS, instance_id(), halt),
                    name="router-auth-health",
                )
            )
            tasks.add(asyncio.create_task(revoker.follow(redis, halt), name="router-auth-revoke"))
            log.info("router auth starting", url=settings.backend_url)
            await link.run(halt)
    finally:
        await finish_tasks(tasks, SHUTDOWN_GRACE)
        await redis.aclose()
        await engine.dispose()
        log.info("router auth stopped")
