"""Per-request context and logging, the trusted proxy's headers, and the security
headers on every response."""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from typing import Final
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from herald.logs import get_logger
from herald.settings import Settings

__all__ = [
    "content_security_policy",
    "forwarded_middleware",
    "request_context_middleware",
    "security_headers_middleware",
]

log = get_logger("web.request")

_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")
# Browsers that once saw https keep to it for a year.
HSTS: Final = "max-age=31536000"


def _last_hop(request: web.Request, header: str) -> str:
    # Our proxy appends to these headers: only its own entry, the last one, is
    # to be believed; earlier entries are whatever the client chose to send.
    values = ",".join(request.headers.getall(header, []))
    return values.rsplit(",", 1)[-1].strip()


def _forwarded_address(raw: str) -> str | None:
    if raw.startswith("["):  # "[2001:db8::1]:4711"
        raw = raw[1:].split("]", 1)[0]
    elif raw.count(":") == 1:  # "192.0.2.1:4711"
        raw = raw.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve the request as the client made it to the TLS-terminating proxy in front.

    Installed only with ``HERALD_TRUST_PROXY``: then ``request.secure`` (Secure
    cookies, HSTS) and ``request.remote`` (sign-in limits) come from the proxy's
    ``X-Forwarded-Proto`` and ``X-Forwarded-For``.
    """
    proto = _last_hop(request, "X-Forwarded-Proto").lower()
    if proto in ("http", "https"):
        request = request.clone(scheme=proto)
    remote = _forwarded_address(_last_hop(request, "X-Forwarded-For"))
    if remote is not None:
        request = request.clone(remote=remote)
    return await handler(request)


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id for every log line of this request; log one summary line."""
    # A proxy's request id is kept (if it looks sane) so logs join up across hops.
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=request_id, method=request.method, path=request.path
    )
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        if not request.path.startswith("/static/"):
            log.info(
                "request",
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """Only our own scripts, styles and images; WebSockets to the router nodes only."""
    routers = " ".join(dict.fromkeys(_origin(url) for url in settings.router_public_urls))
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {routers}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers_middleware(settings: Settings) -> Middleware:
    """Middleware adding CSP, nosniff, referrer and framing headers to every response,
    and HSTS to those served over https."""
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }

    @web.middleware
    async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(headers)
        if request.secure:
            response.headers["Strict-Transport-Security"] = HSTS
        if not request.path.startswith("/static/"):
            # Pages and API answers are per user: never stored by shared caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return security_headers
