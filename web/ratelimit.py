"""Sign-in rate limiting: failed attempts counted in Redis per username and per address.

Every copy of the web process shares the counters. Each counter is a fixed
window that starts at its first failure; once it reaches its limit, sign-in for
that username or from that address is refused (429) until the window ends, even
with the right password. A username that does not exist is counted exactly like
one that does, so the refusal reveals nothing about which accounts exist.

An attempt is counted *before* the password is checked, in the same script that
checks the limits, so parallel guesses cannot slip past the limit between check
and count; a successful sign-in then takes its provisional count back and
clears the username's counter.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Final

from redis.asyncio import Redis

from herald import names
from herald.settings import Settings
from web.errors import TooManyAttempts

__all__ = ["LoginLimiter", "address_bucket"]

# Anyone holding one IPv6 address usually holds the whole /64 around it.
_IPV6_PREFIX: Final = 64

_RESERVE_LUA: Final = """
local window = tonumber(ARGV[3])
local wait_ms = 0
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[i])
    if limit > 0 and tonumber(redis.call('GET', key) or '0') >= limit then
        local ttl = redis.call('PTTL', key)
        if ttl < 0 then
            redis.call('EXPIRE', key, window)
            ttl = window * 1000
        end
        if ttl > wait_ms then wait_ms = ttl end
    end
end
if wait_ms > 0 then return wait_ms end
for i, key in ipairs(KEYS) do
    if tonumber(ARGV[i]) > 0 and redis.call('INCR', key) == 1 then
        redis.call('EXPIRE', key, window)
    end
end
return 0
"""

_SUCCEEDED_LUA: Final = """
redis.call('DEL', KEYS[1])
if ARGV[1] == '1' and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
    redis.call('DECR', KEYS[2])
end
return 0
"""


def account_key(username: str) -> str:
    """The failure counter of a username (hashed: any string a client sends fits)."""
    digest = hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()
    return names.login_failures_key(f"account:{digest}")


def address_key(bucket: str) -> str:
    """The failure counter of a client address bucket (see :func:`address_bucket`)."""
    return names.login_failures_key(f"address:{bucket}")


def address_bucket(remote: str | None) -> str:
    """What a client address is counted as: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        # Not an IP (a unix socket): every such client shares one bucket.
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, _IPV6_PREFIX), strict=False))
    return str(address)


class LoginLimiter:
    """Check-and-count before a password check; forget the attempt after a success."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._succeeded = redis.register_script(_SUCCEEDED_LUA)
        self._limits = (settings.login_account_limit, settings.login_address_limit)
        self._window = settings.login_window_seconds

    async def attempt(self, username: str, remote: str | None) -> None:
        """Count one sign-in attempt; raise :class:`TooManyAttempts` if a limit is reached."""
        keys = [account_key(username), address_key(address_bucket(remote))]
        wait_ms = int(await self._reserve(keys=keys, args=[*self._limits, self._window]))
        if wait_ms > 0:
            raise TooManyAttempts(retry_after=-(-wait_ms // 1000))

    async def succeeded(self, username: str, remote: str | None) -> None:
        """The attempt was right: clear the username's failures, uncount the address's."""
        keys = [account_key(username), address_key(address_bucket(remote))]
        await self._succeeded(keys=keys, args=["1" if self._limits[1] > 0 else "0"])
