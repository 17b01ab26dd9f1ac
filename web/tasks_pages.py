"""The task pages: ``/tasks`` (admins: the Background Tasks screen, with a "Mine" tab;
everyone else: My tasks) and ``/tasks/{id}`` (one task), plus the cancel and retry
forms that work without JavaScript (the page script sends them to the JSON API).

Both pages are first drawn from the DB, then kept live by herald-tasks.js from the
topic the page names (``admin.tasks`` for admins, ``user.{id}`` for others).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from herald.events import current_seq
from herald.models import TASK_TERMINAL, TaskStatus
from web.auth import require_user
from web.errors import BadRequest, NotFound
from web.keys import DB, REDIS, SETTINGS
from web.queries import parse_id
from web.render import local_path, render
from web.tasks_api import cancel_as, retry_as
from web.tasks_query import (
    FILTER_KEYS,
    TaskFilters,
    TaskPage,
    duration_text,
    known_kinds,
    parse_filters,
    pretty_json,
    task_detail,
    task_page,
    watch_topic,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


def _cursor(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    try:
        return parse_id(raw) if raw else None
    except NotFound:
        return None  # a mangled paging link: show the newest page rather than an error


# My tasks: one's own, without the steps of one's submissions (those are on each
# submission's page, and their events go to the submission's topic).
_MY_TASKS: Final = {"mine": "1", "steps": "0"}
_TERMINAL: Final = sorted(status.value for status in TASK_TERMINAL)


def _page_helpers(request: web.Request) -> dict[str, Any]:
    return {"terminal": _TERMINAL, "duration_text": duration_text, "back": request.path_qs}


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.StreamResponse:
    """Background Tasks (admins) or My tasks (everyone; admins' "Mine" tab)."""
    user, _ = require_user(request)
    settings = request.app[SETTINGS]
    mine = not user.is_admin or request.query.get("mine") == "1"
    query = _MY_TASKS if mine else dict(request.query)
    topic = watch_topic(user)
    seq = await current_seq(request.app[REDIS], topic)
    error = None
    async with request.app[DB]() as db:
        try:
            filters = await parse_filters(db, query, settings)
        except BadRequest as exc:
            # Shown again in the form as typed, beside the reason, with no rows.
            typed = {key: str(query.get(key, ""))[:200] for key in FILTER_KEYS}
            error, filters = exc.message, TaskFilters(raw=typed)
        page = TaskPage([], None, None)
        if error is None:
            page = await task_page(
                db,
                settings,
                user,
                filters,
                before=_cursor(request, "before"),
                after=_cursor(request, "after"),
            )
    first_page = not request.query.get("before") and not request.query.get("after")
    return await render(
        request,
        "tasks.html",
        status=400 if error else 200,
        mine=mine,
        filters=filters,
        form=filters.raw,
        error=error,
        owner_unknown=filters.owner_id == -1,
        page=page,
        first_page=first_page,
        topic=topic,
        seq=seq,
        statuses=[status.value for status in TaskStatus],
        kinds=known_kinds(),
        queues=sorted({kind.queue for kind in known_kinds()}),
        timezone=settings.timezone,
        **_page_helpers(request),
    )


@routes.get("/tasks/{tid}")
async def task_page_view(request: web.Request) -> web.StreamResponse:
    """One task: its state (live), parameters, result, traceback, timeline and output."""
    user, _ = require_user(request)
    task_id = parse_id(request.match_info["tid"])
    settings = request.app[SETTINGS]
    topic = watch_topic(user)
    seq = await current_seq(request.app[REDIS], topic)
    async with request.app[DB]() as db:
        task, detail = await task_detail(db, settings, user, task_id)
    return await render(
        request,
        "task.html",
        task=detail,
        params_json=pretty_json(detail["params"]),
        result_json=pretty_json(detail["result"]) if detail["result"] is not None else None,
        may_cancel=task.submission_id is None,  # admin or owner: whoever sees it
        may_retry=user.is_admin,
        topic=topic,
        seq=seq,
        **_page_helpers(request),
    )


def _back(form: Any, task_id: int) -> str:
    return local_path(str(form.get("next") or "")) or f"/tasks/{task_id}"


async def _form_action(request: web.Request, action: str) -> web.Response:
    user, _ = require_user(request)
    task_id = parse_id(request.match_info["tid"])
    form = await request.post()
    if action == "cancel":
        await cancel_as(request, user, task_id)
    else:
        await retry_as(request, user, task_id)
    return web.Response(status=303, headers={"Location": _back(form, task_id)})


@routes.post("/tasks/{tid}/cancel")
async def cancel_form(request: web.Request) -> web.Response:
    """The cancel button without JavaScript: cancel, then back to where it was pressed."""
    return await _form_action(request, "cancel")


@routes.post("/tasks/{tid}/retry")
async def retry_form(request: web.Request) -> web.Response:
    """The retry button without JavaScript (admins)."""
    return await _form_action(request, "retry")
