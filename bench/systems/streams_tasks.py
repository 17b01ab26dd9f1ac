"""Worker loop for the raw Redis Streams floor: ``python -m bench.systems.streams_tasks``."""

from __future__ import annotations

import os
import signal
import time

import redis

STREAM = "bench:stream"
GROUP = "bench"


def main() -> None:
    """Read batches of 100, run each entry's one command, ack the batch; until SIGTERM."""
    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    consumer = f"c{os.getpid()}"
    running = True

    def stop(_signum: int, _frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        # BLOCK 1000 so that a SIGTERM is noticed within a second.
        batches = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=100, block=1000)
        for _stream, entries in batches or ():
            for _id, fields in entries:
                key = fields[b"key"]
                if fields[b"op"] == b"incr":
                    r.incr(key)
                else:
                    r.rpush(key, repr(time.time()))
            r.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))


if __name__ == "__main__":
    main()
