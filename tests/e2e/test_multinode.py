"""Herald on two router nodes (tests/cluster.py): 2 Crossbar nodes each with its own
router auth and bridge, 2 web processes and 3 workers, one Redis, one PostgreSQL.

Clients on both nodes (autobahn Python clients and a Chromium page per node) get every
event they may see, in seq order, with no gap and nothing twice, whichever web took the
upload and whichever worker ran it, and are refused what they may not see. Then one
router node is killed with SIGKILL: its clients move to the other node, resubscribe
and resync from the HTTP API, and end in the final state with nothing applied twice;
an upload made while the node is down completes and is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from playwright.async_api import Browser, BrowserContext, Page, Route, expect
from redis.asyncio import Redis

from herald import names
from herald.db import create_engine, session_factory
from herald.events import Envelope, current_seq, parse_envelope
from herald.settings import Settings
from tests.cluster import Cluster, Node, start_cluster
from tests.e2e.client import HeraldClient
from tests.e2e.test_browser import login
from tests.e2e.test_reconnect import RECORDER
from tests.stack import QueueSwitch
from tests.support import eventually
from tests.wamp_client import BrowserSession, JoinRefused, close_browser, connect_browser
from workers.pipeline import SUBMISSION_STEPS
from workers.queue import RedisQueue

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL")
# Generous: the machine is shared, and every wait is a poll that ends as soon as it can.
LIVE_TIMEOUT = 30_000
PIPELINE_TIMEOUT = 90.0
FAILOVER_TIMEOUT = 60.0
FINISHED = ("done", "skipped")


# Beside test_reconnect's RECORDER (states, changes applied): the seq of every event the
# page's subscription handed it, before its own seq checks.
DELIVERIES = """() => {
  const log = window.__heraldLog;
  log.delivered = [];
  const page = window.Herald.submissionPage;
  const onEvent = page.onEvent;
  page.onEvent = function (envelope) {
    log.delivered.push(envelope.seq);
    return onEvent.call(this, envelope);
  };
}"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if POSTGRES_URL is None:
        pytest.skip("the cluster runs on PostgreSQL: set HERALD_TEST_POSTGRES_URL")
    yield from start_cluster(tmp_path_factory.mktemp("cluster"), POSTGRES_URL)


@contextlib.contextmanager
def logs_on_failure(cluster: Cluster) -> Iterator[None]:
    """Print every process log when the block fails (pytest shows it with the failure)."""
    try:
        yield
    except BaseException:
        print(cluster.logs())
        raise


# --- the truth: every event as Redis carried it, which is what every bridge relays ---
@contextlib.asynccontextmanager
async def published(redis_url: str) -> AsyncIterator[dict[str, list[Envelope]]]:
    """Every event published from now on, on every submission topic and admin.tasks."""
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"{names.TopicFamily.SUBMISSION}.*")
    await pubsub.subscribe(names.ADMIN_TASKS)
    confirmed = 0
    while confirmed < 2:
        message = await pubsub.get_message(timeout=10.0)
        assert message is not None and message["type"] in ("subscribe", "psubscribe"), message
        confirmed += 1
    seen: dict[str, list[Envelope]] = {}

    async def collect() -> None:
        async for message in pubsub.listen():
            if message["type"] in ("message", "pmessage"):
                envelope = parse_envelope(message["data"])
                seen.setdefault(envelope["topic"], []).append(envelope)

    task = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()
        await redis.aclose()


