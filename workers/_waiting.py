"""Waiting that a stop request cuts short, for the worker's and engine's loops."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["backoff_delay", "sleep_unless", "wait_either"]


async def wait_either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Return as soon as either event is set."""
    waiters = {asyncio.create_task(first.wait()), asyncio.create_task(second.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def backoff_delay(failures: int, cap: float) -> float:
    """0.2 s, 0.4 s, 0.8 s… after consecutive failures, at most ``cap``."""
    return min(0.1 * 2 ** min(failures, 8), cap)
