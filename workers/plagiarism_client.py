"""Adapter for an external plagiarism service (``HERALD_PLAGIARISM_URL``).

Such services are slow (about 30 s a check), so a check is submitted once and then
polled. The protocol, which a service (or a proxy in front of one) speaks:

``POST {url}/checks`` with JSON ``{"reference", "filename", "text"}`` and the
header ``Idempotency-Key``
    201 (created) or 200 (that key was seen before) with ``{"id": "<external id>"}``.
    The same key always answers the same id, so a submit repeated after a crash
    creates no second check.
``GET {url}/checks/{id}``
    ``{"status": "pending", "progress": 0-100 (optional)}``,
    ``{"status": "done", "score": 0-100, "matches": [{"reference", "percent"}]}`` or
    ``{"status": "failed", "error": "<for a person>"}``.

Errors come in two kinds. :class:`ServiceUnavailable` (no connection, a 5xx, 408 or
429, an answer outside the protocol, no result before the deadline) may pass on a
retry: let it propagate and the task's retry policy runs. :class:`CheckRejected`
(any other 4xx, a check the service failed) will not: fail the step.

A step keeps the external id (``on_submitted`` is the moment to save it, e.g. in
the task's result) and passes it back as ``known_id`` on a retry, which then only
polls; if the id was lost before it was saved, the idempotency key still leads
the service back to the first check.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

__all__ = [
    "CheckRejected",
    "CheckTimedOut",
    "ExternalMatch",
    "ExternalReport",
    "PlagiarismClient",
    "PlagiarismError",
    "Progress",
    "ServiceUnavailable",
    "reference_for",
]

# Statuses that say "not now" rather than "never": worth a retry.
_RETRYABLE_STATUS = frozenset({408, 429})

Progress = Callable[[float, str], Awaitable[None]]


class PlagiarismError(Exception):
    """The external plagiarism check did not give a result."""


class ServiceUnavailable(PlagiarismError):
    """A failure a later attempt may not meet: retry per the task's policy."""


class CheckTimedOut(ServiceUnavailable):
    """The check was still pending at the deadline; it goes on at the service."""

    def __init__(self, message: str, external_id: str) -> None:
        super().__init__(message)
        self.external_id = external_id


class CheckRejected(PlagiarismError):
    """The service refused the check or failed it: retrying will not help."""


def reference_for(submission_id: int) -> str:
    """The stable key a submission is known by at the service."""
    return f"submission-{submission_id}"


@dataclass(frozen=True)
class ExternalMatch:
    reference: str
    percent: float


@dataclass(frozen=True)
class ExternalReport:
    external_id: str
    score: float
    matches: tuple[ExternalMatch, ...]

    def as_result(self) -> dict[str, Any]:
        """JSON-able, for a task's result."""
        return {
            "external_id": self.external_id,
            "score": self.score,
            "matches": [{"reference": m.reference, "percent": m.percent} for m in self.matches],
        }


