"""``GET /metrics``: Herald's cluster-wide metrics in the Prometheus text format.

Counters and histograms are the ones every process keeps in Redis
(``herald.metrics``); gauges are read live when scraped: each queue's depth, running
jobs and settings (Redis and the DB), its backlog age (as the monitor last measured
it), the dead-letter set, and the browser sessions of each router node. Any web
process answers for the whole cluster, so scrape one of them (or all: the numbers
are the same).

It tells whoever reads it how busy the site is and which task kinds exist, so it is
not public: with ``HERALD_METRICS_TOKEN`` set, a scrape must send
``Authorization: Bearer <token>``; without it, only this machine may scrape, over
loopback and not through a proxy.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from herald import names
from herald.exposition import CONTENT_TYPE, Family, render
from herald.logs import get_logger
from herald.metrics import (
    RunOutcome,
    read_durations,
    read_events,
    read_task_counters,
    read_wamp_sessions,
)
from web.keys import DB, QUEUE, REDIS, SETTINGS
from workers.queue_overview import known_queues

__all__ = ["routes"]

routes = web.RouteTableDef()
log = get_logger(__name__)

# Headers a proxy adds: a request that carries one did not come from this machine.
_PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
_COUNTERS = {
    RunOutcome.PROCESSED: ("herald_tasks_processed_total", "Task runs that succeeded."),
    RunOutcome.FAILED: ("herald_tasks_failed_total", "Tasks that failed for good."),
    RunOutcome.RETRIED: (
        "herald_task_retries_total",
        "Task runs that failed and were queued to be tried again.",
    ),
    RunOutcome.CANCELLED: ("herald_tasks_cancelled_total", "Task runs that were cancelled."),
}


def _refusal(request: web.Request) -> web.Response | None:
    """Why this request may not scrape, as the answer to give it; None if it may."""
    token = request.app[SETTINGS].metrics_token
    if token:
        scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            supplied.strip().encode(), token.encode()
        ):
            return None
        return web.Response(
            status=401,
            text="Send Authorization: Bearer <HERALD_METRICS_TOKEN>.\n",
            headers={"WWW-Authenticate": 'Bearer realm="herald-metrics"'},
        )
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    if local and not any(header in request.headers for header in _PROXY_HEADERS):
        return None
    return web.Response(
        status=403,
        text="Metrics are served to this machine only; set HERALD_METRICS_TOKEN to scrape "
        "from elsewhere.\n",
    )


async def gather(app: web.Application) -> list[Family]:
    """Every metric family, read now."""
    redis, queue = app[REDIS], app[QUEUE]
    queue_names, configs = await known_queues(app[DB], queue)
    stats = await queue.stats(queue_names)
    ages = {
        (k.decode() if isinstance(k, bytes) else k): float(v)
        for k, v in (await redis.hgetall(names.BACKLOG_AGE_KEY)).items()
    }
    depth = Family("herald_queue_depth", "gauge", "Jobs waiting to run now (immediate included).")
    delayed = Family("herald_queue_delayed", "gauge", "Jobs waiting for a time (retry, run-at).")
    active = Family("herald_queue_active", "gauge", "Jobs running now, across every worker.")
    cap = Family("herald_queue_max_active", "gauge", "The queue's cap on running jobs, if any.")
    paused = Family("herald_queue_paused", "gauge", "1 while the queue is paused.")
    age = Family(
        "herald_queue_backlog_age_seconds",
        "gauge",
        "Age of the queue's oldest job ready to run, as the monitor last measured it.",
    )
    for item in stats:
        config = configs.get(item.name)
        depth.add(item.waiting, queue=item.name)
        delayed.add(item.delayed, queue=item.name)
        active.add(item.running, queue=item.name)
        paused.add(bool(config and config.paused), queue=item.name)
        if config and config.max_active is not None:
            cap.add(config.max_active, queue=item.name)
        if item.name in ages:
            age.add(ages[item.name], queue=item.name)
    dead = Family("herald_dead_letter_tasks", "gauge", "Tasks failed for good, kept for retry.")
    dead.add(int(await redis.zcard(names.DEAD_LETTER_KEY)))
    counters = {
        outcome: Family(name, "counter", text) for outcome, (name, text) in _COUNTERS.items()
    }
    for (outcome, queue_name, kind), count in sorted((await read_task_counters(redis)).items()):
        if outcome in counters:
            counters[RunOutcome(outcome)].add(count, queue=queue_name, kind=kind)
    durations = Family(
        "herald_task_duration_seconds",
        "histogram",
        "How long task runs took (succeeded, failed or retried), by queue and kind.",
    )
    for (queue_name, kind), histogram in sorted((await read_durations(redis)).items()):
        durations.add_histogram(histogram.cumulative(), histogram.sum, queue=queue_name, kind=kind)
    events = Family(
        "herald_events_published_total",
        "counter",
        "Events published, by topic family (submission, user, ...) and event type.",
    )
    for (family, type_), count in sorted((await read_events(redis)).items()):
        events.add(count, family=family, type=type_)
    sessions = Family("herald_wamp_sessions", "gauge", "Browser WAMP sessions on each router node.")
    for node, count in sorted((await read_wamp_sessions(redis)).items()):
        sessions.add(count, router=node)
    gauges = [depth, delayed, active, cap, paused, age, dead]
    return [*gauges, *counters.values(), durations, events, sessions]


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition of every metric (loopback, or a bearer token)."""
    refusal = _refusal(request)
    if refusal is not None:
        log.warning("metrics.refused", status=refusal.status, remote=request.remote)
        return refusal
    body = render(await gather(request.app))
    return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})
