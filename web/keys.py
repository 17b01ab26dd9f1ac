"""Typed keys for what the web app keeps on the application and on each request."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.events import EventPublisher
from herald.models import User
from herald.sessions import SessionStore, WebSession
from herald.settings import Settings
from web.ratelimit import LoginLimiter
from workers.queue import RedisQueue

__all__ = [
    "CSRF_DEFERRED",
    "DB",
    "ENGINE",
    "LOGIN_LIMITER",
    "PUBLISHER",
    "QUEUE",
    "REDIS",
    "SESSION",
    "SESSIONS",
    "SETTINGS",
    "USER",
]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
ENGINE = web.AppKey("engine", AsyncEngine)
DB = web.AppKey("db", async_sessionmaker[AsyncSession])
SESSIONS = web.AppKey("sessions", SessionStore)
PUBLISHER = web.AppKey("publisher", EventPublisher)
QUEUE = web.AppKey("queue", RedisQueue)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)

# Set by the auth middleware on every request (None when signed out).
SESSION = web.RequestKey("session", WebSession)
USER = web.RequestKey("user", User)
# True when a multipart form's CSRF field is still to be checked by the handler
# that streams the body (the middleware cannot read it without consuming the upload).
CSRF_DEFERRED = web.RequestKey("csrf_deferred", bool)