def _percent(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceUnavailable(f"the plagiarism service sent a {what} that is not a number")
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ServiceUnavailable(f"the plagiarism service sent a {what} outside 0-100")
    return float(value)


def _report(external_id: str, body: dict[str, Any]) -> ExternalReport:
    matches = body.get("matches", [])
    if not isinstance(matches, list) or not all(
        isinstance(m, dict) and isinstance(m.get("reference"), str) for m in matches
    ):
        raise ServiceUnavailable("the plagiarism service sent matches outside the protocol")
    return ExternalReport(
        external_id=external_id,
        score=_percent(body.get("score"), "score"),
        matches=tuple(
            ExternalMatch(m["reference"], _percent(m.get("percent"), "match")) for m in matches
        ),
    )


class PlagiarismClient:
    """A client of one service; use ``async with`` (it opens and closes its HTTP
    session), or hand it a session the caller owns."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 15.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("the plagiarism service URL must be http:// or https://")
        self._base = base_url.rstrip("/")
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def __aenter__(self) -> PlagiarismClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            raise RuntimeError("PlagiarismClient is used outside 'async with'")
        url = f"{self._base}{path}"
        try:
            async with self._session.request(
                method, url, json=json, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ServiceUnavailable(f"the plagiarism service did not answer: {reason}") from exc
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise ServiceUnavailable(f"the plagiarism service answered {status} to {method} {path}")
        if status >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise CheckRejected(
                f"the plagiarism service refused {method} {path} ({status})"
                + (f": {message}" if isinstance(message, str) else "")
            )
        if not isinstance(body, dict):
            raise ServiceUnavailable(
                f"the plagiarism service sent no JSON object to {method} {path}"
            )
        return status, body

    async def submit(
        self, reference: str, filename: str, text: str, *, idempotency_key: str | None = None
    ) -> str:
        """Start a check of ``text``; returns its external id. Repeating it with the same
        key (by default the reference) answers the same id and starts nothing new."""
        _, body = await self._request(
            "POST",
            "/checks",
            json={"reference": reference, "filename": filename, "text": text},
            headers={"Idempotency-Key": idempotency_key or reference},
        )
        external_id = body.get("id")
        if (
            not isinstance(external_id, str | int)
            or isinstance(external_id, bool)
            or external_id == ""
        ):
            raise ServiceUnavailable("the plagiarism service sent no check id")
        return str(external_id)

    async def poll(self, external_id: str) -> ExternalReport | float | None:
        """One look at a check: its report when done, else its progress (None: unknown)."""
        _, body = await self._request("GET", f"/checks/{quote(external_id, safe='')}")
        status = body.get("status")
        if status == "done":
            return _report(external_id, body)
        if status == "failed":
            error = body.get("error")
            raise CheckRejected(
                "the plagiarism service could not check the text"
                + (f": {error}" if isinstance(error, str) else "")
            )
        if status != "pending":
            raise ServiceUnavailable(f"the plagiarism service sent an unknown status {status!r}")
        progress = body.get("progress")
        try:
            return _percent(progress, "progress") if progress is not None else None
        except ServiceUnavailable:
            return None  # progress is a nicety; a bad one does not end the wait

    async def wait_for_result(
        self,
        external_id: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
        poll_interval: float = 2.0,
        progress: Progress | None = None,
    ) -> ExternalReport:
        """Poll until the check is done. A poll that meets a passing failure (no
        connection, a 5xx) is tried again at the next interval until the deadline,
        which raises :class:`CheckTimedOut` (retryable; the check goes on)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        last_error: ServiceUnavailable | None = None
        while True:
            try:
                outcome = await self.poll(external_id)
            except ServiceUnavailable as exc:
                last_error, outcome = exc, None
            else:
                last_error = None
            if isinstance(outcome, ExternalReport):
                if progress is not None:
                    await progress(100.0, "the plagiarism service has finished")
                return outcome
            now = loop.time()
            if now >= deadline:
                message = f"the plagiarism service had no result after {timeout:g} s"
                if last_error is not None:
                    message += f" (last poll: {last_error})"
                raise CheckTimedOut(message, external_id)
            if progress is not None:
                elapsed = now - started
                # The service's own progress when it gives one; else time against the deadline.
                percent = outcome if outcome is not None else 100.0 * elapsed / timeout
                await progress(
                    min(percent, 99.0), f"checking at the plagiarism service ({elapsed:.0f} s)"
                )
            await asyncio.sleep(min(poll_interval, max(deadline - now, 0.0)))

    async def check(
        self,
        reference: str,
        filename: str,
        text: str,
        *,
        known_id: str | None = None,
        on_submitted: Callable[[str], Awaitable[None]] | None = None,
        timeout: float = 120.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
        poll_interval: float = 2.0,
        progress: Progress | None = None,
    ) -> ExternalReport:
        """Submit (unless ``known_id`` names the check already submitted) and wait.

        ``on_submitted`` receives the new external id before the wait begins, so the
        caller can save it for a retry to pass back as ``known_id``.
        """
        external_id = known_id
        if external_id is None:
            external_id = await self.submit(reference, filename, text)
            if on_submitted is not None:
                await on_submitted(external_id)
        return await self.wait_for_result(
            external_id, timeout=timeout, poll_interval=poll_interval, progress=progress
        )
