"""Who is asking: session cookie → user, sign-in and sign-out, and CSRF.

The cookie holds a random token; Redis keeps only its digest (herald.sessions).
Every sign-in issues a new token and ends the session the browser held before,
so a token planted before sign-in (session fixation) is worthless afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import secrets
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import select

from herald.logs import get_logger
from herald.models import User
from herald.passwords import hash_password, verify_password
from herald.sessions import WebSession
from web.errors import BadCredentials, CsrfFailed, TooManyAttempts, Unauthorized
from web.keys import CSRF_DEFERRED, DB, LOGIN_LIMITER, SESSION, SESSIONS, SETTINGS, USER
from web.ratelimit import address_bucket

__all__ = [
    "COOKIE_NAME",
    "auth_middleware",
    "authenticate",
    "check_csrf",
    "csrf_middleware",
    "current_session",
    "current_user",
    "end_session",
    "require_user",
    "set_session_cookie",
    "start_session",
]

log = get_logger(__name__)

COOKIE_NAME: Final = "herald_session"
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sign-in needs no CSRF token: there is no session yet to protect.
CSRF_EXEMPT: Final = frozenset({("POST", "/api/session"), ("POST", "/login")})
# Routes that stream a multipart body check the form's token themselves.
MULTIPART_CSRF_ROUTES: Final = frozenset({"api-upload", "page-upload", "page-bulk-users"})


# Verified against when the username is unknown, so that answer takes as long
# as a wrong password and does not reveal which usernames exist.
@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _verify_decoy(password: str) -> None:
    verify_password(_decoy_hash(), password)


def current_session(request: web.Request) -> WebSession | None:
    return request.get(SESSION)


def current_user(request: web.Request) -> User | None:
    """The signed-in user, or ``None``."""
    return request.get(USER)


def require_user(request: web.Request) -> tuple[User, WebSession]:
    """The signed-in user and session; raises :class:`Unauthorized` (401 / redirect)."""
    user, session = request.get(USER), request.get(SESSION)
    if user is None or session is None:
        raise Unauthorized()
    return user, session


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the session cookie to a user for the rest of the request."""
    token = request.cookies.get(COOKIE_NAME)
    if token and not request.path.startswith("/static/"):
        session = await request.app[SESSIONS].get(token)
        if session is not None:
            async with request.app[DB]() as db:
                user = await db.get(User, session.user_id)
            if user is not None and user.is_active:
                request[SESSION] = session
                request[USER] = user
    return await handler(request)


def check_csrf(request: web.Request, supplied: str | None) -> None:
    """Raise :class:`CsrfFailed` unless ``supplied`` is the session's CSRF token."""
    session = request.get(SESSION)
    if session is None:
        return
    if not supplied or not hmac.compare_digest(
        supplied.encode("utf-8", "replace"), session.csrf_token.encode()
    ):
        raise CsrfFailed()
    request[CSRF_DEFERRED] = False


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request made with a session cookie must prove it came from us."""
    request[CSRF_DEFERRED] = False
    if (request.method, request.path) in CSRF_EXEMPT:
        # Sign-in has no session to hold a token yet, but a foreign page must not sign
        # a victim into the attacker's account (login CSRF): browsers send Origin on
        # every cross-site POST, and it must be one of ours. Without one, it is not a browser.
        origin = request.headers.get("Origin")
        if origin is not None and origin not in request.app[SETTINGS].allowed_origins:
            raise CsrfFailed()
    elif request.method in UNSAFE_METHODS and request.get(SESSION) is not None:
        supplied = request.headers.get(CSRF_HEADER)
        if supplied is None and request.content_type == "application/x-www-form-urlencoded":
            value = (await request.post()).get(CSRF_FIELD)
            supplied = value if isinstance(value, str) else None
        route_name = request.match_info.route.name
        if (
            supplied is None
            and request.content_type == "multipart/form-data"
            and route_name in MULTIPART_CSRF_ROUTES
        ):
            request[CSRF_DEFERRED] = True
        else:
            check_csrf(request, supplied)
    return await handler(request)


async def authenticate(request: web.Request, username: str, password: str) -> User:
    """The active user with these credentials; :class:`BadCredentials` otherwise.

    :class:`TooManyAttempts` (429) before any password check once the username
    or the client's address has used up its failed attempts (web.ratelimit).
    """
    limiter = request.app[LOGIN_LIMITER]
    try:
        await limiter.attempt(username, request.remote)
    except TooManyAttempts:
        log.warning("login.rate_limited", address=address_bucket(request.remote))
        raise
    async with request.app[DB]() as db:
        user = await db.scalar(select(User).where(User.username == username))
    # argon2 costs 0.15-0.7 s of CPU here: off the event loop, or every sign-in of a
    # deadline rush stalls every upload in flight (bench/deadline_spike.py). argon2-cffi
    # releases the GIL while it hashes.
    if user is None or not user.is_active:
        await asyncio.to_thread(_verify_decoy, password)
        raise BadCredentials()
    if not await asyncio.to_thread(verify_password, user.password_hash, password):
        raise BadCredentials()
    await limiter.succeeded(username, request.remote)
    return user


async def start_session(request: web.Request, user: User) -> tuple[str, WebSession]:
    """Sign ``user`` in: end any session the browser held, create a fresh one.

    Returns the new cookie token and session; set the cookie with :func:`set_session_cookie`.
    """
    store = request.app[SESSIONS]
    old = request.get(SESSION)
    if old is None and (previous := request.cookies.get(COOKIE_NAME)):
        old = await store.get(previous)
    if old is not None:
        await store.end(old)
    token, session = await store.create(user.id)
    request[SESSION] = session
    request[USER] = user
    return token, session


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure over https, whole site.

    Behind a TLS-terminating proxy ``request.secure`` is true only with
    ``HERALD_TRUST_PROXY`` (web.middleware.forwarded_middleware).
    """
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=request.app[SETTINGS].session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Sign out: end the session in Redis and clear the cookie."""
    session = request.get(SESSION)
    if session is not None:
        await request.app[SESSIONS].end(session)
    response.del_cookie(COOKIE_NAME, path="/", samesite="Lax", secure=request.secure)
    request.pop(SESSION, None)
    request.pop(USER, None)
