"""Broadcasts over HTTP: admins send them (API and /admin/broadcast), readers get them
in the messages API, on every page and in the /messages inbox, and acknowledge them
(announced so other tabs take them down)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import select

from herald.models import Assignment, Broadcast, BroadcastAck, Course, Message, MessageKind, utcnow
from herald.names import BROADCAST, course_topic, user_topic
from tests.web.conftest import Client, Demo, login


@pytest.fixture
async def course_id(demo: Demo) -> int:
    """DEMO101, where every demo account is enrolled."""
    async with demo.sessions() as db:
        found = await db.scalar(
            select(Assignment.course_id).where(Assignment.id == demo.assignment_id)
        )
    assert found is not None
    return found


@pytest.fixture
async def empty_course(demo: Demo) -> int:
    """A course nobody is enrolled in."""
    async with demo.sessions.begin() as db:
        course = Course(code="EMPTY1", title="Nobody here")
        db.add(course)
        await db.flush()
        return course.id


class Channels:
    """Redis channels a test listens to, as the bridge does."""

    def __init__(self, redis: Redis) -> None:
        self.pubsub: PubSub = redis.pubsub()

    async def listen(self, *channels: str) -> None:
        await self.pubsub.subscribe(*channels)
        for _ in channels:
            assert await self.pubsub.get_message(timeout=5) is not None  # confirmations

    async def next(self) -> dict[str, Any]:
        event = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert event is not None, "no event published"
        return dict(json.loads(event["data"]))

    async def quiet(self) -> bool:
        return await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None


@pytest.fixture
async def channels(redis: Redis) -> AsyncIterator[Channels]:
    listening = Channels(redis)
    yield listening
    await listening.pubsub.aclose()


async def _send(client: Client, csrf: str, **body: object) -> Any:
    return await client.post("/api/broadcasts", json=body, headers={"X-CSRF-Token": csrf})


async def _broadcast(client: Client, audience: str = "all", **body: object) -> int:
    """Ada broadcasts through the API; returns the id (the client stays signed in as ada)."""
    csrf = await login(client, "ada")
    response = await _send(client, csrf, text=body.pop("text", "Notice"), audience=audience, **body)
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


# --- sending --------------------------------------------------------------------------


async def test_admin_broadcast_is_stored_and_published_to_its_audience(
    client: Client, demo: Demo, course_id: int, channels: Channels
) -> None:
    """201 with the broadcast; a course's goes on course.{id}, everyone's on `broadcast`."""
    await channels.listen(BROADCAST, course_topic(course_id))
    csrf = await login(client, "ada")
    response = await _send(
        client,
        csrf,
        text="  Lab moved to room 2  ",
        audience=f"course:{course_id}",
        level="warning",
        link="/assignments/1",
        expires_at=(utcnow() + timedelta(hours=3)).isoformat(),
    )
    assert response.status == 201
    sent = await response.json()
    assert sent["text"] == "Lab moved to room 2"
    assert (sent["level"], sent["audience"], sent["link"]) == (
        "warning",
        f"course:{course_id}",
        "/assignments/1",
    )
    event = await channels.next()
    assert (event["topic"], event["type"], event["data"]) == (
        course_topic(course_id),
        "broadcast",
        sent,
    )

    response = await _send(client, csrf, text="Everyone: fire drill", audience="all")
    assert response.status == 201
    event = await channels.next()
    assert (event["topic"], event["data"]["text"]) == (BROADCAST, "Everyone: fire drill")
    assert event["data"]["level"] == "info"  # the default
    async with demo.sessions() as db:
        rows = (await db.scalars(select(Broadcast).order_by(Broadcast.id))).all()
    assert [(row.course_id, row.created_by) for row in rows] == [
        (course_id, demo.users["ada"].id),
        (None, demo.users["ada"].id),
    ]


async def test_only_admins_broadcast(client: Client, demo: Demo, channels: Channels) -> None:
    """A student or marker gets 403 and nothing is sent; signed out is 401."""
    await channels.listen(BROADCAST)
    for username in ("alice", "mark"):
        csrf = await login(client, username)
        response = await _send(client, csrf, text="I am admin now", audience="all")
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"
    assert await channels.quiet()
    await client.post("/logout", data={"csrf_token": await login(client, "alice")})
    assert (await client.post("/api/broadcasts", json={"text": "x"})).status == 401


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"audience": "all"}, "text must be 1 to 2000"),
        ({"text": "", "audience": "all"}, "text must be 1 to 2000"),
        ({"text": "x" * 2001, "audience": "all"}, "text must be 1 to 2000"),
        ({"text": "hi"}, "audience must be"),
        ({"text": "hi", "audience": "course:abc"}, "audience must be"),
        ({"text": "hi", "audience": "all", "level": "panic"}, "level must be one of"),
        ({"text": "hi", "audience": "all", "link": "https://evil.test"}, "path on this site"),
        ({"text": "hi", "audience": "all", "link": "javascript:alert(1)"}, "path on this site"),
        ({"text": "hi", "audience": "all", "expires_at": "soon"}, "ISO 8601"),
        ({"text": "hi", "audience": "all", "expires_at": 12}, "ISO 8601"),
        ({"text": "hi", "audience": "all", "expires_at": "2030-01-01T00:00:00"}, "zone"),
        ({"text": "hi", "audience": "all", "expires_at": "2020-01-01T00:00:00Z"}, "future"),
        ({"text": "hi", "audience": "all", "expires_at": "2099-01-01T00:00:00Z"}, "30 days"),
        ({"text": "hi", "audience": "all", "expires_in_hours": 3}, "Unknown field"),
    ],
)
async def test_bad_fields_are_400_with_a_reason(
    client: Client, demo: Demo, body: dict[str, object], says: str
) -> None:
    """Each bad field is refused with 400 and a message saying what is wrong."""
    csrf = await login(client, "ada")
    response = await _send(client, csrf, **body)
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "bad_json"
    assert says in answer["message"]


async def test_bad_json_is_400(client: Client, demo: Demo) -> None:
    """A body that is not a JSON object is refused with 400."""
    csrf = await login(client, "ada")
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for data in (b"{not json", b'["text"]', b"\xff"):
        response = await client.post("/api/broadcasts", data=data, headers=headers)
        assert response.status == 400, data
        assert (await response.json())["error"] == "bad_json"


async def test_unknown_course_is_404(client: Client, demo: Demo, channels: Channels) -> None:
    """A broadcast to a course that does not exist is 404, and nothing is published."""
    await channels.listen(course_topic(999_999))
    csrf = await login(client, "ada")
    response = await _send(client, csrf, text="hi", audience="course:999999")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    assert await channels.quiet()


# --- reading and acknowledging ------------------------------------------------------


async def test_ack_records_once_and_tells_the_other_tabs(
    client: Client, demo: Demo, channels: Channels
) -> None:
    """204 and `broadcast.acked` on user.{id} naming the tab; again: 204, announced once."""
    broadcast = await _broadcast(client)
    csrf = await login(client, "alice")
    await channels.listen(user_topic(demo.users["alice"].id))
    headers = {"X-CSRF-Token": csrf, "X-Herald-Tab": "tab-2"}
    url = f"/api/broadcasts/{broadcast}/ack"
    assert (await client.post(url, headers=headers)).status == 204
    event = await channels.next()
    assert (event["type"], event["data"]) == ("broadcast.acked", {"id": broadcast, "tab": "tab-2"})
    assert (await client.post(url, headers=headers)).status == 204
    assert await channels.quiet()
    # A tab id that is not well formed is not echoed.
    other = await _broadcast(client)
    csrf = await login(client, "alice")
    headers = {"X-CSRF-Token": csrf, "X-Herald-Tab": "<b>" + "x" * 40}
    assert (await client.post(f"/api/broadcasts/{other}/ack", headers=headers)).status == 204
    assert (await channels.next())["data"] == {"id": other}
    async with demo.sessions() as db:
        acks = (await db.scalars(select(BroadcastAck.user_id))).all()
    assert acks == [demo.users["alice"].id] * 2


async def test_ack_outside_the_audience_is_404(
    client: Client, demo: Demo, empty_course: int
) -> None:
    """A broadcast to a course the user is not in (admins included), or none at all: 404."""
    broadcast = await _broadcast(client, f"course:{empty_course}")
    for username in ("alice", "ada"):
        csrf = await login(client, username)
        for url in (f"/api/broadcasts/{broadcast}/ack", "/api/broadcasts/999999/ack"):
            response = await client.post(url, headers={"X-CSRF-Token": csrf})
            assert response.status == 404, (username, url)
            assert (await response.json())["error"] == "not_found"


async def test_messages_list_broadcasts_with_their_own_read_state(
    client: Client, demo: Demo, course_id: int, empty_course: int
) -> None:
    """GET /api/messages has the user's broadcasts next to their messages, newest first,
    each with its kind, key and ack_url; acknowledged ones only without ?unread=1."""
    async with demo.sessions.begin() as db:
        message = Message(user_id=demo.users["alice"].id, kind=MessageKind.FLASH, text="flash")
        db.add(message)
        await db.flush()
        message_id = message.id
    first = await _broadcast(client, text="to all", level="urgent")
    second = await _broadcast(client, f"course:{course_id}", text="to DEMO101")
    await _broadcast(client, f"course:{empty_course}", text="not for alice")
    csrf = await login(client, "alice")
    body = await (await client.get("/api/messages")).json()
    assert [(item["kind"], item["id"]) for item in body] == [
        ("broadcast", second),
        ("broadcast", first),
        ("flash", message_id),
    ]
    assert body[1] == {
        "id": first,
        "kind": "broadcast",
        "key": f"broadcast:{first}",
        "level": "urgent",
        "text": "to all",
        "link": None,
        "options": {"modal": True},
        "audience": "all",
        "created_at": body[1]["created_at"],
        "expires_at": body[1]["expires_at"],
        "acked_at": None,
        "ack_url": f"/api/broadcasts/{first}/ack",
    }
    assert body[2]["key"] == f"message:{message_id}"
    await client.post(f"/api/broadcasts/{first}/ack", headers={"X-CSRF-Token": csrf})
    unread = await (await client.get("/api/messages?unread=1")).json()
    assert [item["key"] for item in unread] == [f"broadcast:{second}", f"message:{message_id}"]
    everything = await (await client.get("/api/messages")).json()
    assert everything[1]["acked_at"] is not None


async def test_expired_broadcasts_are_gone(client: Client, demo: Demo) -> None:
    """An expired broadcast is in neither the API nor the pages."""
    broadcast = await _broadcast(client, text="yesterday's news")
    async with demo.sessions.begin() as db:
        row = await db.get(Broadcast, broadcast)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    await login(client, "bob")
    assert await (await client.get("/api/messages")).json() == []
    assert "yesterday" not in await (await client.get("/")).text()


# --- pages ----------------------------------------------------------------------------

PAYLOAD = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


async def test_every_page_shows_unseen_broadcasts_until_acknowledged(
    client: Client, demo: Demo, course_id: int
) -> None:
    """Unseen broadcasts are in every page's flash area with their key and ack URL (an
    urgent one as a modal); the body names the user's courses; once acknowledged, gone."""
    urgent = await _broadcast(client, text=PAYLOAD, level="urgent", link="/messages")
    csrf = await login(client, "bob")
    for path in ("/", "/messages", f"/assignments/{demo.assignment_id}"):
        html = await (await client.get(path)).text()
        assert f'data-course-ids="{course_id}"' in html
        item = re.search(rf'<div class="flash flash-urgent"[^>]*data-flash-key="broadcast:{urgent}"'
                         rf'[^>]*>', html)  # fmt: skip
        assert item is not None, path
        assert f'data-ack-url="/api/broadcasts/{urgent}/ack"' in item.group(0)
        assert 'data-modal="1"' in item.group(0)
        assert ESCAPED in html and PAYLOAD not in html
    await client.post(f"/api/broadcasts/{urgent}/ack", headers={"X-CSRF-Token": csrf})
    assert f'data-flash-key="broadcast:{urgent}"' not in await (await client.get("/")).text()


