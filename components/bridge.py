"""The bridge: relay every Herald event from its Redis channel to the WAMP topic
of the same name.

Every router node runs its own bridge, so Redis is the backplane. Events that
arrive while Crossbar is unreachable are dropped and counted: clients see the
gap in ``seq`` and resync from the HTTP API, which is cheaper and more correct
than buffering an unbounded backlog here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.wamp.exception import ApplicationError, SessionNotReady, TransportLost
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from herald import names
from herald.events import EnvelopeError, parse_envelope
from herald.health import instance_id
from herald.logs import get_logger
from herald.settings import Settings
from herald.subscription import stay_subscribed
from herald.wamp import BackendLink, Readiness, finish_tasks, halt_on_exit

__all__ = ["PROCESS", "Bridge", "serve"]

log = get_logger(__name__)

PROCESS = "bridge"
SHUTDOWN_GRACE = 5.0
# How long one read of the subscription waits before re-checking stop.
POLL_TIMEOUT = 1.0


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _relayed_channel(channel: str) -> bool:
    # Patterns like "user.*" also match "user.x" or "user.7.y": only canonical topics pass.
    return channel in names.BRIDGE_CHANNELS or names.parse_topic(channel) is not None


class Bridge:
    """Relays Redis messages to WAMP through a :class:`BackendLink`."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._redis = redis
        self.readiness = Readiness("wamp", "redis")
        self.link = BackendLink(
            settings, name=PROCESS, on_join=self._on_join, on_change=self._on_wamp_change
        )
        self.relayed = 0
        self.dropped_malformed = 0
        self.dropped_offline = 0
        self._dropped_this_outage = 0

    async def _on_join(self, _session: Any) -> None:
        # Nothing to register: the bridge only publishes.
        return None

    def _on_wamp_change(self, up: bool) -> None:
        self.readiness.set("wamp", up)
        if up and self._dropped_this_outage:
            log.warning(
                "events dropped while crossbar was down",
                dropped=self._dropped_this_outage,
                dropped_total=self.dropped_offline,
            )
            self._dropped_this_outage = 0

    def handle(self, channel_raw: bytes | str, data: bytes | str) -> bool:
        """Relay one Redis message; returns whether it was published to WAMP."""
        channel = _text(channel_raw)
        if not _relayed_channel(channel):
            self.dropped_malformed += 1
            log.warning("message on a non-topic channel dropped", channel=channel[:200])
            return False
        try:
            envelope = parse_envelope(data)
        except EnvelopeError as exc:
            self.dropped_malformed += 1
            log.warning("malformed envelope dropped", channel=channel, error=str(exc))
            return False
        if envelope["topic"] != channel:
            self.dropped_malformed += 1
            log.warning(
                "envelope topic does not match its channel; dropped",
                channel=channel,
                topic=envelope["topic"][:200],
            )
            return False
        session = self.link.session
        if session is None:
            self._drop_offline(channel)
            return False
        try:
            # Not acknowledged: one transport keeps the order, and a round trip
            # per event would cap throughput for nothing the bridge could act on.
            session.publish(channel, envelope)
        except (SessionNotReady, TransportLost, ApplicationError) as exc:
            self._drop_offline(channel, error=str(exc))
            return False
        self.relayed += 1
        return True

    def _drop_offline(self, channel: str, error: str | None = None) -> None:
        self.dropped_offline += 1
        self._dropped_this_outage += 1
        if self._dropped_this_outage == 1:
            # One line per outage now, the count when WAMP is back (_on_wamp_change).
            log.warning(
                "crossbar down: dropping events until it is back",
                channel=channel,
                error=error,
                dropped_total=self.dropped_offline,
            )

    async def run_redis(self, stop: asyncio.Event) -> None:
        """Stay subscribed to every Herald channel, resubscribing after Redis outages."""

        async def subscribe(pubsub: PubSub) -> None:
            await pubsub.psubscribe(*names.BRIDGE_PATTERNS)
            await pubsub.subscribe(*names.BRIDGE_CHANNELS)
            self.readiness.set("redis", True)
            log.info("subscribed to redis channels")

        await stay_subscribed(
            self._redis,
            stop,
            name="bridge",
            subscribe=subscribe,
            pump=lambda pubsub: self._pump(pubsub, stop),
            lost=lambda: self.readiness.set("redis", False),
        )

    async def _pump(self, pubsub: PubSub, stop: asyncio.Event) -> None:
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_TIMEOUT)
            if message is None or message["type"] not in ("message", "pmessage"):
                continue
            self.handle(message["channel"], message["data"])


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the bridge until ``stop`` is set, then close every client it opened."""
    settings.require_backend_secret()
    redis = Redis.from_url(settings.redis_url)
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with halt_on_exit(stop) as halt:
            bridge = Bridge(settings, redis)
            tasks.add(asyncio.create_task(bridge.run_redis(halt), name="bridge-redis"))
            tasks.add(
                asyncio.create_task(
                    bridge.readiness.keep_health(redis, PROCESS, instance_id(), halt),
                    name="bridge-health",
                )
            )
            log.info("bridge starting", url=settings.backend_url)
            await bridge.link.run(halt)
    finally:
        await finish_tasks(tasks, SHUTDOWN_GRACE)
        await redis.aclose()
        log.info("bridge stopped")
