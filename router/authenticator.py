"""The dynamic ticket authenticator: turn a single-use WAMP ticket into a
browser session of the user it was issued to.

Every refusal reaches the client as the same generic error; the reason is
logged here only, and the ticket itself never is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from autobahn.wamp.exception import ApplicationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald import names
from herald.logs import get_logger
from herald.sessions import SessionStore
from router.authorizer import load_active_user
from router.decision_cache import DecisionCache

__all__ = ["AuthResult", "AuthenticationFailed", "Authenticator"]

log = get_logger(__name__)


class AuthResult(TypedDict):
    realm: str
    authid: str
    role: str
    extra: dict[str, Any]


class AuthenticationFailed(Exception):
    """A ticket was refused; ``reason`` is for the server log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _generic_error() -> ApplicationError:
    return ApplicationError(names.ERROR_AUTH_FAILED, "authentication failed")


class Authenticator:
    """The ``herald.auth.authenticate`` procedure."""

    def __init__(
        self,
        store: SessionStore,
        sessions: async_sessionmaker[AsyncSession],
        *,
        cache: DecisionCache | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        # The authorizer's cache: the user read here serves the subscribes that follow.
        self._cache = cache

    async def __call__(self, realm: str, authid: str, details: Mapping[str, Any]) -> AuthResult:
        """Crossbar's ``authenticate(realm, authid, details)`` for WAMP-Ticket."""
        bound = log.bind(claimed_authid=str(authid)[:64], session=(details or {}).get("session"))
        try:
            result = await self.check(realm, details or {})
        except AuthenticationFailed as exc:
            bound.info("authentication refused", reason=exc.reason)
            raise _generic_error() from None
        except Exception:
            # Redis or DB trouble: refuse, log once here, tell the client nothing more.
            bound.exception("authentication failed with an error")
            raise _generic_error() from None
        bound.info("authenticated", authid=result["authid"])
        return result

    async def check(self, realm: str, details: Mapping[str, Any]) -> AuthResult:
        """Redeem the ticket and load its user; raise AuthenticationFailed with the reason."""
        if realm != names.REALM:
            raise AuthenticationFailed("wrong realm")
        ticket = details.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise AuthenticationFailed("no ticket")
        wamp_session = details.get("session")
        if not isinstance(wamp_session, int) or isinstance(wamp_session, bool):
            # Without its id the session could not be killed at sign-out.
            raise AuthenticationFailed("no WAMP session id in the details")
        grant = await self._store.redeem_ticket(ticket)
        if grant is None:
            raise AuthenticationFailed("ticket unknown, expired, used, or its session ended")
        # Always read: joining is when a disabled account must be noticed.
        epoch = self._cache.epoch if self._cache is not None else 0
        async with self._sessions() as db:
            user = await load_active_user(db, grant.user_id)
        if user is None:
            raise AuthenticationFailed("user unknown or inactive")
        if self._cache is not None:
            self._cache.remember_user(str(user.id), user, epoch=epoch)
        if not await self._store.bind_wamp_session(grant.session_digest, wamp_session):
            raise AuthenticationFailed("web session ended while joining")
        return AuthResult(
            realm=names.REALM,
            authid=str(user.id),
            role=names.ROLE_BROWSER,
            extra={"user_id": user.id, "username": user.username},
        )