# --- a Python client that follows topics the way herald-live.js does -------------------
@dataclass
class Feed:
    """One followed topic: state from the API on every (re)subscribe, then only the
    events after it, each applied once and in seq order; a gap makes it resync."""

    topic: str
    resync: Callable[[], Awaitable[tuple[int, Any]]]  # (seq, state consistent with it)
    apply: Callable[[Any, Envelope], None]
    state: Any = None
    last_seq: int = -1
    delivered: list[Envelope] = field(default_factory=list)  # as the router sent them
    applied: list[int] = field(default_factory=list)
    syncs: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    syncing: bool = False
    pending: list[Envelope] = field(default_factory=list)
    _resyncs: set[asyncio.Task[None]] = field(default_factory=set)

    def on_event(self, *args: Any, **kwargs: Any) -> None:
        envelope: Envelope = args[0] if args else kwargs  # type: ignore[assignment]
        self.delivered.append(envelope)
        if self.syncing:
            self.pending.append(envelope)
        else:
            self._receive(envelope)

    def _receive(self, envelope: Envelope) -> None:
        seq = envelope["seq"]
        if seq <= self.last_seq:
            return  # already in the state shown
        if seq != self.last_seq + 1:
            self.gaps.append(seq)
            resync = asyncio.get_running_loop().create_task(self.sync())
            self._resyncs.add(resync)
            resync.add_done_callback(self._resyncs.discard)
            return
        self.apply(self.state, envelope)
        self.last_seq = seq
        self.applied.append(seq)

    async def sync(self) -> None:
        if self.syncing:
            return
        self.syncing = True
        try:
            seq, self.state = await self.resync()
            self.syncs.append(seq)
            self.last_seq = seq
            pending, self.pending = self.pending, []
        finally:
            self.syncing = False
        for envelope in pending:
            self._receive(envelope)


class Follower:
    """A signed-in user's WAMP client: joins a router node with a fresh ticket from its
    web session, follows its feeds, and when the connection is lost joins the next node
    (like the page), resubscribing and resyncing every feed."""

    def __init__(self, name: str, http: HeraldClient, settings: Settings, urls: list[str]):
        self.name = name
        self.http = http
        self.settings = settings
        self.urls = urls
        self.index = 0
        self.feeds: list[Feed] = []
        self.joined: list[str] = []  # the node of every join
        self.session: BrowserSession | None = None
        self.closing = False
        # Cleared, a lost connection is not replaced until set again: the test keeps the
        # client away while events happen, so that only a resync can catch it up.
        self.may_rejoin = asyncio.Event()
        self.may_rejoin.set()
        self._watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.urls[self.index]

    async def join(self, timeout: float = FAILOVER_TIMEOUT) -> None:  # noqa: ASYNC109
        """Join the current node, else the next one, until one lets us in."""

        async def joined() -> bool:
            ticket = await self.http.ticket()
            settings = replace(self.settings, router_public_urls=(self.url,))
            try:
                self.session = await connect_browser(settings, ticket)
            except (OSError, JoinRefused, TimeoutError):
                self.index = (self.index + 1) % len(self.urls)
                return False
            return True

        await eventually(joined, timeout=timeout, what=f"{self.name} to join a router node")
        self.joined.append(self.url)
        for feed in self.feeds:
            await self._subscribe(feed)
        self._watch = asyncio.create_task(self._rejoin_when_lost(self.session))

    async def follow(self, feed: Feed) -> Feed:
        self.feeds.append(feed)
        if self.session is not None:
            await self._subscribe(feed)
        return feed

    async def subscribe_refused(self, topic: str) -> str:
        """Try to subscribe to ``topic``; returns the error URI it is refused with."""
        assert self.session is not None
        with pytest.raises(ApplicationError) as refused:
            await self.session.subscribe(lambda *_: None, topic)
        return str(refused.value.error)

    async def _subscribe(self, feed: Feed) -> None:
        assert self.session is not None
        # Held until the resync below, as the page does: what arrives meanwhile is
        # applied after it only if newer.
        feed.syncing = True
        try:
            await self.session.subscribe(feed.on_event, feed.topic)
        finally:
            feed.syncing = False
        await feed.sync()

    async def _rejoin_when_lost(self, session: BrowserSession | None) -> None:
        assert session is not None
        # Shielded: cancelling this watch (close) must not cancel the session's future.
        await asyncio.shield(session.gone)
        if not self.closing:
            self.session = None
            self.index = (self.index + 1) % len(self.urls)
            await self.may_rejoin.wait()
            await self.join()

    async def close(self) -> None:
        self.closing = True
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        if self.session is not None:
            await close_browser(self.session)


