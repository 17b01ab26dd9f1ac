"""The monitor pass: once per cluster every :data:`MONITOR_SECONDS`, whichever worker
takes the lock samples queue depths (``workers.sampler``), checks backlogs
(``workers.backlog``) and sweeps failure alerts (``workers.alerts``).

Every worker tries each period; a Redis lock that expires with the period lets
one of them through, so the cluster samples once a period however many workers
run on however many machines (the reconciler's pattern).
"""

from __future__ import annotations

from datetime import datetime

from herald import names
from herald.health import instance_id
from herald.logs import get_logger
from herald.models import utcnow
from workers import alerts
from workers.backlog import check_backlogs
from workers.context import Services
from workers.sampler import take_sample

__all__ = ["MONITOR_SECONDS", "monitor_once_per_cluster", "monitor_pass"]

log = get_logger(__name__)

MONITOR_SECONDS = 30.0


async def monitor_pass(services: Services, now: datetime | None = None) -> None:
    """Sample, check backlogs, sweep alerts. A mail server that is down only defers
    emails; a DB or Redis outage ends the pass, and the next period tries again."""
    now = now or utcnow()
    await take_sample(services.sessions, services.queue, now)
    await check_backlogs(
        services.settings, services.sessions, services.queue, services.publisher, now
    )
    await alerts.sweep(services.settings, services.sessions, services.publisher, now)


async def monitor_once_per_cluster(
    services: Services, period: float = MONITOR_SECONDS, now: datetime | None = None
) -> bool:
    """Run :func:`monitor_pass` unless another worker did within ``period`` seconds;
    whether this one did."""
    taken = await services.queue.redis.set(
        names.MONITOR_LOCK, instance_id(), nx=True, px=int(period * 1000)
    )
    if not taken:
        return False
    await monitor_pass(services, now)
    return True
