"""The dynamic authorizer: may this browser session subscribe to this topic?

:func:`authorize` is the whole decision, a plain async function over the
database so it can be tested without Crossbar; :class:`Authorizer` wraps it as
the WAMP procedure Crossbar calls on every subscribe, publish, call and register
of a ``user``-role session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.access import can_view_assignment, can_view_course, can_view_submission
from herald.logs import get_logger
from herald.models import User
from herald.names import TopicFamily
from router.decision_cache import DecisionCache

__all__ = ["Authorizer", "Decision", "authorize", "load_active_user", "needs_db"]

log = get_logger(__name__)

# Procedures browsers may call: none. A page acts through the HTTP API (sessions,
# CSRF, rate limits, one set of access rules); WAMP only delivers events to it.
BROWSER_PROCEDURES: frozenset[str] = frozenset()
# A WAMP URI is short; anything longer is hostile and is refused before parsing.
MAX_URI_LENGTH = 200
_AUTHID_RE = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)


class Decision(TypedDict):
    allow: bool
    disclose: bool


async def load_active_user(db: AsyncSession, user_id: int) -> User | None:
    """The user with this id if it exists and is active."""
    user = await db.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return user


async def authorize(
    db: AsyncSession, user: User | None, uri: str, action: str, options: Mapping[str, Any]
) -> bool:
    """Whether a browser session of ``user`` may perform ``action`` on ``uri``.

    Browsers only ever subscribe, and only with exact matching: a prefix
    subscription to ``user.7`` would also receive ``user.70``. They never publish
    or register, and call only :data:`BROWSER_PROCEDURES` (none).
    """
    if user is None or not user.is_active:
        return False
    if action == "call":
        return uri in BROWSER_PROCEDURES
    if action != "subscribe" or options.get("match", "exact") != "exact":
        return False
    if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH:
        return False
    if uri == names.BROADCAST:
        return True
    if uri == names.ADMIN_TASKS:
        return bool(user.is_admin)
    parsed = names.parse_topic(uri)
    if parsed is None:
        return False
    family, ident = parsed
    if family is TopicFamily.USER:
        return ident == user.id
    if family is TopicFamily.SUBMISSION:
        return await can_view_submission(db, user, ident)
    if family is TopicFamily.ASSIGNMENT:
        return await can_view_assignment(db, user, ident)
    if family is TopicFamily.COURSE:
        return await can_view_course(db, user, ident)
    return False


def needs_db(uri: object, action: str, options: Mapping[str, Any]) -> bool:
    """Whether :func:`authorize` would read the database for this request, given the user.

    Only subscriptions to a submission, an assignment or a course do; everything
    else is decided from the user's own columns and the URI's shape.
    """
    if action != "subscribe" or options.get("match", "exact") != "exact":
        return False
    if not isinstance(uri, str) or len(uri) > MAX_URI_LENGTH:
        return False
    parsed = names.parse_topic(uri)
    return parsed is not None and parsed[0] is not TopicFamily.USER


class _NoDatabase:
    """Stands where :func:`authorize` takes a DB session when :func:`needs_db` said none
    is needed: any use of it is a bug, and fails closed (an error denies)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"authorize used the database ({name}) where needs_db said it would not")


_NO_DB: Any = _NoDatabase()


def _user_id(authid: object) -> int | None:
    # The authenticator sets authid to str(user.id); accept exactly that form.
    if isinstance(authid, str) and _AUTHID_RE.fullmatch(authid):
        user_id = int(authid)
        return user_id if user_id <= names.MAX_ROW_ID else None
    return None


class Authorizer:
    """The ``herald.auth.authorize`` procedure, with its own per-user decision cache."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, cache: DecisionCache | None = None
    ) -> None:
        self._sessions = sessions
        self.cache = cache if cache is not None else DecisionCache()

    async def __call__(
        self, session: Mapping[str, Any], uri: str, action: str, options: Mapping[str, Any]
    ) -> Decision:
        """Crossbar's ``authorize(session, uri, action, options)``.

        Crossbar is never told to cache the answer (its cache key leaves out the
        authid, CROSSBAR_NOTES.md); allows are cached here, keyed by authid.
        """
        authid = session.get("authid")
        bound = log.bind(authid=authid, uri=str(uri)[:MAX_URI_LENGTH], action=action)
        allowed = False
        try:
            allowed = await self._decide(session, uri, action, options or {})
        except Exception:
            # A DB outage must fail closed, and its details stay in our log.
            bound.exception("authorization failed with an error; denying")
            return Decision(allow=False, disclose=False)
        if not allowed:
            bound.info(
                "denied", authrole=session.get("authrole"), match=(options or {}).get("match")
            )
        # Never "cache": Crossbar's cache key leaves out the authid (CROSSBAR_NOTES.md).
        return Decision(allow=allowed, disclose=False)

    async def _decide(
        self, session: Mapping[str, Any], uri: str, action: str, options: Mapping[str, Any]
    ) -> bool:
        if session.get("authrole") != names.ROLE_BROWSER:
            return False
        user_id = _user_id(session.get("authid"))
        if user_id is None or not isinstance(uri, str):
            return False
        authid = str(user_id)  # the canonical form _user_id accepted
        # Only exact subscriptions are ever allowed, so only they can be cache hits.
        exact = options.get("match", "exact") == "exact"
        if exact and self.cache.allowed(authid, uri, action):
            return True
        epoch = self.cache.epoch  # before reading: an invalidation meanwhile stores nothing
        kept = self.cache.user(authid)
        if kept is not None:
            if needs_db(uri, action, options):
                async with self._sessions() as db:
                    allowed = await authorize(db, kept, uri, action, options)
            else:
                # The user's own topic, broadcast: no round trip at all.
                allowed = await authorize(_NO_DB, kept, uri, action, options)
            if allowed:
                self.cache.remember_allow(authid, uri, action, epoch=epoch)
                return True
            # A deny from the kept row is asked again of a fresh one: a right granted
            # since (making someone admin is not announced) must work at once, as an
            # uncached deny does. Denials are rare: pages ask for what they may see.
        async with self._sessions() as db:
            user = await load_active_user(db, user_id)
            if user is not None:
                self.cache.remember_user(authid, user, epoch=epoch)
            allowed = await authorize(db, user, uri, action, options)
        if allowed:
            self.cache.remember_allow(authid, uri, action, epoch=epoch)
        return allowed
