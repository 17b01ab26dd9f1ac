"""The JSON API: sign-in, me, assignments, tickets, CSRF, submission state, health."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from sqlalchemy import update

from herald.events import EventPublisher
from herald.models import Submission, Task, TaskStatus, utcnow
from herald.sessions import SessionStore
from tests.web.conftest import (
    Client,
    ClientFactory,
    Demo,
    login,
    settings_of,
    submit_essay,
)
from web import create_app
from web.keys import SESSIONS
from workers.pipeline import SUBMISSION_STEPS


async def test_login_good_sets_cookie_and_returns_user(client: Client) -> None:
    """Good credentials answer 200 with the user and a CSRF token and set an HttpOnly cookie."""
    response = await client.post("/api/session", json={"username": "alice", "password": "demo"})
    assert response.status == 200
    body = await response.json()
    assert body["user"]["username"] == "alice"
    assert body["csrf_token"]
    cookie = response.cookies["herald_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


async def test_login_bad_password_and_unknown_user_answer_alike(client: Client) -> None:
    """A wrong password and an unknown user both answer 401 bad_credentials."""
    for username, password in (("alice", "wrong"), ("nobody", "demo")):
        response = await client.post(
            "/api/session", json={"username": username, "password": password}
        )
        assert response.status == 401
        assert (await response.json())["error"] == "bad_credentials"
        assert "herald_session" not in response.cookies


async def test_login_malformed_json_is_400(client: Client) -> None:
    """A body that is not a JSON object with string fields answers 400 bad_json."""
    for body in ("{not json", "[1, 2]", '{"username": 1, "password": "demo"}'):
        response = await client.post(
            "/api/session", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        assert (await response.json())["error"] == "bad_json"


async def test_login_rotates_session_token(client: Client) -> None:
    """Signing in again issues a new token and ends the old session."""
    jar = client.session.cookie_jar
    await login(client, "alice")
    first = jar.filter_cookies(client.make_url("/"))["herald_session"].value
    await login(client, "bob")
    second = jar.filter_cookies(client.make_url("/"))["herald_session"].value
    assert first != second
    assert client.app is not None
    store = client.app[SESSIONS]
    assert await store.get(first) is None
    assert await store.get(second) is not None


async def test_me_requires_login_and_lists_roles(client: Client, demo: Demo) -> None:
    """/api/me is 401 signed out; signed in it lists the user, roles and courses."""
    response = await client.get("/api/me")
    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"
    csrf = await login(client, "mark")
    body = await (await client.get("/api/me")).json()
    assert body["user"]["username"] == "mark"
    assert body["csrf_token"] == csrf
    assert [c["code"] for c in body["courses"]] == ["DEMO101"]
    assert list(body["roles"].values()) == ["marker"]


async def test_assignments_lists_the_users_courses(client: Client, demo: Demo) -> None:
    """/api/assignments lists the demo assignment with id, course, title and due date."""
    await login(client, "alice")
    body = await (await client.get("/api/assignments")).json()
    assert [a["id"] for a in body] == [demo.assignment_id]
    assert body[0]["course"] == "DEMO101"
    assert body[0]["title"].startswith("Essay 1")
    assert body[0]["due_at"].endswith("Z")


async def test_csrf_missing_or_wrong_is_403(client: Client) -> None:
    """A state-changing request with the cookie but without the right token is refused."""
    csrf = await login(client, "alice")
    response = await client.delete("/api/session")
    assert response.status == 403
    assert (await response.json())["error"] == "csrf_failed"
    response = await client.delete("/api/session", headers={"X-CSRF-Token": csrf + "x"})
    assert response.status == 403
    response = await client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status == 204
    assert (await client.get("/api/me")).status == 401


async def test_ticket_is_issued_and_redeemable_once(
    client: Client, demo: Demo, redis: Redis
) -> None:
    """The WAMP ticket names the router and realm and can be redeemed exactly once."""
    await login(client, "alice")
    response = await client.get("/api/wamp/ticket")
    assert response.status == 200
    body = await response.json()
    settings = settings_of(client)
    assert body["url"] == settings.router_public_url
    assert body["urls"] == [settings.router_public_url]
    assert body["realm"] == "herald"
    assert body["authid"] == str(demo.users["alice"].id)
    store = SessionStore(redis, session_ttl=60, ticket_ttl=60)
    grant = await store.redeem_ticket(body["ticket"])
    assert grant is not None
    assert grant.user_id == demo.users["alice"].id
    assert await store.redeem_ticket(body["ticket"]) is None


async def test_ticket_names_every_router_node(make_client: ClientFactory) -> None:
    """With several router nodes configured, the ticket lists them all, in order, for
    the page to fail over between; ``url`` stays the first, for one-router clients."""
    nodes = ["ws://127.0.0.1:9180/ws", "wss://router-2.example.ac.uk/ws"]
    client = await make_client(HERALD_ROUTER_PUBLIC_URL=",".join(nodes))
    await login(client, "alice")
    response = await client.get("/api/wamp/ticket")
    assert response.status == 200
    body = await response.json()
    assert body["urls"] == nodes
    assert body["url"] == nodes[0]
    # Either node accepts it: the ticket lives in the shared Redis, not in a router.
    assert body["ticket"]


async def test_ticket_requires_login(client: Client) -> None:
    """No ticket without a session."""
    assert (await client.get("/api/wamp/ticket")).status == 401


async def test_submission_state_for_owner_staff_and_others(client: Client, demo: Demo) -> None:
    """The owner and the marker see the submission; another student gets 404."""
    submission_id = await submit_essay(client, demo)
    body = await (await client.get(f"/api/submissions/{submission_id}")).json()
    assert body["id"] == submission_id
    assert body["status"] == "received"
    assert body["seq"] == 0
    assert body["progress"] == 0
    assert [s["name"] for s in body["steps"]] == [step.name for step in SUBMISSION_STEPS]
    assert body["steps"][0]["status"] == "queued"
    assert body["steps"][0]["label"]
    assert body["grade"] is None
    assert body["thumbnail_url"] is None

    await login(client, "bob")
    response = await client.get(f"/api/submissions/{submission_id}")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"

    await login(client, "mark")
    assert (await client.get(f"/api/submissions/{submission_id}")).status == 200
    assert (await client.get(f"/api/submissions/{submission_id + 999}")).status == 404
    assert (await client.get("/api/submissions/99999999999999")).status == 404


async def test_seq_comes_from_the_topic_counter(client: Client, demo: Demo, redis: Redis) -> None:
    """The state's seq is the topic's last published seq."""
    submission_id = await submit_essay(client, demo)
    publisher = EventPublisher(redis)
    for _ in range(3):
        await publisher.publish(f"submission.{submission_id}", "submission.status", {})
    body = await (await client.get(f"/api/submissions/{submission_id}")).json()
    assert body["seq"] == 3


async def test_grade_hidden_until_released(client: Client, demo: Demo) -> None:
    """A grade is null in the API until grade_released_at is set."""
    submission_id = await submit_essay(client, demo)
    async with demo.sessions.begin() as db:
        await db.execute(update(Submission).where(Submission.id == submission_id).values(grade="A"))
    body = await (await client.get(f"/api/submissions/{submission_id}")).json()
    assert body["grade"] is None
    async with demo.sessions.begin() as db:
        await db.execute(
            update(Submission)
            .where(Submission.id == submission_id)
            .values(grade_released_at=utcnow())
        )
    body = await (await client.get(f"/api/submissions/{submission_id}")).json()
    assert body["grade"] == "A"


async def test_healthz_reports_db_and_redis(client: Client) -> None:
    """/healthz finds the DB and Redis up (no router runs here: see test_health.py)."""
    response = await client.get("/healthz")
    checks = (await response.json())["checks"]
    assert checks["db"]["ok"] is True and checks["redis"]["ok"] is True


async def test_unknown_api_route_is_json_404(client: Client) -> None:
    """Unknown API paths answer JSON, not HTML."""
    response = await client.get("/api/nope")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_unexpected_error_is_500_without_traceback(make_client: ClientFactory) -> None:
    """An unhandled exception answers a generic JSON 500 with no traceback in the body."""

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    client = await make_client()
    # Routes freeze at startup; a fresh app gets the faulty route before it starts.
    app = create_app(settings_of(client))
    app.router.add_get("/api/boom", boom)
    app.router.add_get("/boom", boom)
    async with TestClient(TestServer(app)) as faulty:
        response = await faulty.get("/api/boom")
        assert response.status == 500
        body = await response.json()
        assert body["error"] == "internal"
        assert "secret" not in json.dumps(body)
        response = await faulty.get("/boom")
        assert response.status == 500
        html = await response.text()
        assert "secret" not in html
        assert "Traceback" not in html
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_preview_is_served_to_those_who_may_see_the_submission(
    client: Client, demo: Demo
) -> None:
    """Once the thumbnail step made its PNG: the owner and staff get it; others 404."""
    submission_id = await submit_essay(client, demo)
    assert (await client.get(f"/api/submissions/{submission_id}/thumbnail")).status == 404
    png = settings_of(client).files_dir / "thumbnails" / "made.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    async with demo.sessions.begin() as db:
        await db.execute(
            update(Task)
            .where(Task.submission_id == submission_id, Task.kind == "submission.thumbnail")
            .values(status=TaskStatus.DONE, result={"thumbnail": str(png)})
        )
    url = f"/api/submissions/{submission_id}/thumbnail"
    assert (await (await client.get(f"/api/submissions/{submission_id}")).json())[
        "thumbnail_url"
    ] == url
    answer = await client.get(url)
    assert answer.status == 200 and answer.content_type == "image/png"
    assert (await answer.read()).startswith(b"\x89PNG")
    await login(client, "bob")
    assert (await client.get(url)).status == 404
    await login(client, "mark")
    assert (await client.get(url)).status == 200
