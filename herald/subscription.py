"""Stay subscribed to Redis pub/sub across outages: subscribe, pump messages until
the connection fails, back off, start over, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from herald.logs import get_logger

__all__ = ["stay_subscribed"]

log = get_logger(__name__)

FIRST_DELAY = 0.25
MAX_DELAY = 10.0

P = TypeVar("P", bound=PubSub)


async def stay_subscribed(
    redis: Redis,
    stop: asyncio.Event,
    *,
    name: str,
    subscribe: Callable[[P], Awaitable[None]],
    pump: Callable[[P], Awaitable[None]],
    lost: Callable[[], None] | None = None,
    pubsub_class: type[P] = PubSub,  # type: ignore[assignment]
) -> None:
    """Run ``subscribe`` then ``pump`` on a fresh PubSub after every Redis failure.

    ``pump`` returns once ``stop`` is set; ``lost`` is told whenever a subscription
    ends, so a caller can mark itself not ready.
    """
    delay = FIRST_DELAY
    while not stop.is_set():
        pubsub = pubsub_class(redis.connection_pool)
        try:
            await subscribe(pubsub)
            delay = FIRST_DELAY
            await pump(pubsub)
        except (RedisError, OSError) as exc:
            log.warning(
                "redis subscription lost", subscription=name, error=str(exc), retry_in=delay
            )
        finally:
            if lost is not None:
                lost()
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_DELAY)
