"""Web errors and their one translation point.

Handlers raise :class:`WebError` subclasses; :func:`error_middleware` turns them
into JSON ``{"error", "message"}`` for ``/api/*`` and an HTML error page
elsewhere. Anything unexpected is logged once with its traceback and answered
with a generic 500: no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from herald.logs import get_logger

__all__ = [
    "BadCredentials",
    "BadJson",
    "BadRequest",
    "CsrfFailed",
    "EmptyUpload",
    "Forbidden",
    "MissingFile",
    "NotFound",
    "TooLarge",
    "TooManyAttempts",
    "Unauthorized",
    "UnsupportedType",
    "WebError",
    "error_middleware",
    "is_api",
]

log = get_logger(__name__)


class WebError(Exception):
    """A request that cannot be served; carries the HTTP status and the wire code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error answer must carry besides the body."""
        return {}


class BadRequest(WebError):
    status, code = 400, "bad_request"
    default_message = "The request could not be understood."


class BadJson(BadRequest):
    code = "bad_json"
    default_message = "The request body is not the JSON object expected."


class EmptyUpload(BadRequest):
    code = "empty"
    default_message = "The file is empty."


class MissingFile(BadRequest):
    code = "missing_file"
    default_message = "Choose a file to upload."


class Unauthorized(WebError):
    status, code = 401, "unauthorized"
    default_message = "Please sign in."


class BadCredentials(Unauthorized):
    code = "bad_credentials"
    default_message = "Unknown username or wrong password."


class Forbidden(WebError):
    status, code = 403, "forbidden"
    default_message = "You are not allowed to do that."


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    default_message = "The form has expired or did not come from this site; reload and retry."


class NotFound(WebError):
    status, code = 404, "not_found"
    default_message = "There is nothing here."


class TooLarge(WebError):
    status, code = 413, "too_large"
    default_message = "The file is larger than the upload limit."


class UnsupportedType(WebError):
    status, code = 415, "unsupported_type"
    default_message = "That kind of file is not accepted: upload PDF, Word, text or an image."


class TooManyAttempts(WebError):
    status, code = 429, "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        minutes = -(-self.retry_after // 60)
        wait = f"{minutes} minutes" if minutes > 1 else "a minute"
        super().__init__(f"Too many failed sign-in attempts. Try again in {wait}.")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# aiohttp's own HTTP errors (unknown route, wrong method, body over
# client_max_size) mapped to our codes so /api/* always answers in one shape.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_type",
}


def is_api(request: web.Request) -> bool:
    """Whether the request is for the JSON API (errors answer in JSON)."""
    return request.path == "/api" or request.path.startswith("/api/")


# Headers of aiohttp's HTTP errors that belong in our answer too (405's Allow).
_KEPT_HEADERS = ("Allow",)


def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The error answer in the request's dialect: JSON for the API, HTML for pages."""
    if is_api(request):
        response = web.json_response({"error": code, "message": message}, status=status)
    else:
        # Imported here: render imports keys/auth helpers that import this module.
        from web.render import render_error

        response = render_error(request, status, message)
    response.headers.update(headers or {})
    return response


async def _login_redirect(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/"
    location = "/login?" + urlencode({"next": target}) if target != "/" else "/login"
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate errors at the edge; log unexpected ones once."""
    try:
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except Unauthorized as exc:
        if not is_api(request) and exc.code == "unauthorized":
            return await _login_redirect(request)
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)
    except WebError as exc:
        if exc.status >= 500:
            log.error("request.error", code=exc.code, exc_info=True)
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            # Redirects and the like: pass them on as plain responses so the
            # outer middlewares (security headers, logging) see them.
            return web.Response(status=exc.status, headers=exc.headers)
        code = _HTTP_CODES.get(exc.status, "http_error")
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return error_response(request, exc.status, code, exc.reason, kept)
    except Exception:
        log.exception("request.unhandled")
        return error_response(request, 500, "internal", WebError.default_message)
