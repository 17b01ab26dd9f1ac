"""The tasks JSON API: list and read tasks, submit one, retry or cancel one, and
download a task's output.

Admins see and act on every task; everyone else on their own (cancel, download),
and a task they may not see is a 404 whether or not it exists. Retry is for admins.
Reading is :mod:`web.tasks_query`; acting is :mod:`workers.control`, whose
refusals (a finished task cannot be cancelled) become 409 with their message.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from aiohttp import web

from herald.db import Transactions
from herald.events import current_seq
from herald.logs import get_logger
from herald.models import Task, User
from herald.names import user_topic
from web.auth import require_user
from web.errors import BadJson, BadRequest, Forbidden, NotFound, WebError
from web.json_body import read_json_object
from web.keys import DB, ENGINE, PUBLISHER, QUEUE, REDIS, SETTINGS
from web.queries import parse_id
from web.tasks_query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    parse_filters,
    parse_ids,
    task_detail,
    task_page,
    tasks_by_id,
    visible_task,
    watch_topic,
)
from workers.catalog import BadParams, CatalogError, NotAllowed, NotSubmittable, check_request
from workers.control import TaskControlError, TaskRequest, cancel_task, retry_task, submit_tasks
from workers.kinds import UnknownKind
from workers.outputs import output_file, output_info

__all__ = ["OutputGone", "TaskConflict", "cancel_as", "retry_as", "routes"]

routes = web.RouteTableDef()
log = get_logger(__name__)

MODES: Final = ("queued", "immediate")


class TaskConflict(WebError):
    """The task's state does not allow that (cancel a finished task, retry a running one)."""

    status, code = 409, "conflict"
    default_message = "The task's state does not allow that."


class OutputGone(WebError):
    status, code = 410, "gone"
    default_message = "This output has been deleted."


class _UnknownKind(BadRequest):
    code = "unknown_kind"


class _BadParams(BadRequest):
    code = "bad_params"


def _cursor(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_id(raw)
    except NotFound:
        raise BadRequest(f"{name} must be a task id.") from None


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "")
    if raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_LIMIT}.")
    return int(raw)


