"""The receiving end of bench/event_latency.py: a browser-role WAMP client that joins
as a page does and stamps every event of the benchmark on arrival.

    python -m bench._event_subscriber --topic user.3   (HERALD_* settings in the env)

It reads its WAMP ticket from the first line of stdin (a ticket never goes on a
command line), joins over the browser WebSocket transport with WAMP-Ticket and the
page's Origin (``tests.wamp_client``'s session, as the end-to-end tests join), and
subscribes to ``--topic``, which the router's authorizer must allow. It decodes
with the C JSON decoder (see :func:`connect_page`).

Commands on stdin, answers on stdout (one JSON object a line):
``count LABEL`` → ``{"count": n}`` (measured events of that run received so far);
``dump LABEL PATH`` → writes ``{"received": [[i, from_due_ns, from_send_ns, seq], ...],
"duplicates": n}`` to PATH and answers ``{"ok": true}``; ``quit`` leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import txaio

# Before autobahn's serializer module is imported: it binds txaio's clock at import.
txaio.use_asyncio()

from autobahn.wamp.serializer import (  # noqa: E402
    JsonObjectSerializer,
    JsonSerializer,
    Serializer,
)

from herald.logs import configure_logging, get_logger  # noqa: E402
from herald.settings import Settings  # noqa: E402
from tests.wamp_client import BrowserSession, close_browser, connect_browser  # noqa: E402

log = get_logger(__name__)


def _wamp_binary(value: object) -> str:
    # WAMP-over-JSON's encoding of binary values; Herald sends none, but stays in spec.
    if isinstance(value, bytes):
        return "\x00" + base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_wamp_binary)
_DECODER = json.JSONDecoder()


class _CompactJsonObjectSerializer(JsonObjectSerializer):
    """WAMP's JSON with the standard library's C encoder and decoder, built once.

    autobahn's own JSON serializer decodes every message with the pure-Python
    scanner (so it can turn ``"\\x00…"`` strings back into bytes); in the measuring
    client that made the client, not the path measured, the bottleneck at 1,000
    events/s. A page decodes with the browser's native ``JSON.parse``; this is the
    closest Python has. Events carry no binary, so a ``"\\x00…"`` string stays a string.
    """

    def serialize(self, obj: Any) -> bytes:
        return _ENCODER.encode(obj).encode("utf-8")

    def unserialize(self, payload: bytes) -> list[Any]:
        return [_DECODER.decode(payload.decode("utf-8"))]


class CompactJsonSerializer(JsonSerializer):
    """:class:`autobahn.wamp.serializer.JsonSerializer` (same wire format and ids) on
    :class:`_CompactJsonObjectSerializer`."""

    def __init__(self) -> None:
        Serializer.__init__(self, _CompactJsonObjectSerializer())


class Stamps:
    """Arrival stamps per run label; warm-up events are counted apart and not kept."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
        self.seen: dict[str, set[int]] = defaultdict(set)
        self.duplicates: dict[str, int] = defaultdict(int)
        self.warm: dict[str, int] = defaultdict(int)
        self.foreign = 0

    def on_event(self, envelope: Any, *_args: Any, **_kwargs: Any) -> None:
        now = time.time_ns()
        try:
            stamp = envelope["data"]["bench"]
            label, index = stamp["run"], stamp["i"]
        except (KeyError, TypeError):
            self.foreign += 1
            return
        if stamp["warm"]:
            self.warm[label] += 1
            return
        if index in self.seen[label]:
            self.duplicates[label] += 1
            return
        self.seen[label].add(index)
        self.received[label].append(
            (index, now - stamp["due"], now - stamp["sent"], envelope["seq"])
        )


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def connect_page(settings: Settings, ticket: str) -> BrowserSession:
    """Join as ``tests.wamp_client.connect_browser`` does (WebSocket, WAMP-Ticket, the
    page's Origin), decoding with the C JSON decoder: a page decodes with the
    browser's native JSON.parse, while autobahn's default decoder runs the pure-Python
    scanner (~0.1 ms a message here), which would pad both paths alike and make this
    client the bottleneck at 1,000 events/s. The bytes on the wire are the same."""
    return await connect_browser(settings, ticket, serializer=CompactJsonSerializer())


async def serve(topic: str, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    ticket = (await stdin.readline()).decode().strip()
    session = await connect_page(settings, ticket)
    stamps = Stamps()
    await session.subscribe(stamps.on_event, topic)
    log.info("subscribed", topic=topic)
    _say({"ready": True})
    try:
        while line := (await stdin.readline()).decode().strip():
            command, *rest = line.split(" ", 2)
            if command == "count":
                _say({"count": len(stamps.received[rest[0]])})
            elif command == "dump":
                label, path = rest
                body = {
                    "received": stamps.received.pop(label, []),
                    "duplicates": stamps.duplicates.pop(label, 0),
                    "warm": stamps.warm.pop(label, 0),
                }
                await asyncio.to_thread(Path(path).write_text, json.dumps(body), "utf-8")
                stamps.seen.pop(label, None)
                _say({"ok": True})
            elif command == "quit":
                break
            else:
                _say({"error": f"unknown command {command!r}"})
    finally:
        if stamps.foreign:
            log.warning("events without benchmark stamps", count=stamps.foreign)
        await close_browser(session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(settings, "bench-subscriber")
    asyncio.run(serve(args.topic, settings))


if __name__ == "__main__":
    main()
