"""RQ: a Redis list per queue, a hash per job, one job at a time per worker."""

from __future__ import annotations

from bench.systems import BenchContext, QueueSystem

QUEUE_NAME = "bench"
PIPELINE_DEPTH = 1000


class RqSystem(QueueSystem):
    """RQ's SimpleWorker (no fork per job), ``result_ttl=0``."""

    name = "rq"
    settings = "SimpleWorker, result_ttl 0; enqueue_many() 1,000 per pipeline"
    slow = True

    def prepare(self, ctx: BenchContext) -> None:
        import redis
        from rq import Queue

        from bench.systems import rq_tasks

        self.ctx = ctx
        self.tasks = rq_tasks
        self.queue = Queue(QUEUE_NAME, connection=redis.Redis.from_url(ctx.redis_url))

    def enqueue_incr(self, n: int, key: str) -> None:
        # enqueue_many is RQ's own batch API: one pipeline per call.
        for start in range(0, n, PIPELINE_DEPTH):
            count = min(PIPELINE_DEPTH, n - start)
            data = [
                self.queue.prepare_data(self.tasks.incr, (key,), result_ttl=0) for _ in range(count)
            ]
            self.queue.enqueue_many(data)

    def enqueue_stamp(self, key: str) -> None:
        self.queue.enqueue(self.tasks.stamp, key, result_ttl=0)

    def worker_commands(self, processes: int) -> list[list[str]]:
        argv = [
            *(self.ctx.python, "-m", "rq.cli", "worker", "--quiet", QUEUE_NAME),
            *("--worker-class", "rq.worker.SimpleWorker", "--url", self.ctx.redis_url),
        ]
        return [argv] * processes

    def close(self) -> None:
        self.queue.connection.close()
        super().close()
