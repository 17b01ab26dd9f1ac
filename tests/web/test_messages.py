"""A user's own messages over the API: listing, unread filter, expiry, and
acknowledging (announced live so other tabs take the flash down)."""

from __future__ import annotations

import json
from datetime import timedelta

from redis.asyncio import Redis

from herald.models import Message, MessageKind, utcnow
from herald.names import user_topic
from tests.web.conftest import Client, Demo, login


async def _add(demo: Demo, username: str, text: str, **fields: object) -> int:
    async with demo.sessions.begin() as db:
        message = Message(
            user_id=demo.users[username].id, kind=fields.pop("kind", MessageKind.FLASH), text=text
        )
        for name, value in fields.items():
            setattr(message, name, value)
        db.add(message)
        await db.flush()
        return message.id


async def test_own_unexpired_messages_newest_first(client: Client, demo: Demo) -> None:
    old = await _add(demo, "alice", "<b>processed</b>", kind=MessageKind.INBOX, link="/s/1")
    new = await _add(demo, "alice", "Grades are out", level="warning")
    await _add(demo, "alice", "expired", expires_at=utcnow() - timedelta(minutes=1))
    await _add(demo, "bob", "not yours")
    await login(client, "alice")
    body = await (await client.get("/api/messages")).json()
    assert [m["id"] for m in body] == [new, old]
    assert body[1] == {
        "id": old,
        "kind": "inbox",
        "key": f"message:{old}",  # unique across messages and broadcasts
        "level": "info",
        "text": "<b>processed</b>",  # JSON carries text; pages escape it
        "link": "/s/1",
        "options": {},
        "created_at": body[1]["created_at"],
        "expires_at": None,
        "acked_at": None,
        "ack_url": f"/api/messages/{old}/ack",
    }


async def test_ack_marks_seen_once_and_tells_the_other_tabs(
    client: Client, demo: Demo, redis: Redis
) -> None:
    flash = await _add(demo, "alice", "Your upload is in")
    csrf = await login(client, "alice")
    pubsub = redis.pubsub()
    await pubsub.subscribe(user_topic(demo.users["alice"].id))
    await pubsub.get_message(timeout=5)  # the subscription's confirmation
    headers = {"X-CSRF-Token": csrf, "X-Herald-Tab": "tab-1"}
    assert (await client.post(f"/api/messages/{flash}/ack", headers=headers)).status == 204
    event = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert event is not None
    envelope = json.loads(event["data"])
    # The acknowledging tab is named, so it keeps its copy while the others drop theirs.
    assert (envelope["type"], envelope["data"]) == ("message.acked", {"id": flash, "tab": "tab-1"})
    # Again: still 204, nothing announced twice.
    assert (await client.post(f"/api/messages/{flash}/ack", headers=headers)).status == 204
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    await pubsub.aclose()

    unread = await (await client.get("/api/messages?unread=1")).json()
    assert unread == []
    (seen,) = await (await client.get("/api/messages")).json()
    assert seen["acked_at"] is not None


async def test_ack_echoes_only_a_well_formed_tab_id(
    client: Client, demo: Demo, redis: Redis
) -> None:
    flash = await _add(demo, "alice", "Your upload is in")
    csrf = await login(client, "alice")
    pubsub = redis.pubsub()
    await pubsub.subscribe(user_topic(demo.users["alice"].id))
    await pubsub.get_message(timeout=5)
    headers = {"X-CSRF-Token": csrf, "X-Herald-Tab": "<script>" + "x" * 40}
    assert (await client.post(f"/api/messages/{flash}/ack", headers=headers)).status == 204
    event = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert event is not None
    assert json.loads(event["data"])["data"] == {"id": flash}
    await pubsub.aclose()


async def test_ack_of_someone_elses_or_unknown_message_is_404(client: Client, demo: Demo) -> None:
    bobs = await _add(demo, "bob", "for bob")
    csrf = await login(client, "alice")
    headers = {"X-CSRF-Token": csrf}
    for url in (f"/api/messages/{bobs}/ack", "/api/messages/999999/ack", "/api/messages/x/ack"):
        answer = await client.post(url, headers=headers)
        assert answer.status == 404, url
        assert (await answer.json())["error"] == "not_found"
    assert (await client.get("/api/messages")).status == 200


async def test_messages_need_a_login(client: Client) -> None:
    assert (await client.get("/api/messages")).status == 401


async def test_inbox_page_offers_a_messages_button_when_local(client: Client, demo: Demo) -> None:
    """A completion message's button (e.g. Download the output) shows in /messages; a
    button to another site is dropped."""
    button = {"label": "Download", "url": "/api/tasks/7/output"}
    await _add(
        demo, "alice", "Your report is ready", kind=MessageKind.INBOX, options={"button": button}
    )
    evil = {"label": "Win", "url": "//evil.example/x"}
    await _add(demo, "alice", "Click me", kind=MessageKind.INBOX, options={"button": evil})
    await login(client, "alice")
    page = await (await client.get("/messages")).text()
    assert '<a class="button" href="/api/tasks/7/output">Download</a>' in page
    assert "evil.example" not in page
