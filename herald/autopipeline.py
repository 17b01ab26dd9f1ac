"""A Redis client that pipelines the commands issued in the same event-loop iteration.

Hundreds of task handlers running at once each send a command or two; one round
trip per command makes the client, not Redis, the bottleneck (every command pays
for a pool checkout, a send and a read). This client queues each command,
and once per loop iteration sends everything queued as one non-transactional
pipeline, handing each caller its own reply or error. Order is kept per
caller: a coroutine's next command is queued only after its previous reply.

Blocking and connection-state commands bypass the pipeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

__all__ = ["AutoPipelineRedis"]

_BYPASS = frozenset(
    {
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "BLMPOP",
        "XREAD",
        "XREADGROUP",
        "WAIT",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "MONITOR",
        "SELECT",
        "WATCH",
        "MULTI",
        "EXEC",
    }
)
# Most commands sent in one pipeline: bounds one round trip's size.
MAX_BATCH = 512


class AutoPipelineRedis(Redis):
    """A :class:`redis.asyncio.Redis` whose commands share round trips (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0].upper() if isinstance(args[0], str) else args[0]
        if name in _BYPASS:
            return await super().execute_command(*args, **options)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, options, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            flush = asyncio.get_running_loop().create_task(self._send(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _send(
        self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            async with self.pipeline(transaction=False) as pipe:
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await super().aclose(close_connection_pool)
