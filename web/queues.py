"""The Queues screen (admins): each queue's depth, running jobs, settings and recent
failures, and its settings changed live (``GET /api/queues``,
``PATCH /api/queues/{name}``, ``/admin/queues`` with forms that work without JS).

A change is stored in the DB and mirrored to Redis (``workers.queue_settings``), so
every worker on every machine applies it at once; it is announced on
``admin.tasks`` so every open Queues screen refetches.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from herald.logs import get_logger
from herald.models import User
from herald.names import ADMIN_TASKS, EventType
from web.auth import require_user
from web.errors import BadRequest, Forbidden, NotFound
from web.json_body import read_json_object
from web.keys import DB, PUBLISHER, QUEUE, SETTINGS
from web.render import render
from workers.queue_overview import QueueView, known_queues, queue_views
from workers.queue_settings import MAX_ACTIVE_LIMIT, update_queue

__all__ = ["routes"]

routes = web.RouteTableDef()
log = get_logger(__name__)

FIELDS: Final = ("paused", "max_active", "window", "immediate")
# What a form or the API may write for "no window" besides null.
ALWAYS: Final = frozenset({"", "always"})


def _admin(request: web.Request, *, page: bool) -> User:
    user, _ = require_user(request)
    if not user.is_admin:
        # Pages do not disclose what a user may not see; the API says why.
        raise NotFound() if page else Forbidden("Only admins may see and change queues.")
    return user


def _changes(body: dict[str, Any]) -> dict[str, Any]:
    """The settings a PATCH body changes, type-checked (values by update_queue)."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(unknown)}; send {', '.join(FIELDS)}.")
    if not body:
        raise BadRequest(f"Nothing to change: send any of {', '.join(FIELDS)}.")
    changes: dict[str, Any] = {}
    for name in ("paused", "immediate"):
        if name in body:
            if not isinstance(body[name], bool):
                raise BadRequest(f"{name} must be true or false.")
            changes[name] = body[name]
    if "max_active" in body:
        value = body["max_active"]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequest(f"max_active must be a number from 1 to {MAX_ACTIVE_LIMIT}, or null.")
        changes["max_active"] = value
    if "window" in body:
        value = body["window"]
        if value is not None and not isinstance(value, str):
            raise BadRequest("window must be text such as 'Mon-Fri 18:00-08:00', or null.")
        changes["window"] = None if value is None or value.strip().lower() in ALWAYS else value
    return changes


def _form_changes(form: Any) -> dict[str, Any]:
    """The settings a form of the page changes: its pause button, or its settings."""
    changes: dict[str, Any] = {}
    if "paused" in form:
        changes["paused"] = str(form["paused"]) == "1"
    if "settings" in form:
        raw = str(form.get("max_active", "")).strip().lower()
        if raw in ("", "none"):
            changes["max_active"] = None
        elif raw.isdigit():
            changes["max_active"] = int(raw)
        else:
            raise BadRequest(f"The cap must be a number from 1 to {MAX_ACTIVE_LIMIT}, or empty.")
        window = str(form.get("window", "")).strip()
        changes["window"] = None if window.lower() in ALWAYS else window
        changes["immediate"] = str(form.get("immediate", "")) == "1"
    if not changes:
        raise BadRequest("Nothing to change.")
    return changes


async def _apply(request: web.Request, user: User, name: str, changes: dict[str, Any]) -> QueueView:
    """Store and mirror the change, announce it; the queue as it now is."""
    app = request.app
    queues, _ = await known_queues(app[DB], app[QUEUE])
    if name not in queues:
        raise NotFound(f"There is no queue named {name!r}.")
    try:
        config = await update_queue(app[DB], app[QUEUE], name, **changes)
    except ValueError as exc:  # a bad cap or window (WindowError is a ValueError)
        raise BadRequest(str(exc)) from None
    await app[PUBLISHER].publish(ADMIN_TASKS, EventType.QUEUE_CHANGED, {"queue": name})
    log.info(
        "queue.changed", queue=name, user_id=user.id, **{k: str(v) for k, v in changes.items()}
    )
    (view,) = await queue_views(app[DB], app[QUEUE], app[SETTINGS].timezone, only=config.name)
    return view


async def _views(request: web.Request) -> list[QueueView]:
    app = request.app
    return await queue_views(app[DB], app[QUEUE], app[SETTINGS].timezone)


@routes.get("/api/queues")
async def list_queues(request: web.Request) -> web.Response:
    """Every queue: waiting, delayed, running, settings, state, failures in the last hour."""
    _admin(request, page=False)
    return web.json_response({"queues": [view.as_json() for view in await _views(request)]})


@routes.patch("/api/queues/{name}")
async def patch_queue(request: web.Request) -> web.Response:
    """Change some of a queue's settings (``paused``, ``max_active``, ``window``,
    ``immediate``); applied at once on every worker. 400 with the reason if invalid."""
    user = _admin(request, page=False)
    body = await read_json_object(request)
    view = await _apply(request, user, request.match_info["name"], _changes(body))
    return web.json_response(view.as_json())


@routes.get("/admin/queues")
async def queues_page(request: web.Request) -> web.StreamResponse:
    """The Queues screen."""
    _admin(request, page=True)
    return await _page(request)


async def _page(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    return await render(
        request,
        "queues.html",
        status=status,
        queues=await _views(request),
        error=error,
        timezone=request.app[SETTINGS].timezone,
        max_active_limit=MAX_ACTIVE_LIMIT,
    )


@routes.post("/admin/queues/{name}")
async def queue_form(request: web.Request) -> web.StreamResponse:
    """The Queues screen's forms without JavaScript: back to the screen, or the screen
    again with the reason."""
    user = _admin(request, page=True)
    name = request.match_info["name"]
    try:
        await _apply(request, user, name, _form_changes(await request.post()))
    except BadRequest as exc:
        return await _page(request, status=400, error=f"{name}: {exc.message}")
    return web.Response(status=303, headers={"Location": f"/admin/queues#queue-{name}"})