@routes.get("/api/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """A page of tasks, newest first: admins all, others their own; filtered by
    ``status kind queue owner from to mine steps``; ``before``/``after`` a task id
    (the answer's ``next``/``prev``), ``limit`` up to 200; or just ``ids=1,2,3``."""
    user, _ = require_user(request)
    settings = request.app[SETTINGS]
    topic = watch_topic(user)
    # Before the DB read: every event up to this seq is already in what is read.
    seq = await current_seq(request.app[REDIS], topic)
    async with request.app[DB]() as db:
        if "ids" in request.query:
            rows = await tasks_by_id(db, settings, user, parse_ids(request.query["ids"]))
            return web.json_response({"tasks": rows, "topic": topic, "seq": seq})
        filters = await parse_filters(db, request.query, settings)
        page = await task_page(
            db,
            settings,
            user,
            filters,
            before=_cursor(request, "before"),
            after=_cursor(request, "after"),
            limit=_limit(request),
        )
    return web.json_response(
        {"tasks": page.rows, "next": page.next, "prev": page.prev, "topic": topic, "seq": seq}
    )


@routes.get("/api/tasks/{tid}")
async def get_task(request: web.Request) -> web.Response:
    """One task with its parameters, result, traceback, audit trail and output."""
    user, _ = require_user(request)
    task_id = parse_id(request.match_info["tid"])
    topic = watch_topic(user)
    seq = await current_seq(request.app[REDIS], topic)
    async with request.app[DB]() as db:
        _, detail = await task_detail(db, request.app[SETTINGS], user, task_id)
    return web.json_response({**detail, "topic": topic, "seq": seq})


@routes.post("/api/tasks")
async def submit_task(request: web.Request) -> web.Response:
    """Submit a task of a kind the catalog lets this user run:
    ``{"kind", "params", "mode": "queued" | "immediate"}`` → 202 ``{"id", "topic"}``."""
    user, _ = require_user(request)
    body = await read_json_object(request)
    kind, mode = body.get("kind"), body.get("mode", "queued")
    if not isinstance(kind, str) or not kind:
        raise BadJson("kind must be the name of a task kind.")
    if mode not in MODES:
        raise BadJson('mode must be "queued" or "immediate".')
    async with request.app[DB]() as db:
        try:
            params = await check_request(
                db, user, kind, body.get("params"), settings=request.app[SETTINGS]
            )
        except CatalogError as exc:
            raise _catalog_error(exc) from None
    transactions = Transactions(request.app[ENGINE])
    try:
        (submitted,) = await submit_tasks(
            transactions,
            request.app[QUEUE],
            [TaskRequest(kind, params, owner_id=user.id, immediate=mode == "immediate")],
        )
    except UnknownKind:
        # In the catalog, but no worker code for it is installed here.
        raise _UnknownKind(f"Tasks of kind {kind!r} cannot be run here.") from None
    except TaskControlError as exc:
        raise BadJson(str(exc)) from None
    finally:
        transactions.close()
    log.info("task submitted", task_id=submitted.id, kind=kind, mode=mode, user_id=user.id)
    return web.json_response(
        {"id": submitted.id, "topic": user_topic(user.id), "url": f"/tasks/{submitted.id}"},
        status=202,
    )


def _catalog_error(exc: CatalogError) -> WebError:
    if isinstance(exc, NotSubmittable):
        return _UnknownKind(exc.message)
    if isinstance(exc, NotAllowed):
        return Forbidden(exc.message)
    if isinstance(exc, BadParams):
        return _BadParams(exc.message)
    return BadRequest(exc.message)


async def _task_for(request: web.Request, user: User, task_id: int) -> Task:
    async with request.app[DB]() as db:
        return visible_task(user, await db.get(Task, task_id))


async def cancel_as(request: web.Request, user: User, task_id: int) -> str:
    """Cancel as ``user`` (an admin, or the owner): ``cancelled``, or ``running`` when
    its worker has been told to stop. 404 / 409 as the API answers."""
    task = await _task_for(request, user, task_id)
    app = request.app
    try:
        status = await cancel_task(app[DB], app[QUEUE], app[PUBLISHER], task.id)
    except LookupError:
        raise NotFound("No such task.") from None
    except TaskControlError as exc:
        raise TaskConflict(str(exc)) from None
    log.info("task cancel", task_id=task.id, user_id=user.id, status=str(status))
    return str(status)


async def retry_as(request: web.Request, user: User, task_id: int) -> None:
    """Retry as ``user``: admins only (an owner is told so; others get a 404)."""
    task = await _task_for(request, user, task_id)
    if not user.is_admin:
        raise Forbidden("Only admins retry tasks.")
    app = request.app
    try:
        await retry_task(app[DB], app[QUEUE], app[PUBLISHER], task.id)
    except LookupError:
        raise NotFound("No such task.") from None
    except TaskControlError as exc:
        raise TaskConflict(str(exc)) from None
    log.info("task retry", task_id=task.id, user_id=user.id)


@routes.post("/api/tasks/{tid}/cancel")
async def cancel(request: web.Request) -> web.Response:
    """Cancel a waiting task (at once) or a running one (its worker stops it)."""
    user, _ = require_user(request)
    task_id = parse_id(request.match_info["tid"])
    status = await cancel_as(request, user, task_id)
    message = "Cancelled." if status == "cancelled" else "Its worker has been told to stop it."
    return web.json_response({"id": task_id, "status": status, "message": message}, status=202)


@routes.post("/api/tasks/{tid}/retry")
async def retry(request: web.Request) -> web.Response:
    """Put a failed or cancelled task back on its queue with a fresh set of attempts."""
    user, _ = require_user(request)
    task_id = parse_id(request.match_info["tid"])
    await retry_as(request, user, task_id)
    return web.json_response({"id": task_id, "status": "queued"}, status=202)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one (RFC 6266/5987)."""
    fallback = (
        "".join(
            ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in filename
        ).strip("._")
        or "output"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@routes.get("/api/tasks/{tid}/output")
async def download_output(request: web.Request) -> web.StreamResponse:
    """The task's output file (owner, admins) as an attachment; 410 once purged."""
    user, _ = require_user(request)
    task = await _task_for(request, user, parse_id(request.match_info["tid"]))
    settings = request.app[SETTINGS]
    info = output_info(settings, task)
    if info is None:
        raise NotFound("This task has no output.")
    path = output_file(settings, task)
    if path is None:
        when = str(info.get("purged_at") or "")[:10]
        days = info.get("retention_days") or settings.output_retention_days
        said = f"on {when} " if when else ""
        raise OutputGone(
            f"This output was deleted {said}(outputs are kept {days} days); "
            "run the task again for a new one."
        )
    return web.FileResponse(
        path,
        headers={
            "Content-Type": str(info["content_type"]),
            "Content-Disposition": content_disposition(str(info["filename"])),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )
