"""Redis clients with a bounded, blocking connection pool.

redis-py's default pool refuses a command outright once its connections are all
in use; a worker running hundreds of jobs at once would turn that into spurious
job failures. A blocking pool makes the excess wait for a connection instead,
which also bounds the load one process puts on Redis.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

__all__ = ["connect"]

# Long enough to ride out a burst; short enough that a dead Redis surfaces as an error.
POOL_WAIT_SECONDS = 20.0


def connect(url: str, max_connections: int = 32) -> Redis:
    """A client on ``url`` sharing at most ``max_connections`` connections."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
