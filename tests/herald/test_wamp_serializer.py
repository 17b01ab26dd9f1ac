"""The backend link's JSON serializer speaks exactly autobahn's WAMP-over-JSON."""

from __future__ import annotations

import txaio

# Before autobahn's serializer module is imported: it binds txaio's clock at import,
# and a running component has chosen asyncio by then.
txaio.use_asyncio()

from autobahn.wamp import message  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer  # noqa: E402

from herald.wamp import CompactJsonSerializer  # noqa: E402

ENVELOPE = {
    "topic": "submission.42",
    "type": "step.progress",
    "seq": 17,
    "ts": "2026-11-22T10:00:00.123Z",
    "data": {"detail": 'Prüfung ✓ "quoted" \\ </script>', "progress": 40, "ok": True, "x": None},
}


def _messages() -> list[message.Message]:
    return [
        message.Publish(1, "submission.42", args=[ENVELOPE]),
        message.Event(7, 9, args=[ENVELOPE]),
        message.Call(3, "herald.auth.authorize", args=[{"session": 1}, "user.7", "subscribe", {}]),
        message.Yield(3, args=[{"allow": True, "disclose": False}]),
    ]


def test_same_bytes_as_autobahn() -> None:
    """Every message serializes to the bytes autobahn's JsonSerializer produces."""
    ours, theirs = CompactJsonSerializer(), JsonSerializer()
    for msg in _messages():
        assert ours.serialize(msg)[0] == theirs.serialize(msg)[0], msg


def test_reads_what_autobahn_writes() -> None:
    """Messages autobahn serialized come back equal, with the same ids on the wire."""
    ours, theirs = CompactJsonSerializer(), JsonSerializer()
    assert ours.SERIALIZER_ID == theirs.SERIALIZER_ID
    assert ours.RAWSOCKET_SERIALIZER_ID == theirs.RAWSOCKET_SERIALIZER_ID
    for msg in _messages():
        payload, _binary = theirs.serialize(msg)
        (back,) = ours.unserialize(payload, False)
        assert back.marshal() == msg.marshal()


def test_binary_values_use_wamp_encoding() -> None:
    """A bytes value is sent as WAMP's "\\x00"-prefixed base64, as autobahn sends it."""
    msg = message.Publish(1, "submission.42", args=[{"blob": b"\x01\x02"}])
    assert CompactJsonSerializer().serialize(msg)[0] == JsonSerializer().serialize(msg)[0]
