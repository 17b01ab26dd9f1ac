"""One load-client process of ``bench/live_sessions.py``: holds many browser-like
WAMP sessions and records when events reach them.

    python -m bench._wamp_load WORK.json   (started by bench/live_sessions.py)

A lean WAMP client, one per session: autobahn-python's full client costs too much
per session for thousands of them in one process. It speaks the protocol a page's
autobahn-js speaks, for real: a WebSocket with the ``wamp.2.json`` subprotocol and
an allowed Origin, HELLO with ``authmethods: ["ticket"]``, CHALLENGE, AUTHENTICATE
with the single-use ticket, WELCOME, then three SUBSCRIBEs (``user.{id}``,
``submission.{id}``, ``broadcast``) and their SUBSCRIBEDs; after that it answers
the router's WebSocket pings (aiohttp's autoping) and records each EVENT's arrival.

The work file names the router URL, the Origin, the join pace and each session's
(user id, submission id, ticket). The parent talks to this process by JSON lines:
progress and results on stdout, commands on stdin (``collect``, ``stats``, ``quit``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# WAMP message codes (WAMP spec, basic profile).
HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE = 1, 2, 3, 4, 5, 6
ERROR, SUBSCRIBE, SUBSCRIBED, EVENT = 8, 32, 33, 36

SUBPROTOCOL = "wamp.2.json"
REALM = "herald"
STEP_TIMEOUT = 60.0  # one handshake step under a loaded router: generous, then a failure
PROGRESS_EVERY = 1.0


class JoinFailed(Exception):
    """A session did not get to WELCOME + three SUBSCRIBEDs; the message is the reason."""


@dataclass
class Load:
    """Everything this process counts, reported to the parent."""

    welcomed: int = 0
    subscribed: int = 0  # SUBSCRIBED messages, three per held session
    held: int = 0  # sessions with all three subscriptions, still open
    finished: int = 0  # joins that ended, held or failed
    failures: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)  # held sessions lost later
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    join_seconds: list[float] = field(default_factory=list)  # connect to third SUBSCRIBED
    first_join: float | None = None
    last_join: float | None = None
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)

    def arrived(self, key: str, at: float) -> None:
        times = self.arrivals.setdefault(key, [])
        times.append(at)
        waiter = self.waiters.get(key)
        if waiter is not None and len(times) >= self.held:
            waiter.set()


def _event_key(message: list[Any]) -> str | None:
    # EVENT [36, subscription, publication, details, args, kwargs]: args[0] is Herald's
    # envelope, whose data carries the key the parent stamped.
    args = message[4] if len(message) > 4 else None
    if not args or not isinstance(args[0], dict):
        return None
    data = args[0].get("data")
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


async def _receive(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> list[Any]:  # noqa: ASYNC109 - a per-step deadline
    msg = await ws.receive(timeout=timeout)
    if msg.type is not aiohttp.WSMsgType.TEXT:
        raise JoinFailed(f"websocket {msg.type.name.lower()} during join")
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def _join(ws: aiohttp.ClientWebSocketResponse, spec: list[Any], load: Load) -> None:
    user_id, submission_id, ticket = spec
    # authid as the page sends it (the grant's); the authenticator decides anyway.
    await ws.send_str(
        json.dumps(
            [
                HELLO,
                REALM,
                {"roles": {"subscriber": {}}, "authmethods": ["ticket"], "authid": str(user_id)},
            ]
        )
    )
    message = await _receive(ws, STEP_TIMEOUT)
    if message[0] == ABORT:
        raise JoinFailed(f"abort: {message[2]}")
    if message[0] != CHALLENGE or message[1] != "ticket":
        raise JoinFailed(f"unexpected message {message[0]} instead of CHALLENGE")
    await ws.send_str(json.dumps([AUTHENTICATE, ticket, {}]))
    message = await _receive(ws, STEP_TIMEOUT)
    if message[0] == ABORT:
        raise JoinFailed(f"abort: {message[2]}")
    if message[0] != WELCOME:
        raise JoinFailed(f"unexpected message {message[0]} instead of WELCOME")
    load.welcomed += 1
    # Sent back to back, as a page's subscribe calls go out.
    topics = (f"user.{user_id}", f"submission.{submission_id}", "broadcast")
    for request, topic in enumerate(topics, start=1):
        await ws.send_str(json.dumps([SUBSCRIBE, request, {}, topic]))
    pending = set(range(1, len(topics) + 1))
    while pending:
        message = await _receive(ws, STEP_TIMEOUT)
        if message[0] == SUBSCRIBED and message[1] in pending:
            pending.discard(message[1])
            load.subscribed += 1
        elif message[0] == ERROR:
            raise JoinFailed(f"subscribe refused: {message[4]}")
        elif message[0] == GOODBYE:
            raise JoinFailed(f"goodbye during subscribe: {message[2]}")
        # Anything else (an EVENT racing a SUBSCRIBED) is fine to skip while joining.


async def _hold(
    http: aiohttp.ClientSession, url: str, origin: str, spec: list[Any], load: Load
) -> None:
    began = time.perf_counter()
    try:
        ws = await http.ws_connect(
            url,
            protocols=(SUBPROTOCOL,),
            origin=origin,  # a page on the web port: one of allowed_origins
            autoping=True,  # answer the router's pings, or it drops us
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            max_msg_size=0,
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        load.failures[f"connect: {type(exc).__name__}: {str(exc)[:80]}"] += 1
        load.finished += 1
        return
    try:
        if ws.protocol != SUBPROTOCOL:
            raise JoinFailed(f"subprotocol {ws.protocol!r} not agreed")
        await _join(ws, spec, load)
    except JoinFailed as exc:
        load.failures[str(exc)[:120]] += 1
        load.finished += 1
        await ws.close()
        return
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        load.failures[f"join: {type(exc).__name__}"] += 1
        load.finished += 1
        await ws.close()
        return
    load.join_seconds.append(time.perf_counter() - began)
    now = time.time()
    load.first_join = load.first_join or now
    load.last_join = now
    load.held += 1
    load.finished += 1
    try:
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                if message[0] == EVENT:
                    key = _event_key(message)
                    if key is not None:
                        load.arrived(key, time.time())
                elif message[0] == GOODBYE:
                    load.closed[f"goodbye: {message[2]}"] += 1
                    await ws.send_str(json.dumps([GOODBYE, {}, "wamp.close.goodbye_and_out"]))
                    break
            else:
                if (
                    msg.type is not aiohttp.WSMsgType.CLOSE
                    and msg.type is not aiohttp.WSMsgType.CLOSED
                ):
                    load.closed[f"websocket {msg.type.name.lower()}"] += 1
                else:
                    load.closed[f"websocket closed {ws.close_code}"] += 1
                break
    finally:
        load.held -= 1
        await ws.close()


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _progress(load: Load, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "welcomed": load.welcomed,
        "subscribed": load.subscribed,
        "held": load.held,
        "failures": dict(load.failures),
        "closed": dict(load.closed),
        "first_join": load.first_join,
        "last_join": load.last_join,
        # Only in the final join report: the list is long.
        "join_seconds": load.join_seconds if kind == "joined" else [],
    }


async def _join_all(
    http: aiohttp.ClientSession, work: dict[str, Any], load: Load, tasks: set[asyncio.Task[None]]
) -> None:
    """Start one session every 1/rate seconds (paced, so joins never burst the router)."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / float(work["rate"])
    started = loop.time()
    next_progress = started + PROGRESS_EVERY
    for index, spec in enumerate(work["sessions"]):
        due = started + index * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing: the gap between joins is the point
        task = asyncio.create_task(_hold(http, work["url"], work["origin"], spec, load))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if loop.time() >= next_progress:
            _emit(_progress(load, "progress"))
            next_progress = loop.time() + PROGRESS_EVERY
    # Every join started: poll until each ended in a hold or a failure.
    while load.finished < len(work["sessions"]):
        await asyncio.sleep(0.05)
        if loop.time() >= next_progress:
            _emit(_progress(load, "progress"))
            next_progress = loop.time() + PROGRESS_EVERY
    _emit(_progress(load, "joined"))


async def _commands(load: Load) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "collect":
            # Until every held session has the event, or the deadline: then report.
            key = command["key"]
            waiter = load.waiters.setdefault(key, asyncio.Event())
            if len(load.arrivals.get(key, [])) >= load.held:
                waiter.set()
            try:
                async with asyncio.timeout(command["timeout"]):
                    await waiter.wait()
            except TimeoutError:
                pass
            _emit(
                {
                    "type": "arrivals",
                    "key": key,
                    "times": load.arrivals.pop(key, []),
                    "held": load.held,
                }
            )
            load.waiters.pop(key, None)
        elif command["cmd"] == "stats":
            _emit(_progress(load, "stats"))
        elif command["cmd"] == "quit":
            return


async def main(work_path: Path) -> None:
    work = json.loads(work_path.read_text())
    load = Load()
    tasks: set[asyncio.Task[None]] = set()
    # limit=0: every session holds its own connection for its whole life.
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        commands = asyncio.create_task(_commands(load))
        try:
            await _join_all(http, work, load, tasks)
            await commands
        finally:
            commands.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, commands, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
