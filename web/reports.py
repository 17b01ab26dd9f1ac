"""The /reports page: the reports and exports a user may run (workers.catalog), each
with its form, "Run now" (immediate mode: at once, outside the queue's window and
cap, still recorded as a task) or "Queue"; either way the browser goes on to the
task's page, which shows its progress live and the download when it is done."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from herald.db import Transactions
from herald.logs import get_logger
from herald.models import User
from web.auth import require_user
from web.errors import BadRequest
from web.keys import DB, ENGINE, QUEUE, SETTINGS
from web.render import render
from workers.catalog import (
    CatalogError,
    NotSubmittable,
    UserKind,
    check_request,
    kinds_for,
    staff_assignments,
    user_kind,
)
from workers.control import TaskRequest, submit_tasks

__all__ = ["routes", "submit_user_task"]

routes = web.RouteTableDef()
log = get_logger(__name__)

# The groups of kinds this page offers (imports need an upload: /admin/import).
PAGE_GROUPS: Final = ("report", "export", "maintenance")
MODES: Final = ("immediate", "queued")
MAX_FIELD: Final = 200


async def submit_user_task(
    request: web.Request, user: User, kind: str, params: dict[str, Any], *, immediate: bool
) -> int:
    """Submit an already checked kind for ``user`` (its owner); returns the task id."""
    transactions = Transactions(request.app[ENGINE])
    try:
        (submitted,) = await submit_tasks(
            transactions,
            request.app[QUEUE],
            [TaskRequest(kind, params, owner_id=user.id, immediate=immediate)],
        )
    finally:
        transactions.close()
    log.info("user task submitted", kind=kind, task_id=submitted.id, immediate=immediate)
    return submitted.id


def _offered(user: User, has_assignments: bool) -> list[UserKind]:
    return [
        kind
        for kind in kinds_for(user)
        if kind.group in PAGE_GROUPS and (kind.audience != "staff" or has_assignments)
    ]


async def _page(
    request: web.Request,
    user: User,
    *,
    status: int = 200,
    error: str | None = None,
    chosen: dict[str, str] | None = None,
) -> web.Response:
    async with request.app[DB]() as db:
        assignments = await staff_assignments(db, user)
    return await render(
        request,
        "reports.html",
        status=status,
        kinds=_offered(user, bool(assignments)),
        assignments=assignments,
        error=error,
        chosen=chosen or {},
        retention_days=request.app[SETTINGS].output_retention_days,
    )


@routes.get("/reports")
async def reports_page(request: web.Request) -> web.StreamResponse:
    """What the user may run, with a form each."""
    user, _ = require_user(request)
    return await _page(request, user)


@routes.post("/reports")
async def run_report(request: web.Request) -> web.StreamResponse:
    """Check and submit one kind from its form, then go to the task's page."""
    user, _ = require_user(request)
    form = await request.post()
    kind = str(form.get("kind", ""))[:MAX_FIELD]
    mode = form.get("mode")
    if mode not in MODES:
        raise BadRequest("Choose “Run now” or “Queue”.")
    spec = user_kind(kind)
    params = {}
    if spec is not None:
        for param in spec.params:
            value = form.get(param.name)
            if isinstance(value, str) and value.strip():
                params[param.name] = value.strip()[:MAX_FIELD]
    chosen = {"kind": kind, **params}
    try:
        if spec is None or spec.group not in PAGE_GROUPS:
            raise NotSubmittable("That cannot be run from this page.")
        async with request.app[DB]() as db:
            cleaned = await check_request(db, user, kind, params, settings=request.app[SETTINGS])
    except CatalogError as exc:
        return await _page(request, user, status=exc.status, error=exc.message, chosen=chosen)
    task_id = await submit_user_task(request, user, kind, cleaned, immediate=mode == "immediate")
    return web.Response(status=303, headers={"Location": f"/tasks/{task_id}"})
