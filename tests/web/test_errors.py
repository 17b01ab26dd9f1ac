"""Every API error path answers JSON {"error", "message"} with the right status, no traceback."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.web.conftest import Client, ClientFactory, Demo, login, upload_form


async def _assert_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    text = await response.text()
    assert response.status == status, text
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    for leak in ("Traceback", 'File "', "aiohttp", "sqlalchemy", "redis"):
        assert leak not in text
    return body


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/me"), ("DELETE", "/api/assignments"), ("PATCH", "/api/session")],
)
async def test_wrong_method_is_405_with_allow(client: Client, method: str, path: str) -> None:
    """A known path with the wrong method answers 405 method_not_allowed and says what is."""
    response = await client.request(method, path)
    await _assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


async def test_body_over_the_json_limit_is_413(client: Client) -> None:
    """A JSON body over the request size limit answers 413 too_large."""
    body = json.dumps({"username": "alice", "password": "x" * (2 * 1024 * 1024)}).encode()
    response = await client.post(
        "/api/session", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
    )
    await _assert_error(response, 413, "too_large")


async def test_upload_over_the_limit_is_413(make_client: ClientFactory, demo: Demo) -> None:
    """An upload over HERALD_MAX_UPLOAD_BYTES answers 413 too_large."""
    client = await make_client(HERALD_MAX_UPLOAD_BYTES="100")
    csrf = await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"a" * 101),
        headers={"X-CSRF-Token": csrf},
    )
    await _assert_error(response, 413, "too_large")


async def test_refused_type_is_415(client: Client, demo: Demo) -> None:
    """A file of a refused type answers 415 unsupported_type naming what is accepted."""
    csrf = await login(client, "alice")
    response = await client.post(
        f"/api/assignments/{demo.assignment_id}/submissions",
        data=upload_form(b"\x7fELF\x02\x01\x01\x00" + bytes(64)),
        headers={"X-CSRF-Token": csrf},
    )
    body = await _assert_error(response, 415, "unsupported_type")
    assert "PDF" in body["message"]


async def test_sign_in_limit_is_429(make_client: ClientFactory, demo: Demo) -> None:
    """Too many failed sign-ins answer 429 too_many_attempts with Retry-After."""
    client = await make_client(HERALD_LOGIN_ACCOUNT_LIMIT="1")
    await client.post("/api/session", json={"username": "alice", "password": "x"})
    response = await client.post("/api/session", json={"username": "alice", "password": "x"})
    await _assert_error(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"just a string"', "application/json"),
        ("\xff\xfe", "application/json"),
        ('{"username": "alice", "password": null}', "application/json"),
        ("username=alice&password=demo", "application/x-www-form-urlencoded"),
        ("", "application/json"),
    ],
)
async def test_malformed_json_is_400(client: Client, body: str, content_type: str) -> None:
    """A body that is not the JSON object expected answers 400 bad_json."""
    response = await client.post(
        "/api/session", data=body.encode("latin-1"), headers={"Content-Type": content_type}
    )
    await _assert_error(response, 400, "bad_json")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/submissions/0"),
        ("GET", "/api/submissions/-1"),
        ("GET", "/api/submissions/abc"),
        ("GET", "/api/submissions/%C2%B2"),  # a superscript two: a digit, but no id
        ("GET", "/api/submissions/99999999999999999999"),
        ("GET", "/api/submissions/424242"),
        ("POST", "/api/assignments/424242/submissions"),
        ("POST", "/api/assignments/x1/submissions"),
        ("GET", "/api/no-such-thing"),
    ],
)
async def test_unknown_ids_are_404(client: Client, demo: Demo, method: str, path: str) -> None:
    """Ids that cannot exist, do not exist, and unknown API paths all answer 404 not_found."""
    csrf = await login(client, "alice")
    kwargs: dict[str, Any] = {"headers": {"X-CSRF-Token": csrf}}
    if method == "POST":
        kwargs["data"] = upload_form(b"essay")
    response = await client.request(method, path, **kwargs)
    await _assert_error(response, 404, "not_found")


async def test_signed_out_api_is_401(client: Client, demo: Demo) -> None:
    """API calls that need a user answer 401 unauthorized, never a redirect to the form."""
    for method, path in (
        ("GET", "/api/me"),
        ("GET", "/api/wamp/ticket"),
        ("DELETE", "/api/session"),
        ("POST", f"/api/assignments/{demo.assignment_id}/submissions"),
    ):
        response = await client.request(method, path, allow_redirects=False)
        await _assert_error(response, 401, "unauthorized")


async def test_csrf_refusal_is_403(client: Client) -> None:
    """A forged state-changing API call answers 403 csrf_failed."""
    await login(client, "alice")
    response = await client.delete("/api/session", headers={"X-CSRF-Token": "forged"})
    await _assert_error(response, 403, "csrf_failed")
