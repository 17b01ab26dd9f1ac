"""The authorizer's own cache of allow decisions, keyed by (authid, uri, action),
and of the active users those decisions are about.

Crossbar's cache cannot be used: its key leaves out the authid (CROSSBAR_NOTES.md).
Only allows are kept. A cached deny could go stale the other way (a student
enrolled a second ago, a submission just created) with nothing to announce it,
while every event that takes a right away is announced (herald.access_events) and
drops that user's entries here; the TTL bounds staleness if an announcement is
missed, and the size bound keeps a reconnect storm from growing it without end.

Users: a page joins and subscribes to three topics at once, and each decision
needs the user's ``is_active`` and ``is_admin``. Reading the user row for every one
of them was most of router auth's database work during a join burst; the
authenticator, which has just read it, leaves the row here and the subscribes that
follow use it. Only active users are kept, under the same TTL, and they are dropped
with the user's decisions (a disabled account, a demoted admin are announced). A deny
decided from a kept row is asked again of a fresh one (router.authorizer), so a right
granted since works at once, as with decisions.

Each invalidation moves :attr:`DecisionCache.epoch` on. A caller that read the DB
passes the epoch it saw before reading, and nothing is stored if an invalidation
came in between: the answer may predate the change that was announced.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from herald.models import User

__all__ = ["CacheStats", "DecisionCache"]

DEFAULT_TTL = 60.0
DEFAULT_MAX_ENTRIES = 100_000

Key = tuple[str, str, str]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class DecisionCache:
    """Bounded LRUs of allow decisions and of active users (detached rows, read only for
    their loaded columns), entries expiring ``ttl`` seconds after being stored."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ValueError("ttl and max_entries must be positive")
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[Key, float] = OrderedDict()
        self._by_authid: dict[str, set[Key]] = {}
        self._users: OrderedDict[str, tuple[float, User]] = OrderedDict()
        self.epoch = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._expiry)

    def allowed(self, authid: str, uri: str, action: str) -> bool:
        """Whether an unexpired allow for this key is cached (a miss means: ask the DB)."""
        key = (authid, uri, action)
        expires = self._expiry.get(key)
        if expires is None:
            self.stats.misses += 1
            return False
        if expires <= self._clock():
            self._remove(key)
            self.stats.misses += 1
            return False
        self._expiry.move_to_end(key)
        self.stats.hits += 1
        return True

    def remember_allow(
        self, authid: str, uri: str, action: str, *, epoch: int | None = None
    ) -> None:
        """Keep an allow; skipped if ``epoch`` (read before deciding) is no longer current."""
        if epoch is not None and epoch != self.epoch:
            return
        key = (authid, uri, action)
        self._expiry[key] = self._clock() + self._ttl
        self._expiry.move_to_end(key)
        self._by_authid.setdefault(authid, set()).add(key)
        while len(self._expiry) > self._max:
            oldest = next(iter(self._expiry))
            self._remove(oldest)

    def user(self, authid: str) -> User | None:
        """The active user stored for ``authid`` and not expired, else ``None`` (ask the DB)."""
        entry = self._users.get(authid)
        if entry is None:
            return None
        expires, user = entry
        if expires <= self._clock():
            del self._users[authid]
            return None
        self._users.move_to_end(authid)
        return user

    def remember_user(self, authid: str, user: User, *, epoch: int | None = None) -> None:
        """Keep an *active* user; skipped if ``epoch`` is no longer current."""
        if epoch is not None and epoch != self.epoch:
            return
        self._users[authid] = (self._clock() + self._ttl, user)
        self._users.move_to_end(authid)
        while len(self._users) > self._max:
            self._users.popitem(last=False)

    def forget_user(self, authid: str) -> int:
        """Drop every decision about ``authid``, and the user; returns how many decisions."""
        keys = self._by_authid.pop(authid, set())
        for key in keys:
            self._expiry.pop(key, None)
        self._users.pop(authid, None)
        self.epoch += 1
        self.stats.invalidations += 1
        return len(keys)

    def clear(self) -> None:
        """Drop everything: used when announcements may have been missed."""
        self._expiry.clear()
        self._by_authid.clear()
        self._users.clear()
        self.epoch += 1
        self.stats.invalidations += 1

    def _remove(self, key: Key) -> None:
        self._expiry.pop(key, None)
        keys = self._by_authid.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_authid[key[0]]
