"""Server-rendered pages: sign-in, redirects, upload form, escaping, headers."""

from __future__ import annotations

import re

from herald.models import Assignment, Course, Message, MessageKind, User
from tests.web.conftest import (
    Client,
    ClientFactory,
    Demo,
    login,
    raw_multipart,
    settings_of,
    upload_form,
    uploads_left,
)
from web.app import STATIC_DIR


def _csrf_from(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert match is not None
    return match.group(1)


async def test_login_page_renders(client: Client) -> None:
    """/login shows the sign-in form."""
    response = await client.get("/login")
    assert response.status == 200
    html = await response.text()
    assert '<form method="post" action="/login"' in html
    assert 'name="password"' in html


async def test_pages_redirect_to_login_when_signed_out(client: Client, demo: Demo) -> None:
    """Pages that need a user redirect to /login, keeping where they were going."""
    response = await client.get("/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login")
    response = await client.get(f"/assignments/{demo.assignment_id}", allow_redirects=False)
    assert response.headers["Location"] == f"/login?next=%2Fassignments%2F{demo.assignment_id}"


async def test_form_login_redirects_only_to_local_paths(client: Client, demo: Demo) -> None:
    """POST /login goes to a local next= and ignores an off-site one."""
    for target, expected in (
        ("/assignments/1", "/assignments/1"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        response = await client.post(
            "/login",
            data={"username": "alice", "password": "demo", "next": target},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == expected


async def test_form_login_bad_credentials_rerenders(client: Client) -> None:
    """A wrong password re-renders the form with 401 and a message."""
    response = await client.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status == 401
    assert "wrong password" in await response.text()


async def test_dashboard_lists_courses_and_assignments(client: Client, demo: Demo) -> None:
    """The dashboard shows the user's name, course and assignment link."""
    await login(client, "alice")
    html = await (await client.get("/")).text()
    assert "Alice Student" in html
    assert "DEMO101" in html
    assert f'href="/assignments/{demo.assignment_id}"' in html


async def test_form_upload_redirects_to_live_submission_page(client: Client, demo: Demo) -> None:
    """The upload form stores the file, redirects, and the page shows every step."""
    await login(client, "alice")
    page = await (await client.get(f"/assignments/{demo.assignment_id}")).text()
    assert 'enctype="multipart/form-data"' in page
    csrf = _csrf_from(page)
    response = await client.post(
        f"/assignments/{demo.assignment_id}/submit",
        data=upload_form(b"essay text", csrf=csrf),
        allow_redirects=False,
    )
    assert response.status == 303
    location = response.headers["Location"]
    assert re.fullmatch(r"/submissions/\d+", location)
    html = await (await client.get(location)).text()
    assert 'role="progressbar"' in html
    assert 'aria-valuenow="0"' in html
    assert 'data-submission-status="received"' in html
    for step in ("scan", "store", "record"):
        assert f'data-step="{step}"' in html
    assert 'data-status="queued"' in html


async def test_form_upload_error_rerenders_with_status(client: Client, demo: Demo) -> None:
    """A refused upload shows the assignment page again with the reason and status."""
    await login(client, "alice")
    csrf = _csrf_from(await (await client.get(f"/assignments/{demo.assignment_id}")).text())
    response = await client.post(
        f"/assignments/{demo.assignment_id}/submit",
        data=upload_form(b"\x7fELF\x02\x01\x01\x00", csrf=csrf),
    )
    assert response.status == 415
    html = await response.text()
    assert "not accepted" in html
    assert "Submit your work" in html
    response = await client.post(
        f"/assignments/{demo.assignment_id}/submit",
        data=upload_form(b"essay", csrf="forged"),
    )
    assert response.status == 403
    assert uploads_left(settings_of(client)) == []


async def test_logout_form_needs_csrf(client: Client) -> None:
    """POST /logout without the token is refused; with it, the user is signed out."""
    csrf = await login(client, "alice")
    response = await client.post("/logout", data={}, allow_redirects=False)
    assert response.status == 403
    response = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/api/me")).status == 401


async def test_filename_is_escaped_on_pages(client: Client, demo: Demo) -> None:
    """A filename with markup shows as text on the dashboard and the submission page."""
    csrf = await login(client, "alice")
    name = "<script>alert(1)<img src=x onerror=alert(1)>.txt"
    body, headers = raw_multipart(name, b"text")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=body,
        headers={"X-CSRF-Token": csrf, **headers},
    )
    assert response.status == 202
    url = (await response.json())["url"]
    for path in (url, "/", f"/assignments/{demo.assignment_id}"):
        html = await (await client.get(path)).text()
        assert "&lt;script&gt;alert(" in html, path
        assert "<script>alert" not in html
        assert "<img src=x" not in html


async def test_other_students_submission_page_is_404(client: Client, demo: Demo) -> None:
    """Bob cannot open Alice's submission page."""
    csrf = await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"text"),
        headers={"X-CSRF-Token": csrf},
    )
    url = (await response.json())["url"]
    await login(client, "bob")
    response = await client.get(url)
    assert response.status == 404
    assert "text/html" in response.headers["Content-Type"]


async def test_security_headers_on_every_response(client: Client) -> None:
    """Pages, API errors, redirects and static files all carry the security headers."""
    settings = settings_of(client)
    router_origin = settings.router_public_url.rsplit("/", 1)[0]
    for path in ("/login", "/api/me", "/", "/static/herald.css", "/nope"):
        response = await client.get(path, allow_redirects=False)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert f"connect-src 'self' {router_origin}" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_csp_lets_pages_reach_every_router_node(make_client: ClientFactory) -> None:
    """With several router nodes, connect-src names each node's origin once, and no other."""
    client = await make_client(
        HERALD_ROUTER_PUBLIC_URL=(
            "wss://r1.example.ac.uk/ws,wss://r2.example.ac.uk:8443/ws,wss://r1.example.ac.uk/ws2"
        )
    )
    response = await client.get("/login")
    directives = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    connect = [d for d in directives if d.startswith("connect-src ")]
    assert connect == ["connect-src 'self' wss://r1.example.ac.uk wss://r2.example.ac.uk:8443"]


async def test_pages_have_no_inline_scripts(client: Client, demo: Demo) -> None:
    """Every script is loaded from /static (CSP forbids inline ones)."""
    await login(client, "alice")
    for path in ("/", f"/assignments/{demo.assignment_id}", "/login"):
        html = await (await client.get(path)).text()
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/static/' in tag
        assert "<script>" not in html


PAYLOAD = "<script>alert(1)</script>\"onerror=alert(1) x='"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onerror=alert(1) x=&#39;"


def _assert_escaped(html: str, where: str) -> None:
    assert ESCAPED in html, where
    assert "<script>alert" not in html, where
    assert '"onerror=' not in html, where
    assert "javascript:" not in html, where


async def test_user_text_is_escaped_on_every_page(client: Client, demo: Demo) -> None:
    """Markup in a display name, a filename, a flash message, a course and an assignment
    comes out as text on every page that shows it, and a javascript: link is dropped."""
    async with demo.sessions.begin() as db:
        for username in ("alice", "mark"):
            user = await db.get(User, demo.users[username].id)
            assert user is not None
            user.display_name = f"{username} {PAYLOAD}"
        assignment = await db.get(Assignment, demo.assignment_id)
        assert assignment is not None
        assignment.title = f"Essay {PAYLOAD}"
        assignment.description = PAYLOAD
        course = await db.get(Course, assignment.course_id)
        assert course is not None
        course.title = PAYLOAD
        for user_id in (demo.users["alice"].id, demo.users["mark"].id):
            db.add_all(
                [
                    Message(user_id=user_id, kind=MessageKind.FLASH, text=PAYLOAD),
                    Message(
                        user_id=user_id,
                        kind=MessageKind.FLASH,
                        text="Open this",
                        link="javascript:alert(1)",
                    ),
                    Message(
                        user_id=user_id, kind=MessageKind.FLASH, text="Off-site", link="/\\evil"
                    ),
                    Message(user_id=user_id, kind=MessageKind.FLASH, text="Here", link="/?a=1&b=2"),
                ]
            )
    csrf = await login(client, "alice")
    body, headers = raw_multipart(f"{PAYLOAD}.txt", b"text", encoded=True)
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=body,
        headers={"X-CSRF-Token": csrf, **headers},
    )
    assert response.status == 202
    submission_url = (await response.json())["url"]

    pages = ("/", f"/assignments/{demo.assignment_id}", submission_url)
    for username in ("alice", "mark"):
        await login(client, username)
        for path in pages:
            html = await (await client.get(path)).text()
            _assert_escaped(html, f"{username} {path}")
            assert 'href="/?a=1&amp;b=2"' in html
            assert 'href="/\\evil"' not in html

    # The sign-in form re-shows a typed username as text too.
    await client.post("/logout", data={"csrf_token": await login(client, "alice")})
    response = await client.post("/login", data={"username": PAYLOAD, "password": "x"})
    _assert_escaped(await response.text(), "login")


def test_page_scripts_never_write_html() -> None:
    """The page JS puts data into the DOM as text and attributes only, never as markup."""
    scripts = list(STATIC_DIR.glob("*.js"))
    assert len(scripts) >= 5
    for script in scripts:
        # Comments may name the sinks (to forbid them); the code may not use them.
        source = re.sub(r"/\*.*?\*/|//[^\n]*", "", script.read_text(), flags=re.DOTALL)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"


async def test_reports_link_only_for_markers_and_admins(client: Client, demo: Demo) -> None:
    for username, shown in (("alice", False), ("mark", True), ("ada", True)):
        await login(client, username)
        page = await (await client.get("/")).text()
        assert ('href="/reports"' in page) is shown, username