async def test_nav_links_and_unread_count(client: Client, demo: Demo) -> None:
    """Everyone signed in has Messages with the unread count; only admins have Broadcast."""
    await _broadcast(client)
    await _broadcast(client)
    async with demo.sessions.begin() as db:
        db.add(Message(user_id=demo.users["alice"].id, kind=MessageKind.INBOX, text="done"))
    await login(client, "alice")
    html = await (await client.get("/")).text()
    assert 'href="/messages"' in html
    assert re.search(r'<span id="unread-count" class="nav-count">3</span>', html)
    assert 'href="/admin/broadcast"' not in html
    await login(client, "ada")
    assert 'href="/admin/broadcast"' in await (await client.get("/")).text()


async def test_inbox_page_escapes_and_marks_read_without_script(
    client: Client, demo: Demo, channels: Channels
) -> None:
    """/messages lists messages and broadcasts as text, unread first marked so; the
    "Mark as read" form (a plain POST) marks one and comes back; the others' tabs hear."""
    broadcast = await _broadcast(client, text=f"Broadcast {PAYLOAD}", link="/assignments/1")
    async with demo.sessions.begin() as db:
        message = Message(
            user_id=demo.users["alice"].id,
            kind=MessageKind.INBOX,
            text=f"Inbox {PAYLOAD}",
            link="javascript:alert(1)",  # stored by hand: no sender takes such a link
        )
        db.add(message)
        await db.flush()
        message_id = message.id
    csrf = await login(client, "alice")
    await channels.listen(user_topic(demo.users["alice"].id))
    html = await (await client.get("/messages")).text()
    assert f"Broadcast {ESCAPED}" in html and f"Inbox {ESCAPED}" in html
    assert PAYLOAD not in html
    assert "javascript:" not in html
    assert 'href="/assignments/1"' in html
    assert html.count('action="/messages/read"') == 2
    assert "Broadcast to everyone" in html

    response = await client.post(
        "/messages/read",
        data={"csrf_token": csrf, "item": f"broadcast:{broadcast}"},
        allow_redirects=False,
    )
    assert (response.status, response.headers["Location"]) == (303, "/messages")
    assert (await channels.next())["data"] == {"id": broadcast}
    html = await (await client.get("/messages")).text()
    row = re.search(rf'<li[^>]*data-inbox-key="broadcast:{broadcast}" data-read="(\d)"', html)
    assert row is not None and row.group(1) == "1"
    assert html.count('action="/messages/read"') == 1

    response = await client.post(
        "/messages/read-all", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert response.status == 303
    event = await channels.next()
    assert (event["type"], event["data"]) == ("message.acked", {"id": message_id})
    html = await (await client.get("/messages")).text()
    assert 'action="/messages/read"' not in html
    assert 'action="/messages/read-all"' not in html
    assert await (await client.get("/api/messages?unread=1")).json() == []


async def test_marking_read_refuses_others_and_nonsense(
    client: Client, demo: Demo, empty_course: int
) -> None:
    """Another user's message or a broadcast not sent to you is 404; a bad key is 400."""
    elsewhere = await _broadcast(client, f"course:{empty_course}")
    async with demo.sessions.begin() as db:
        bobs = Message(user_id=demo.users["bob"].id, kind=MessageKind.INBOX, text="bob's")
        db.add(bobs)
        await db.flush()
        bobs_id = bobs.id
    csrf = await login(client, "alice")
    for item, status in (
        (f"message:{bobs_id}", 404),
        (f"broadcast:{elsewhere}", 404),
        ("broadcast:0", 404),
        ("task:1", 400),
        ("", 400),
    ):
        response = await client.post("/messages/read", data={"csrf_token": csrf, "item": item})
        assert response.status == status, item
    async with demo.sessions() as db:
        assert (await db.get(Message, bobs_id)).acked_at is None  # type: ignore[union-attr]


async def test_admin_page_is_for_admins_only(client: Client, demo: Demo) -> None:
    """Students and markers get 404 for the page and its form; signed out goes to sign in."""
    response = await client.get("/admin/broadcast", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login")
    for username in ("alice", "mark"):
        csrf = await login(client, username)
        assert (await client.get("/admin/broadcast")).status == 404
        response = await client.post(
            "/admin/broadcast", data={"csrf_token": csrf, "text": "hi", "audience": "all"}
        )
        assert response.status == 404
    async with demo.sessions() as db:
        assert (await db.scalars(select(Broadcast))).all() == []


async def test_admin_form_sends_and_lists_with_seen_counts(
    client: Client, demo: Demo, course_id: int, channels: Channels
) -> None:
    """The form sends (303 back with a confirmation), the list shows audience, level and
    how many of how many have seen it; a bad form re-renders with the reason and input."""
    await channels.listen(course_topic(course_id))
    csrf = await login(client, "ada")
    page = await (await client.get("/admin/broadcast")).text()
    assert f'<option value="course:{course_id}">DEMO101' in page
    assert '<option value="168" selected>' in page

    form = {
        "csrf_token": csrf,
        "text": f"Room change {PAYLOAD}",
        "audience": f"course:{course_id}",
        "level": "urgent",
        "link": "/messages",
        "expires_in": "24",
    }
    response = await client.post("/admin/broadcast", data=form, allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    match = re.fullmatch(r"/admin/broadcast\?sent=(\d+)", location)
    assert match is not None
    broadcast = int(match.group(1))
    event = await channels.next()
    assert (event["type"], event["data"]["id"]) == ("broadcast", broadcast)
    async with demo.sessions() as db:
        row = await db.get(Broadcast, broadcast)
    assert row is not None
    assert timedelta(hours=23) < row.expires_at - row.created_at <= timedelta(hours=24)

    csrf = await login(client, "alice")
    ack = await client.post(f"/api/broadcasts/{broadcast}/ack", headers={"X-CSRF-Token": csrf})
    assert ack.status == 204
    await login(client, "ada")
    page = await (await client.get(location)).text()
    assert f'data-sent="{broadcast}"' in page
    assert f"Room change {ESCAPED}" in page and PAYLOAD not in page
    row_html = re.search(rf'<tr data-broadcast-id="{broadcast}">.*?</tr>', page, re.S)
    assert row_html is not None
    assert "DEMO101" in row_html.group(0) and "urgent" in row_html.group(0)
    assert '<td data-field="seen">1 of 4</td>' in row_html.group(0)

    csrf = await login(client, "ada")
    bad = {**form, "csrf_token": csrf, "text": "Kept text", "link": "https://evil.test"}
    response = await client.post("/admin/broadcast", data=bad)
    assert response.status == 400
    page = await response.text()
    assert "path on this site" in page and "Kept text" in page
    response = await client.post(
        "/admin/broadcast", data={**bad, "link": "", "audience": "course:999999"}
    )
    assert response.status == 404
    assert "no course 999999" in await response.text()
    response = await client.post("/admin/broadcast", data={**bad, "link": "", "expires_in": "5"})
    assert response.status == 400
