"""Reading a JSON request body: the one place that says what a bad one is."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from web.errors import BadJson

__all__ = ["read_json_object"]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; :class:`BadJson` (400) if it is not valid JSON, not
    UTF-8, or not an object."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):  # json.JSONDecodeError is a ValueError
        raise BadJson() from None
    if not isinstance(body, dict):
        raise BadJson("The body must be a JSON object.")
    return body