def submission_feed(http: HeraldClient, submission_id: int) -> Feed:
    """A submission's topic; its state: the submission's status."""

    async def resync() -> tuple[int, Any]:
        body = await http.get_json(f"/api/submissions/{submission_id}")
        return int(body["seq"]), {"status": body["status"]}

    def apply(state: dict[str, Any], envelope: Envelope) -> None:
        submission = envelope["data"].get("submission")
        if submission is not None:
            state["status"] = submission["status"]

    return Feed(names.submission_topic(submission_id), resync, apply)


def admin_tasks_feed(http: HeraldClient) -> Feed:
    """admin.tasks; its state: every task's status by id."""

    async def resync() -> tuple[int, Any]:
        body = await http.get_json("/api/tasks?limit=200")
        assert body["topic"] == names.ADMIN_TASKS
        assert body["next"] is None, "more tasks than one page: raise the limit"
        return int(body["seq"]), {row["id"]: row["status"] for row in body["tasks"]}

    def apply(state: dict[int, str], envelope: Envelope) -> None:
        if envelope["type"] == names.EventType.TASKS_CHANGED:
            for task in envelope["data"]["tasks"]:
                state[task["id"]] = task["status"]

    return Feed(names.ADMIN_TASKS, resync, apply)


# --- the people and their pages ------------------------------------------------------
@dataclass
class People:
    """HTTP sessions: each person signed in on each web, and the queue switch."""

    on: dict[str, dict[str, HeraldClient]]  # username -> node name -> client
    assignment_id: int
    first_step: QueueSwitch
    followers: dict[str, Follower] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def people(cluster: Cluster) -> AsyncIterator[People]:
    engine = create_engine(cluster.database_url)
    redis = Redis.from_url(cluster.redis_url)
    switch = QueueSwitch(session_factory(engine), RedisQueue(redis), SUBMISSION_STEPS[0].queue)
    on: dict[str, dict[str, HeraldClient]] = {}
    for username in ("alice", "bob", "ada"):
        for node in cluster.nodes.values():
            client = HeraldClient(node.web_url)
            await client.login(username, "demo")
            on.setdefault(username, {})[node.name] = client
    assignments = await on["alice"]["a"].get_json("/api/assignments")
    group = People(on, int(assignments[0]["id"]), switch)
    try:
        yield group
    finally:
        for follower in group.followers.values():
            await follower.close()
        await switch.resume()
        for clients in on.values():
            for client in clients.values():
                await client.http.close()
        await redis.aclose()
        await engine.dispose()


def _settings_of(cluster: Cluster) -> Settings:
    # Any node's settings: the Python clients use only the allowed origin from them.
    return next(iter(cluster.nodes.values())).settings


async def start_follower(
    cluster: Cluster, people: People, name: str, username: str, web: str, node: str
) -> Follower:
    """``username``'s client, with tickets from web ``web``, joining router ``node`` first."""
    urls = [cluster.nodes[node].router_url] + [
        n.router_url for n in cluster.nodes.values() if n.name != node
    ]
    follower = Follower(name, people.on[username][web], _settings_of(cluster), urls)
    await follower.join()
    assert follower.joined == [cluster.nodes[node].router_url]
    people.followers[name] = follower
    return follower


async def upload(people: People, username: str, web: str, label: str) -> int:
    text = f"{label}\n\n" + f"{label}: a cluster loses no news. " * 40
    status, body = await people.on[username][web].upload(
        people.assignment_id, f"{label}.txt", text.encode()
    )
    assert status == 202, body
    return int(body["id"])


async def open_page(browser: Browser, node: Node, username: str) -> tuple[BrowserContext, Page]:
    """A signed-in page of ``username`` on ``node``'s web whose tab last joined ``node``'s
    router (so the test knows where it starts; herald-live.js keeps a tab on its node)."""
    context = await browser.new_context(base_url=node.web_url)
    await context.add_init_script(f"sessionStorage.setItem('herald.router', '{node.router_url}')")
    page = await context.new_page()
    await login(page, username)
    return context, page


