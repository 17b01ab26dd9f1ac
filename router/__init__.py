"""Router auth: the WAMP procedures Crossbar calls to authenticate browsers
(WAMP-Ticket) and to authorize their subscriptions."""

from __future__ import annotations

from router.authenticator import Authenticator
from router.authorizer import Authorizer, authorize
from router.service import serve

__all__ = ["Authenticator", "Authorizer", "authorize", "serve"]
