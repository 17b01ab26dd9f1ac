"""SAQ: asyncio, a Redis list per queue that workers BLMOVE from."""

from __future__ import annotations

import asyncio

from bench.systems import BenchContext, QueueSystem
from bench.systems.arq import CONCURRENCY


class SaqSystem(QueueSystem):
    """SAQ with ``concurrency=50`` per worker process."""

    name = "saq"
    settings = "concurrency 50 per process; enqueue gathered 100 at a time"

    def prepare(self, ctx: BenchContext) -> None:
        from saq import Queue

        from bench.systems.saq_tasks import QUEUE_NAME

        self.ctx = ctx
        self.queue = Queue.from_url(ctx.redis_url, name=QUEUE_NAME)
        self.run(self.queue.connect())

    def enqueue_incr(self, n: int, key: str) -> None:
        async def enqueue() -> None:
            # SAQ has no batch enqueue either; same bounded gather as arq.
            for start in range(0, n, CONCURRENCY):
                count = min(CONCURRENCY, n - start)
                await asyncio.gather(*(self.queue.enqueue("incr", target=key) for _ in [0] * count))

        self.run(enqueue())

    def enqueue_stamp(self, key: str) -> None:
        self.run(self.queue.enqueue("stamp", target=key))

    def worker_commands(self, processes: int) -> list[list[str]]:
        # One `saq` per process rather than `--workers k`, so every process is the
        # harness's direct child like every other system's.
        return [[self.ctx.python, "-m", "saq", "bench.systems.saq_tasks.settings"]] * processes

    def close(self) -> None:
        self.run(self.queue.disconnect())
        super().close()