async def watch_submission(page: Page, submission_id: int, router_url: str) -> int:
    """Open the submission's page, wait until it is live on ``router_url`` and synced,
    start recording what it applies; returns the seq it shows."""
    await page.goto(f"/submissions/{submission_id}")
    await expect(page.locator("body")).to_have_attribute("data-live", "1", timeout=LIVE_TIMEOUT)
    await page.wait_for_function(
        "() => window.Herald.submissionPage.syncing === false", timeout=LIVE_TIMEOUT
    )
    assert await page.evaluate("window.Herald.live.url") == router_url
    await page.evaluate(RECORDER)
    await page.evaluate(DELIVERIES)
    return int(await page.evaluate("window.Herald.submissionPage.lastSeq"))


async def page_log(page: Page) -> dict[str, Any]:
    log: dict[str, Any] = await page.evaluate("window.__heraldLog")
    return log


async def wait_complete(people: People, submission_ids: list[int]) -> None:
    http = people.on["ada"]["a"]

    async def complete() -> bool:
        for sid in submission_ids:
            if (await http.get_json(f"/api/submissions/{sid}"))["status"] != "complete":
                return False
        return True

    await eventually(complete, timeout=PIPELINE_TIMEOUT, what=f"submissions {submission_ids}")


async def wait_caught_up(redis_url: str, feeds: list[Feed]) -> None:
    """Every feed has applied (or synced to) its topic's last seq."""
    redis = Redis.from_url(redis_url)
    try:

        async def caught_up() -> bool:
            for feed in feeds:
                if feed.syncing or feed.last_seq < await current_seq(redis, feed.topic):
                    return False
            return True

        await eventually(caught_up, timeout=LIVE_TIMEOUT / 1000, what="every client to catch up")
    finally:
        await redis.aclose()


def assert_exactly_every_event(feed: Feed, truth: list[Envelope], who: str) -> None:
    """Never resynced after its first sync: every later event arrived, once, in order,
    as published, and was applied."""
    assert len(feed.syncs) == 1 and not feed.gaps, (who, feed.syncs, feed.gaps)
    start = feed.syncs[0]
    expected = [e for e in truth if e["seq"] > start]
    assert expected, (who, feed.topic, "no event after the first sync")
    assert feed.applied == [e["seq"] for e in expected], (who, feed.topic, feed.applied)
    delivered = [e for e in feed.delivered if e["seq"] > start]
    assert delivered == expected, (who, feed.topic)


def assert_applied_once_in_order(feed: Feed, who: str) -> None:
    assert feed.applied == sorted(set(feed.applied)), (who, feed.topic, feed.applied)
    for sync in feed.syncs:
        # A resync never goes back past what had been shown.
        assert sync >= min(feed.syncs), (who, feed.syncs)


def assert_page_got_every_event(log: dict[str, Any], start: int, final: int) -> None:
    """Every event reached the page, once and in order, and none was applied twice (the
    page itself resyncs after some, e.g. the thumbnail's, to fetch the preview)."""
    assert log["delivered"] == list(range(start + 1, final + 1)), log["delivered"]
    assert_page_nothing_applied_twice(log["changes"])
    assert log["states"] == ["live"], log["states"]


def assert_page_nothing_applied_twice(changes: list[dict[str, Any]]) -> None:
    shown = 0
    for change in changes:
        if change["kind"] == "event":
            assert change["seq"] > shown, (change, changes)
        else:
            assert change["seq"] >= shown, (change, changes)
        shown = max(shown, change["seq"])


async def tasks_of(people: People, submission_ids: list[int]) -> dict[int, str]:
    body = await people.on["ada"]["b"].get_json("/api/tasks?limit=200")
    return {
        row["id"]: row["status"] for row in body["tasks"] if row["submission_id"] in submission_ids
    }


async def settled_tasks(
    people: People, submission_ids: list[int], admins: list[Feed]
) -> dict[int, str]:
    """The submissions' tasks once all are finished and every admin feed shows them so
    (a task's event is published just after its commit: poll, do not race it)."""
    tasks: dict[int, str] = {}

    async def settled() -> bool:
        nonlocal tasks
        tasks = await tasks_of(people, submission_ids)
        return (
            len(tasks) == len(submission_ids) * len(SUBMISSION_STEPS)
            and set(tasks.values()) <= set(FINISHED)
            and all({tid: feed.state.get(tid) for tid in tasks} == tasks for feed in admins)
        )

    await eventually(
        settled, timeout=PIPELINE_TIMEOUT, what="every admin client to show every task finished"
    )
    return tasks


