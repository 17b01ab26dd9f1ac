"""Signed delivery of a JSON record to the admin system's webhook (``HERALD_ADMIN_WEBHOOK_URL``).

Each POST carries:

- ``X-Herald-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 with
  ``HERALD_ADMIN_WEBHOOK_SECRET`` over ``"<t>." + body``. The timestamp is signed
  too, so a receiver can refuse a replayed request by its age
  (:func:`verify_signature` does both checks; integrators can copy it).
- ``Idempotency-Key``: a key stable across retries (``submission-420``); the
  receiver answers a repeat with the first delivery's result, not a second record.
- ``Content-Type: application/json`` and a ``User-Agent`` naming Herald.

Outcomes: a 2xx, or a 409 (already have it), is a :class:`Delivery`. 408, 429,
5xx, timeouts and connection errors raise :class:`WebhookUnavailable`, worth
retrying (``retry_after`` carries the receiver's ``Retry-After`` hint); any other
answer raises :class:`WebhookRejected`, which no retry will fix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from herald.logs import get_logger

__all__ = [
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "SIGNATURE_HEADER",
    "AdminWebhook",
    "Delivery",
    "WebhookError",
    "WebhookRejected",
    "WebhookUnavailable",
    "encode_record",
    "sign",
    "verify_signature",
]

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Herald-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# A receiver may mark a 2xx answer to a repeated key with this header set to "true".
REPLAYED_HEADER = "Idempotent-Replayed"
USER_AGENT = "Herald-Webhook/1 (+admin record sync)"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
# Enough for a JSON answer carrying an id; a larger body is not read.
MAX_RESPONSE_BYTES = 64 * 1024
RETRYABLE_STATUSES = frozenset({408, 429})


class WebhookError(Exception):
    """The admin system did not take the record; ``retryable`` says whether to try again."""

    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class WebhookUnavailable(WebhookError):
    """Down, overloaded, slow or unreachable: try again later (after ``retry_after`` if set)."""


class WebhookRejected(WebhookError):
    """The admin system refused the record (bad signature, bad request): retrying cannot help."""

    retryable = False


@dataclass(frozen=True)
class Delivery:
    """The admin system has the record: its HTTP status and, if it said, the record's id."""

    status: int
    record_id: str | None
    duplicate: bool  # an earlier delivery with the same idempotency key got there first


def encode_record(record: Mapping[str, Any]) -> bytes:
    """The body as sent: compact JSON with sorted keys, so a retry sends identical bytes."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``X-Herald-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},{SIGNATURE_VERSION}={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """For receivers: True when ``header`` signs exactly ``body`` with ``secret`` and its
    timestamp is within ``tolerance_s`` of ``now`` (default: the current time).

    Several ``v1=`` values are allowed (a sender mid-way through a key rotation signs
    with both keys); one match is enough. A malformed header is simply False.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == SIGNATURE_VERSION:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = _digest(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: either delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _record_id(data: bytes) -> str | None:
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("id"), str | int):
        return str(answer["id"])
    return None


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    data = bytearray()
    while len(data) < MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


class AdminWebhook:
    """Posts signed records to one webhook URL.

    Use as ``async with AdminWebhook(url, secret) as hook: await hook.deliver(...)``,
    which opens and closes its own HTTP session, or pass a ``session`` the caller
    owns (it is then left open). ``timeout`` bounds a whole request,
    ``connect_timeout`` the connection.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._secret = secret
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        # Only scheme and host are logged: a webhook URL may carry a token in its path.
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def __repr__(self) -> str:
        return f"AdminWebhook({self._where})"

    async def __aenter__(self) -> AdminWebhook:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this object opened it; safe to call twice."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def deliver(self, record: Mapping[str, Any], *, idempotency_key: str) -> Delivery:
        """POST ``record`` signed, under ``idempotency_key``; see the module doc for outcomes."""
        if self._session is None:
            raise RuntimeError("AdminWebhook.deliver needs `async with AdminWebhook(...)` first")
        body = encode_record(record)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: idempotency_key,
            SIGNATURE_HEADER: sign(self._secret, body, timestamp=int(time.time())),
        }
        bound = log.bind(webhook=self._where, idempotency_key=idempotency_key)
        began = time.monotonic()
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                data = await _read_capped(response)
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
                location = response.headers.get("Location", "?")
        except TimeoutError:
            bound.warning("webhook.timeout", seconds=self._timeout.total)
            raise WebhookUnavailable(
                f"the admin system did not answer within {self._timeout.total:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            bound.warning("webhook.unreachable", error=str(exc))
            raise WebhookUnavailable(f"cannot reach the admin system: {exc}") from exc
        ms = round((time.monotonic() - began) * 1000)
        if 200 <= status < 300 or status == 409:
            delivery = Delivery(status, _record_id(data), replayed or status == 409)
            bound.info(
                "webhook.delivered",
                status=status,
                record_id=delivery.record_id,
                duplicate=delivery.duplicate,
                ms=ms,
            )
            return delivery
        # The receiver's own words help whoever reads the failed task; they are short.
        said = data[:200].decode("utf-8", "replace").strip()
        if status in RETRYABLE_STATUSES or status >= 500:
            bound.warning("webhook.unavailable", status=status, retry_after=retry_after, ms=ms)
            raise WebhookUnavailable(
                f"the admin system answered {status}: {said}",
                status=status,
                retry_after=retry_after,
            )
        bound.warning("webhook.rejected", status=status, ms=ms)
        if 300 <= status < 400:
            said = f"redirected to {location}; set HERALD_ADMIN_WEBHOOK_URL to the final URL"
        raise WebhookRejected(
            f"the admin system refused the record ({status}): {said}", status=status
        )
