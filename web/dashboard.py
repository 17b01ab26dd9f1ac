"""The admins' dashboard: queue depth, throughput and failures per queue, and execution
time percentiles per task kind over the last hours (``/admin/dashboard``, and its data
at ``GET /api/stats?hours=N``).

The history is durable (task rows and ``queue_samples``, see ``web.stats``); the
answer also carries each queue's depth right now, read from Redis, so the depth
chart ends at the present rather than at the last sample.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from herald.events import iso
from herald.models import Alert, utcnow
from web.auth import require_user
from web.errors import BadRequest, Forbidden, NotFound
from web.keys import DB, QUEUE
from web.render import render
from web.stats import HOURS_CHOICES, PERCENTILES, history, hours_from
from workers.queue_overview import known_queues

__all__ = ["routes"]

routes = web.RouteTableDef()

RECENT_ALERTS = 10


async def _stats(request: web.Request, hours: int) -> dict[str, Any]:
    app = request.app
    names, _ = await known_queues(app[DB], app[QUEUE])
    now = utcnow()
    async with app[DB]() as db:
        found = await history(db, hours, now, names)
        alerts = (
            await db.scalars(
                select(Alert)
                .order_by(Alert.created_at.desc(), Alert.id.desc())
                .limit(RECENT_ALERTS)
            )
        ).all()
    current = {
        stats.name: {"waiting": stats.waiting, "running": stats.running, "delayed": stats.delayed}
        for stats in await app[QUEUE].stats(found.queues)
    }
    return {
        **found.as_json(),
        "now": int(now.timestamp()),
        "current": current,
        "alerts": [
            {
                "id": alert.id,
                "kind": str(alert.kind),
                "queue": alert.queue,
                "task_id": alert.task_id,
                "text": alert.text,
                "created_at": iso(alert.created_at),
                "ended_at": iso(alert.ended_at),
            }
            for alert in alerts
        ],
    }


def _hours(request: web.Request) -> int:
    try:
        return hours_from(request.query.get("hours"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    """The dashboard's data for the last ``hours`` (1 to 336, default 6): series per
    queue in buckets, execution time percentiles per kind, depth now, recent alerts."""
    user, _ = require_user(request)
    if not user.is_admin:
        raise Forbidden("Only admins may see the dashboard.")
    return web.json_response(await _stats(request, _hours(request)))


@routes.get("/admin/dashboard")
async def dashboard_page(request: web.Request) -> web.StreamResponse:
    """Charts drawn by herald-dashboard.js over tables of the same numbers."""
    user, _ = require_user(request)
    if not user.is_admin:
        raise NotFound()
    hours = _hours(request)
    data = await _stats(request, hours)
    # The tables' times, in UTC (the charts show the browser's local time).
    pattern = "%H:%M" if hours <= 24 else "%d %b %H:%M"
    labels = [datetime.fromtimestamp(t, UTC).strftime(pattern) for t in data["buckets"]]
    return await render(
        request,
        "dashboard_admin.html",
        stats=data,
        bucket_labels=labels,
        hours=hours,
        hours_choices=HOURS_CHOICES,
        percentiles=PERCENTILES,
    )