# --- the tests ------------------------------------------------------------------------
@pytest.mark.timeout(240)
async def test_every_client_on_either_node_gets_every_event_it_may_see(
    cluster: Cluster, people: People, browser: Browser
) -> None:
    """Students and admins on both nodes; uploads through both webs, run by several
    workers: each client gets exactly the events of what it may see, in order."""
    nodes = cluster.nodes
    with logs_on_failure(cluster):
        # Students' tickets from one web, their router the other node's: any web's
        # ticket is good on any node (router auth on each reads the shared Redis).
        alice = await start_follower(cluster, people, "alice", "alice", web="a", node="b")
        bob = await start_follower(cluster, people, "bob", "bob", web="b", node="a")
        ada_a = await start_follower(cluster, people, "ada@a", "ada", web="a", node="a")
        ada_b = await start_follower(cluster, people, "ada@b", "ada", web="b", node="b")
        admin_feeds = {
            "ada@a": await ada_a.follow(admin_tasks_feed(people.on["ada"]["a"])),
            "ada@b": await ada_b.follow(admin_tasks_feed(people.on["ada"]["b"])),
        }
        await people.first_step.pause()
        async with published(cluster.redis_url) as truth:
            # Each student uploads through both webs: four submissions.
            uploads = {
                ("alice", "a"): await upload(people, "alice", "a", "alice-via-a"),
                ("alice", "b"): await upload(people, "alice", "b", "alice-via-b"),
                ("bob", "a"): await upload(people, "bob", "a", "bob-via-a"),
                ("bob", "b"): await upload(people, "bob", "b", "bob-via-b"),
            }
            student_feeds: list[tuple[str, Feed]] = []
            for (username, web), sid in uploads.items():
                follower = alice if username == "alice" else bob
                feed = await follower.follow(submission_feed(people.on[username][web], sid))
                student_feeds.append((username, feed))

            # Nobody sees another student's submission or personal topic, on either node.
            not_authorized = "wamp.error.not_authorized"
            for follower, other in ((alice, "bob"), (bob, "alice")):
                other_sid = uploads[(other, "a")]
                topic = names.submission_topic(other_sid)
                assert await follower.subscribe_refused(topic) == not_authorized
                other_id = (await people.on[other]["a"].get_json("/api/me"))["user"]["id"]
                topic = names.user_topic(other_id)
                assert await follower.subscribe_refused(topic) == not_authorized
                assert await follower.subscribe_refused(names.ADMIN_TASKS) == not_authorized

            # A page per node: alice's on node a, bob's on node b.
            pages: list[tuple[BrowserContext, Page, int, int]] = []
            for username, node in (("alice", nodes["a"]), ("bob", nodes["b"])):
                context, page = await open_page(browser, node, username)
                sid = uploads[(username, node.name)]
                shown = await watch_submission(page, sid, node.router_url)
                pages.append((context, page, sid, shown))

            await people.first_step.resume()
            await wait_complete(people, list(uploads.values()))
            tasks = await settled_tasks(people, list(uploads.values()), list(admin_feeds.values()))
            feeds = [feed for _, feed in student_feeds] + list(admin_feeds.values())
            await wait_caught_up(cluster.redis_url, feeds)

            for username, feed in student_feeds:
                assert_exactly_every_event(feed, truth[feed.topic], username)
                assert feed.state == {"status": "complete"}
            for name, feed in admin_feeds.items():
                assert_exactly_every_event(feed, truth[names.ADMIN_TASKS], name)

            for context, page, sid, shown in pages:
                final = truth[names.submission_topic(sid)][-1]["seq"]
                await page.wait_for_function(
                    f"() => window.Herald.submissionPage.lastSeq === {final}",
                    timeout=LIVE_TIMEOUT,
                )
                await expect(page.locator("#submission-status")).to_have_text("complete")
                assert_page_got_every_event(await page_log(page), shown, final)
                await context.close()

        # Which worker ran which task: from each worker's own log.
        async def every_task_logged() -> bool:
            ran = await asyncio.to_thread(cluster.workers_by_task)
            return all(tid in ran for tid in tasks)

        await eventually(every_task_logged, timeout=30, what="every task in a worker's log")
        ran = cluster.workers_by_task()
        workers = {worker for tid in tasks for worker in ran[tid]}
        print({tid: ran[tid] for tid in sorted(tasks)})
        assert len(workers) >= 2, {tid: ran[tid] for tid in tasks}


