"""End to end as an API client: log in, upload, join the router with a ticket,
and receive every pipeline step's events in order over WAMP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

from tests.e2e.client import HeraldClient
from tests.stack import QueueSwitch, Stack
from tests.wamp_client import JoinRefused, close_browser, connect_browser
from tests.workers.support import assert_graph_order
from workers.pipeline import SUBMISSION_STEPS

ESSAY = ("Herald moves slow work off the upload request. " * 300).encode()


async def test_upload_streams_every_step_live_in_seq_order(
    stack: Stack, first_step_queue: QueueSwitch
) -> None:
    """A student's upload returns 202 and every step's events arrive in seq order over WAMP."""
    async with HeraldClient(stack.web_url) as alice:
        await alice.login("alice", "demo")
        assignment = (await alice.get_json("/api/assignments"))[0]
        # Hold the first step's queue so the subscription is in place before work starts.
        await first_step_queue.pause()
        try:
            status, body = await alice.upload(assignment["id"], "essay.txt", ESSAY)
            assert status == 202, body
            assert body["topic"] == f"submission.{body['id']}"
            assert body["url"] == f"/submissions/{body['id']}"
            events: list[dict[str, Any]] = []
            finished = asyncio.Event()

            def on_event(envelope: dict[str, Any]) -> None:
                events.append(envelope)
                if envelope["type"] == "submission.status":
                    finished.set()

            wamp = await connect_browser(stack.settings, await alice.ticket())
            try:
                await wamp.subscribe(on_event, body["topic"])
                await first_step_queue.resume()
                await asyncio.wait_for(finished.wait(), 60)
            finally:
                await close_browser(wamp)
        finally:
            await first_step_queue.resume()

        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert {e["topic"] for e in events} == {body["topic"]}
        started = [e["data"]["step"]["name"] for e in events if e["type"] == "step.started"]
        done = [e["data"]["step"]["name"] for e in events if e["type"] == "step.done"]
        assert_graph_order(started)
        assert_graph_order(done)
        assert events[-1]["data"]["submission"]["status"] == "complete"

        state = await alice.get_json(f"/api/submissions/{body['id']}")
        assert state["status"] == "complete"
        assert state["seq"] == events[-1]["seq"]
        assert [s["status"] for s in state["steps"]] == ["done"] * len(SUBMISSION_STEPS)
        # The API and the events describe the state identically (one shared definition),
        # so a page resyncing from the API never jumps.
        last_step = {
            e["data"]["step"]["name"]: e["data"]["step"] for e in events if "step" in e["data"]
        }
        assert {s["name"]: s for s in state["steps"]} == last_step
        assert state["progress"] == events[-1]["data"]["submission"]["progress"] == 100
        assert state["grade"] is None


async def test_other_student_cannot_subscribe_to_a_submission(stack: Stack) -> None:
    """Bob's session is refused alice's submission topic; his own user topic is allowed."""
    async with HeraldClient(stack.web_url) as alice, HeraldClient(stack.web_url) as bob:
        await alice.login("alice", "demo")
        await bob.login("bob", "demo")
        assignment = (await alice.get_json("/api/assignments"))[0]
        status, body = await alice.upload(assignment["id"], "mine.txt", b"my own work\n")
        assert status == 202
        bob_me = await bob.get_json("/api/me")
        wamp = await connect_browser(stack.settings, await bob.ticket())
        try:
            await wamp.subscribe(lambda _e: None, f"user.{bob_me['user']['id']}")
            with pytest.raises(ApplicationError) as refused:
                await wamp.subscribe(
                    lambda _e: None, body["topic"], options=SubscribeOptions(match="exact")
                )
            assert refused.value.error == "wamp.error.not_authorized"
        finally:
            await close_browser(wamp)
        async with aiohttp.ClientSession() as http:
            response = await http.get(f"{stack.web_url}/api/submissions/{body['id']}")
            assert response.status == 401


async def test_forged_and_reused_tickets_are_refused(stack: Stack) -> None:
    """A made-up ticket and a ticket already used both fail to join the realm."""
    async with HeraldClient(stack.web_url) as alice:
        await alice.login("alice", "demo")
        ticket = await alice.ticket()
        await close_browser(await connect_browser(stack.settings, ticket))
        for bad in ("forged-" + ticket[7:], ticket):
            with pytest.raises(JoinRefused) as refused:
                await connect_browser(stack.settings, bad)
            assert refused.value.reason == "herald.error.authentication_failed"
