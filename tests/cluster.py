"""Herald as a cluster, for the multi-node end-to-end test: two Crossbar router nodes,
each with its own router auth and bridge, two web processes and three workers, all
against ONE redis-server and ONE PostgreSQL database (a fresh one per cluster).

Redis is the backplane: every bridge relays every channel to its own router, so a
client on either node gets every event, whichever web took the upload and whichever
worker ran it. Every process is real and started the way ``herald up`` starts it (one
:class:`Supervisor` per node); readiness is polled, and every log is kept under
``root/logs/<node>/`` for a failing test's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from herald.crossbar import crossbar_command, crossbar_env, render_config, router_ready
from herald.health import health_key, instance_id
from herald.settings import Settings
from herald.supervisor import Child, Supervisor
from tests.conftest import stack_env
from tests.support import RedisServer, free_port, port_open, wait_until

__all__ = ["Cluster", "Node", "start_cluster"]

NODE_NAMES = ("a", "b")
# Workers per node: three in all, on both nodes' supervisors.
WORKERS = {"a": ("worker-1", "worker-2"), "b": ("worker-3",)}
WORKER_CONCURRENCY = "2"
START_TIMEOUT = 90.0  # a loaded 2-core machine starts a dozen Python processes at once


@dataclass
class Node:
    """One router node with its own router auth and bridge, plus the web process and
    workers its supervisor happens to run (those need no router of their own)."""

    name: str
    settings: Settings  # this node's ports; var_dir holds only its Crossbar node dir
    supervisor: Supervisor
    log_dir: Path

    @property
    def router_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.router_port}/ws"

    @property
    def web_url(self) -> str:
        return self.settings.web_url

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.name == name)

    def router_running(self) -> bool:
        return any(c.name == "router" and c.proc.poll() is None for c in self.supervisor.children)

    def kill_router(self, timeout: float = 30.0) -> None:
        """Crash the Crossbar node: SIGKILL to its controller and every worker process
        it forked (no goodbye to any client), then wait until its ports are closed."""
        router = self.child("router")
        doomed = [router.proc.pid, *_descendants(router.proc.pid)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):  # gone already
                os.kill(pid, signal.SIGKILL)
        router.proc.wait(timeout)
        ports = (self.settings.router_port, self.settings.backend_port)
        wait_until(
            lambda: not any(port_open(port) for port in ports),
            timeout=timeout,
            what=f"node {self.name}'s router ports to close",
        )


@dataclass
class Cluster:
    root: Path
    nodes: dict[str, Node]
    redis_url: str
    database_url: str

    def logs(self) -> str:
        """Every process log of every node (the tail of each), for a failure report."""
        parts = []
        for path in sorted((self.root / "logs").glob("*/*.log")):
            text = path.read_text(errors="replace")[-6000:]
            parts.append(f"===== {path.parent.name}/{path.name}\n{text}")
        return "\n".join(parts)

    def workers_by_task(self) -> dict[int, list[str]]:
        """Task id -> the workers that finished a run of it, read from each worker's own
        log (the task rows do not name the worker; its ``task.done`` lines do)."""
        ran: dict[int, list[str]] = {}
        for node in self.nodes.values():
            for worker in WORKERS[node.name]:
                path = node.log_dir / f"{worker}.log"
                for line in path.read_text(errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # not a structlog line (e.g. a library's own output)
                    if isinstance(record, dict) and record.get("event") in (
                        "task.done",
                        "task.failed",
                    ):
                        ran.setdefault(int(record["task_id"]), []).append(worker)
        return ran

    def backend_joined(self, node: Node) -> bool:
        """Whether the node's router auth and bridge hold their health keys (they do only
        while joined to their router, and the bridge while subscribed to Redis)."""
        client = node.supervisor.redis_client()
        try:
            return all(
                client.exists(health_key(name, instance_id(node.child(name).proc.pid)))
                for name in ("router-auth", "bridge")
            )
        finally:
            client.close()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Crossbar forks its router worker), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name in parentheses may hold spaces: the ppid follows the last ')'.
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def _create_database(server_url: str) -> tuple[str, str]:
    """A fresh database on the test PostgreSQL server; returns (SQLAlchemy URL, name)."""
    name = f"herald_cluster_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}", name


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _start_nodes(nodes: list[Node]) -> None:
    """Each node's router first, then its auth (browsers are refused until it is
    registered) and bridge, then the web processes and workers; each polled until ready.

    Every stage is spawned on all nodes before any is waited for, so the nodes start side
    by side (most of the wait is Python imports). All from this thread: children die
    with the thread that spawned them (PR_SET_PDEATHSIG), so no worker threads.
    """
    routers = []
    for node in nodes:
        node_dir = node.settings.var_dir / "crossbar"
        render_config(node.settings, node_dir)
        command, env = crossbar_command(node_dir), crossbar_env(node.settings)
        routers.append((node, node.supervisor.spawn("router", command, env)))
    for node, child in routers:
        node.supervisor.wait_ready(
            child, functools.partial(router_ready, node.settings), timeout=START_TIMEOUT
        )
    # (child name, herald process) per node and stage; workers named one by one so
    # each keeps its own log (which tasks it ran).
    stages: list[Callable[[Node], list[tuple[str, str]]]] = [
        lambda _node: [("router-auth", "router-auth"), ("bridge", "bridge")],
        lambda node: [("web", "web"), *((name, "worker") for name in WORKERS[node.name])],
    ]
    for stage in stages:
        started = []
        for node in nodes:
            for name, process in stage(node):
                args = ("--concurrency", WORKER_CONCURRENCY) if process == "worker" else ()
                started.append((node, process, node.supervisor.herald(name, process, *args)))
        for node, process, child in started:
            check = node.supervisor.health_check(process, child)
            node.supervisor.wait_ready(child, check, timeout=START_TIMEOUT)


def start_cluster(root: Path, postgres_url: str) -> Iterator[Cluster]:
    """Start Redis, a fresh PostgreSQL database (migrated, demo data loaded) and both
    nodes; yield the running cluster; stop every process and drop the database after."""
    redis_server = RedisServer(root / "redis")
    redis_server.start()
    database_url, database_name = asyncio.run(_create_database(postgres_url))
    ports = {
        name: {
            "HERALD_WEB_PORT": str(free_port()),
            "HERALD_ROUTER_PORT": str(free_port()),
            "HERALD_ROUTER_BACKEND_PORT": str(free_port()),
        }
        for name in NODE_NAMES
    }
    web_ports = [p["HERALD_WEB_PORT"] for p in ports.values()]
    shared = stack_env(
        root / "shared",
        redis_server.url,
        database_url,
        # Every node's URL, in the same order for every web: the page spreads over them.
        HERALD_ROUTER_PUBLIC_URL=",".join(
            f"ws://127.0.0.1:{p['HERALD_ROUTER_PORT']}/ws" for p in ports.values()
        ),
        # Pages of either web may join either router.
        HERALD_ALLOWED_ORIGINS=",".join(
            f"http://{host}:{port}" for port in web_ports for host in ("127.0.0.1", "localhost")
        ),
    )
    base_env = {**os.environ, **shared}
    for command in ("migrate", "demo-data"):
        subprocess.run(
            [sys.executable, "-m", "herald", command],
            env=base_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    nodes: dict[str, Node] = {}
    for name in NODE_NAMES:
        env = {**base_env, **ports[name]}
        # The node's own var dir holds its Crossbar node dir (config and key files); its
        # children keep the shared var dir, where uploads and task outputs live.
        settings = Settings.from_env({**env, "HERALD_VAR_DIR": str(root / f"node-{name}")})
        log_dir = root / "logs" / name
        nodes[name] = Node(name, settings, Supervisor(settings, env, log_dir=log_dir), log_dir)
    cluster = Cluster(root, nodes, redis_server.url, database_url)
    try:
        try:
            _start_nodes(list(nodes.values()))
        except Exception as exc:
            raise RuntimeError(f"the cluster did not start: {exc}\n{cluster.logs()}") from exc
        yield cluster
    finally:
        for node in nodes.values():
            node.supervisor.stop_all()
        redis_server.stop()
        asyncio.run(_drop_database(postgres_url, database_name))
