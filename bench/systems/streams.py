"""The floor: a bare Redis Streams consumer group, no queue library at all.

Enqueue is XADD pipelined 1,000 deep; the worker (``streams_tasks``) reads with
XREADGROUP COUNT 100 and acknowledges each batch with one XACK. Nothing reclaims
a dead consumer's pending entries, so this is the cost of Python + Redis alone.
"""

from __future__ import annotations

import redis

from bench.systems import BenchContext, QueueSystem
from bench.systems.streams_tasks import GROUP, STREAM

PIPELINE_DEPTH = 1000


class StreamsSystem(QueueSystem):
    """XADD / XREADGROUP + XACK."""

    name = "streams"
    settings = "XADD pipelined ×1000; XREADGROUP COUNT 100 + one XACK per batch; no reclaim"

    def prepare(self, ctx: BenchContext) -> None:
        self.ctx = ctx
        self.redis = redis.Redis.from_url(ctx.redis_url)

    def reset(self) -> None:
        # The group must exist before the first XADD, or entries added before a worker
        # creates it with id "$" would be skipped.
        self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)

    def enqueue_incr(self, n: int, key: str) -> None:
        for start in range(0, n, PIPELINE_DEPTH):
            pipe = self.redis.pipeline(transaction=False)
            for _ in range(min(PIPELINE_DEPTH, n - start)):
                pipe.xadd(STREAM, {"op": "incr", "key": key})
            pipe.execute()

    def enqueue_stamp(self, key: str) -> None:
        self.redis.xadd(STREAM, {"op": "stamp", "key": key})

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[self.ctx.python, "-m", "bench.systems.streams_tasks"]] * processes

    def close(self) -> None:
        self.redis.close()
        super().close()