@pytest.mark.timeout(240)
async def test_killing_a_router_node_moves_its_clients_to_the_other(
    cluster: Cluster, people: People, browser: Browser
) -> None:
    """SIGKILL router node a mid-pipeline: its page and Python clients move to node b,
    resync, and end in the final state with nothing applied twice; an upload made while
    node a is down completes and is seen. Clients on node b notice nothing."""
    nodes = cluster.nodes
    if not people.followers:
        pytest.skip("needs the clients of the test before")
    bob, ada_a, alice, ada_b = (
        people.followers[name] for name in ("bob", "ada@a", "alice", "ada@b")
    )
    assert bob.url == ada_a.url == nodes["a"].router_url
    assert alice.url == ada_b.url == nodes["b"].router_url
    moved = (bob, ada_a)
    with logs_on_failure(cluster):
        await people.first_step.pause()
        async with published(cluster.redis_url) as truth:
            before = await upload(people, "bob", "b", "bob-before-the-crash")
            bob_feed = await bob.follow(submission_feed(people.on["bob"]["b"], before))
            watched = await upload(people, "alice", "a", "alice-watched-across-the-crash")
            alice_feed = await alice.follow(submission_feed(people.on["alice"]["b"], watched))
            context, page = await open_page(browser, nodes["a"], "alice")
            shown = await watch_submission(page, watched, nodes["a"].router_url)
            admin_a, admin_b = ada_a.feeds[0], ada_b.feeds[0]
            seen_before = admin_a.last_seq

            # Node a's clients are kept from rejoining until the pipelines are over, so
            # what they miss can only come back through their resync: the Python
            # clients hold off, and the page's ticket requests fail meanwhile.
            for follower in moved:
                follower.may_rejoin.clear()

            async def refuse(route: Route) -> None:
                await route.abort()

            await page.route("**/api/wamp/ticket", refuse)
            await asyncio.to_thread(nodes["a"].kill_router)
            assert not nodes["a"].router_running()

            # Node a's router auth and bridge lost their router; node b's are unaffected.
            async def node_a_backend_gone() -> bool:
                return not await asyncio.to_thread(cluster.backend_joined, nodes["a"])

            await eventually(node_a_backend_gone, timeout=30, what="node a's bridge to notice")
            assert await asyncio.to_thread(cluster.backend_joined, nodes["b"])
            await expect(page.locator("body")).to_have_attribute(
                "data-live-state", "reconnecting", timeout=LIVE_TIMEOUT
            )
            for follower in moved:

                async def lost(follower: Follower = follower) -> bool:
                    return follower.session is None

                await eventually(lost, timeout=30, what=f"{follower.name} to lose node a")

            # An upload through web a while its router node is down; every pipeline runs.
            during = await upload(people, "bob", "a", "bob-while-node-a-is-down")
            during_feed = await bob.follow(submission_feed(people.on["bob"]["a"], during))
            await people.first_step.resume()
            submission_ids = [before, watched, during]
            await wait_complete(people, submission_ids)
            await settled_tasks(people, submission_ids, [admin_b])
            # What the held clients missed: every event up to these seqs.
            missed = {topic: envelopes[-1]["seq"] for topic, envelopes in truth.items()}
            assert bob_feed.last_seq < missed[bob_feed.topic]
            assert admin_a.last_seq == seen_before < missed[names.ADMIN_TASKS]
            assert await page.evaluate("window.Herald.submissionPage.lastSeq") == shown

            # Let them back: they go to node b on their own, resubscribe and resync.
            await page.unroute("**/api/wamp/ticket")
            for follower in moved:
                follower.may_rejoin.set()

            async def page_on_b() -> bool:
                url = await page.evaluate("window.Herald.live.url")
                state = await page.evaluate("document.body.dataset.liveState")
                return bool(url == nodes["b"].router_url and state == "live")

            await eventually(page_on_b, timeout=FAILOVER_TIMEOUT, what="the page on node b")
            for follower in moved:

                async def rejoined(follower: Follower = follower) -> bool:
                    return follower.session is not None and len(follower.joined) == 2

                await eventually(
                    rejoined, timeout=FAILOVER_TIMEOUT, what=f"{follower.name} on node b"
                )
                assert follower.joined == [nodes["a"].router_url, nodes["b"].router_url]
            feeds = [bob_feed, alice_feed, during_feed, admin_a, admin_b]
            await settled_tasks(people, submission_ids, [admin_a, admin_b])
            await wait_caught_up(cluster.redis_url, feeds)

            # The moved clients caught up by their resync on node b, not by a replay,
            # and show the final state, every event applied at most once.
            for feed, who in ((admin_a, "ada@a"), (bob_feed, "bob"), (during_feed, "bob")):
                assert feed.syncs[-1] >= missed[feed.topic], (who, feed.topic, feed.syncs)
                assert_applied_once_in_order(feed, who)
                assert feed.last_seq == truth[feed.topic][-1]["seq"], (who, feed.topic)
            assert bob_feed.state == during_feed.state == {"status": "complete"}
            # The clients of node b never lost a thing.
            assert len(admin_b.syncs) == 1 and not admin_b.gaps
            assert_applied_once_in_order(admin_b, "ada@b")
            assert admin_b.last_seq == truth[names.ADMIN_TASKS][-1]["seq"]
            assert_exactly_every_event(alice_feed, truth[alice_feed.topic], "alice")
            assert alice_feed.state == {"status": "complete"}

            # The page: back by itself on node b, resynced to the final state, no reload,
            # no event applied twice, none replayed.
            watched_topic = names.submission_topic(watched)
            watched_final = truth[watched_topic][-1]["seq"]
            await page.wait_for_function(
                f"() => window.Herald.submissionPage.lastSeq === {watched_final}",
                timeout=LIVE_TIMEOUT,
            )
            await expect(page.locator("#submission-status")).to_have_text("complete")
            rows = page.locator("#steps tr[data-step]")
            statuses = await rows.evaluate_all("rows => rows.map(r => r.dataset.status)")
            assert len(statuses) == len(SUBMISSION_STEPS)
            assert set(statuses) <= set(FINISHED), statuses
            log = await page_log(page)
            assert log["states"][0] == "live" and log["states"][-1] == "live", log["states"]
            assert "reconnecting" in log["states"], log["states"]
            assert_page_nothing_applied_twice(log["changes"])
            syncs = [c["seq"] for c in log["changes"] if c["kind"] == "sync"]
            assert syncs and max(syncs) >= missed[watched_topic], log["changes"]
            # Nothing missed was replayed as an event: it all came with the resync.
            events = [c["seq"] for c in log["changes"] if c["kind"] == "event"]
            assert not [seq for seq in events if seq <= missed[watched_topic]], log["changes"]
            assert await page.evaluate("window.__heraldNoReload === true")
            assert await page.evaluate("sessionStorage.getItem('herald.router')") == (
                nodes["b"].router_url
            )

            # Live again on node b: a new upload's events reach the moved clients as events.
            await people.first_step.pause()
            after = await upload(people, "bob", "b", "bob-after-the-move")
            after_feed = await bob.follow(submission_feed(people.on["bob"]["b"], after))
            resynced = admin_a.syncs[-1]
            await people.first_step.resume()
            await wait_complete(people, [after])
            await wait_caught_up(cluster.redis_url, [after_feed, admin_a])
            assert after_feed.state == {"status": "complete"}
            assert after_feed.applied, after_feed.syncs
            assert_applied_once_in_order(after_feed, "bob")
            assert [seq for seq in admin_a.applied if seq > resynced] == list(
                range(resynced + 1, admin_a.last_seq + 1)
            )
            await context.close()
