"""The event envelope and its publisher.

Every event on every topic is
``{"topic", "type", "seq", "ts", "data"}``. ``seq`` rises by one per topic; the
counter is incremented and the event published in one Lua script, so Redis
delivers a topic's events in ``seq`` order however many processes publish.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any, TypedDict

from redis.asyncio import Redis

from herald import names
from herald.metrics import event_field

__all__ = ["Envelope", "EventPublisher", "current_seq", "iso", "iso_now", "parse_envelope"]


class Envelope(TypedDict):
    topic: str
    type: str
    seq: int
    ts: str
    data: dict[str, Any]


def iso(value: datetime | None) -> str | None:
    """``2026-11-22T10:00:00.123Z``: the one timestamp format on the wire."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_now() -> str:
    """UTC now, in the wire format of :func:`iso`."""
    # Already UTC: no astimezone, and the "+00:00" suffix is cut rather than replaced.
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


# KEYS[1] seq counter, KEYS[2] events counters (herald.metrics); ARGV[1] channel,
# ARGV[2] JSON before the seq, ARGV[3] after it, ARGV[4] the event's counter field.
_PUBLISH_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. seq .. ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
return seq
"""


# One encoder for every event: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)
# Distinct (topic, type) pairs a process publishes on; a miss costs a few microseconds.
FRAMING_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=FRAMING_CACHE_SIZE)
def _framing(topic: str, type_: str) -> tuple[str, str, str]:
    """What an event's (topic, type) fixes: its seq key, the JSON before its seq, and
    its events counter field."""
    head = _COMPACT.encode({"topic": topic, "type": type_})[:-1]
    return names.seq_key(topic), f'{head},"seq":', event_field(topic, type_)


class EventPublisher:
    """Publishes envelopes to the Redis channel named like the topic."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_PUBLISH_LUA)

    async def publish(self, topic: str, type_: str, data: dict[str, Any]) -> int:
        """Publish one event; returns its ``seq``."""
        seq_key, before, field = _framing(topic, str(type_))
        tail = _COMPACT.encode({"ts": iso_now(), "data": data})
        seq = await self._script(
            keys=[seq_key, names.METRICS_EVENTS_KEY],
            args=[topic, before, f",{tail[1:]}", field],
        )
        return int(seq)


async def current_seq(redis: Redis, topic: str) -> int:
    """The last ``seq`` published on a topic (0 if none).

    Read it *before* reading state from the database: every event up to this
    seq was published after its DB commit, so the state read afterwards already
    includes it, and the client applies only events with a higher seq.
    """
    raw = await redis.get(names.seq_key(topic))
    return int(raw) if raw is not None else 0


class EnvelopeError(ValueError):
    """A message on a Herald channel is not a valid envelope."""


_ENVELOPE_FIELDS = (("topic", str), ("type", str), ("seq", int), ("ts", str), ("data", dict))


def parse_envelope(raw: bytes | str) -> Envelope:
    """Decode and check an envelope from Redis; raise :class:`EnvelopeError` if malformed.

    The result is a new dict holding only the envelope's fields, whatever else came.
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EnvelopeError("not an object")
    for key, kind in _ENVELOPE_FIELDS:
        if not isinstance(value.get(key), kind):
            raise EnvelopeError(f"field {key!r} missing or not {kind.__name__}")
    return Envelope(
        topic=value["topic"],
        type=value["type"],
        seq=value["seq"],
        ts=value["ts"],
        data=value["data"],
    )
