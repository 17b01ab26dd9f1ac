"""The event envelope on the wire: what EventPublisher puts on Redis, and parse_envelope."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from herald import names
from herald.events import EnvelopeError, EventPublisher, iso, iso_now, parse_envelope
from herald.metrics import read_events
from herald.names import EventType

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def _published(
    redis: Redis, channels: list[str], events: list[tuple[str, str, dict]]
) -> list[bytes]:
    """Publish ``events`` and return the raw messages a subscriber of ``channels`` got."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(*channels)
    try:
        publisher = EventPublisher(redis)
        for topic, type_, data in events:
            await publisher.publish(topic, type_, data)
        raw: list[bytes] = []
        async with asyncio.timeout(10):
            while len(raw) < len(events):
                # None for the subscribe confirmations, which come first.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    raw.append(message["data"])
        return raw
    finally:
        await pubsub.aclose()


async def test_envelope_is_compact_json_in_field_order(redis: Redis) -> None:
    """An event goes out as compact JSON {topic, type, seq, ts, data}, non-JSON values as str."""
    topic = names.user_topic(7)
    when = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    data = {"text": "Prüfung bestanden ✓", "at": when, "n": [1, 2]}
    (raw,) = await _published(redis, [topic], [(topic, EventType.FLASH, data)])
    envelope = json.loads(raw)
    assert list(envelope) == ["topic", "type", "seq", "ts", "data"]
    assert ISO_MS.fullmatch(envelope["ts"])
    expected = {
        "topic": topic,
        "type": "flash",
        "seq": 1,
        "ts": envelope["ts"],
        "data": {"text": "Prüfung bestanden ✓", "at": str(when), "n": [1, 2]},
    }
    assert envelope == expected
    assert raw == json.dumps(expected, separators=(",", ":")).encode()


async def test_seq_and_framing_follow_each_topic_and_type(redis: Redis) -> None:
    """Interleaved topics and types each keep their own name, type and seq (no framing mix-up)."""
    a, b = names.submission_topic(1), names.submission_topic(2)
    events = [
        (a, EventType.STEP_STARTED, {"i": 0}),
        (b, EventType.STEP_PROGRESS, {"i": 1}),
        (a, EventType.STEP_PROGRESS, {"i": 2}),
        (a, EventType.STEP_STARTED, {"i": 3}),
        (b, EventType.STEP_DONE, {"i": 4}),
    ]
    received = [parse_envelope(raw) for raw in await _published(redis, [a, b], events)]
    assert [(e["topic"], e["type"], e["seq"], e["data"]["i"]) for e in received] == [
        (a, "step.started", 1, 0),
        (b, "step.progress", 1, 1),
        (a, "step.progress", 2, 2),
        (a, "step.started", 3, 3),
        (b, "step.done", 2, 4),
    ]
    counts = await read_events(redis)
    assert counts[("submission", "step.started")] == 2
    assert counts[("submission", "step.progress")] == 2
    assert counts[("submission", "step.done")] == 1


def test_iso_now_is_the_wire_format_of_now() -> None:
    """iso_now gives what iso gives for the current UTC time: milliseconds and a Z."""
    before = datetime.now(UTC)
    now = iso_now()
    after = datetime.now(UTC)
    assert ISO_MS.fullmatch(now)
    assert iso(before - timedelta(milliseconds=1)) <= now <= iso(after)  # type: ignore[operator]


def test_parse_envelope_keeps_only_the_envelope_fields() -> None:
    """Extra keys are not relayed, and a bad field is named in the error."""
    raw = json.dumps(
        {"topic": "user.1", "type": "flash", "seq": 3, "ts": "x", "data": {}, "extra": 1}
    )
    assert parse_envelope(raw) == {
        "topic": "user.1",
        "type": "flash",
        "seq": 3,
        "ts": "x",
        "data": {},
    }
    with pytest.raises(EnvelopeError, match="'seq'"):
        parse_envelope(raw.replace('"seq": 3', '"seq": "3"'))
