"""arq: asyncio, jobs in a sorted set that workers poll (every 0.5 s by default)."""

from __future__ import annotations

import asyncio

from bench.systems import BenchContext, QueueSystem

#: arq has no batch enqueue; callers gather coroutines. Each enqueue_job is a
#: WATCH/MULTI transaction on its own connection, so the fan-out is bounded.
CONCURRENCY = 100


class ArqSystem(QueueSystem):
    """arq 0.2x with ``max_jobs=1000`` and the default poll delay."""

    name = "arq"
    settings = "max_jobs 1000, poll_delay 0.5 s (default); enqueue_job gathered 100 at a time"
    poll_interval = 0.5  # arq's default poll_delay

    def prepare(self, ctx: BenchContext) -> None:
        from arq.connections import RedisSettings, create_pool

        self.ctx = ctx
        self.pool = self.run(create_pool(RedisSettings.from_dsn(ctx.redis_url)))

    def enqueue_incr(self, n: int, key: str) -> None:
        async def enqueue() -> None:
            for start in range(0, n, CONCURRENCY):
                count = min(CONCURRENCY, n - start)
                await asyncio.gather(*(self.pool.enqueue_job("incr", key) for _ in range(count)))

        self.run(enqueue())

    def enqueue_stamp(self, key: str) -> None:
        self.run(self.pool.enqueue_job("stamp", key))

    def worker_commands(self, processes: int) -> list[list[str]]:
        argv = [
            *(self.ctx.python, "-m", "arq", "bench.systems.arq_tasks.WorkerSettings"),
            *("--custom-log-dict", "bench.systems.arq_tasks.LOG_CONFIG"),
        ]
        return [argv] * processes

    def close(self) -> None:
        self.run(self.pool.aclose())
        super().close()
