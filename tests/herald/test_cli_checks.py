"""``herald <process> --check``, what every container's health check runs, against the
real stack (Crossbar, router auth, bridge, web, worker, scheduler, Redis, SQLite):
exit 0 while the process serves, 1 with the reason once it does not."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from herald.health import (
    health_key,
    healthy_on_this_host,
    host_index_key,
    instance_id,
    keep_health,
)
from tests.stack import Stack, start_stack
from tests.support import eventually, free_port, wait_until

PROCESSES = ("web", "router", "router-auth", "bridge", "worker", "scheduler")
# Started as tests/stack.py starts them, so a test can put back what it stopped.
SERVICE_ARGS = {"worker": ("--concurrency", "4")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from start_stack(tmp_path_factory.mktemp("checks"))


def check(stack: Stack, process: str) -> subprocess.CompletedProcess[str]:
    """``herald <process> --check`` in the stack's environment, as a container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "herald", process, "--check"],
        env=dict(stack.supervisor.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fails(stack: Stack, process: str) -> bool:
    return check(stack, process).returncode == 1


def assert_all_healthy(stack: Stack) -> None:
    for process in PROCESSES:
        result = check(stack, process)
        assert (result.returncode, result.stdout) == (0, "healthy\n"), (process, result.stderr)


def test_every_check_passes_while_the_stack_serves(stack: Stack) -> None:
    assert_all_healthy(stack)


def test_router_down_fails_the_router_its_backend_and_web(stack: Stack) -> None:
    """Without Crossbar: the router's ports refuse, router auth and the bridge drop
    their health keys, web's /healthz names the router; worker and scheduler, which
    do not need the router, stay healthy. All pass again once the router is back."""
    stack.stop_router()
    try:
        router = check(stack, "router")
        assert router.returncode == 1 and "router not accepting" in router.stderr
        for process in ("router-auth", "bridge"):
            wait_until(lambda p=process: fails(stack, p), timeout=30, what=f"{process} unhealthy")
            assert f"no healthy {process} on this host" in check(stack, process).stderr
        web = check(stack, "web")
        assert web.returncode == 1 and "HTTP 503, failing: router" in web.stderr
        for process in ("worker", "scheduler"):
            assert check(stack, process).returncode == 0, process
    finally:
        stack.ensure_router()
    assert_all_healthy(stack)


@pytest.mark.parametrize("process", ["web", "worker", "scheduler", "bridge", "router-auth"])
def test_a_stopped_process_fails_its_check(stack: Stack, process: str) -> None:
    """SIGTERM the process: its check fails (web: no answer; the rest: no health key,
    which each deletes as it stops); started again, it passes."""
    (child,) = [c for c in stack.supervisor.children if c.name == process]
    child.proc.terminate()
    child.proc.wait(30)
    stack.supervisor.children.remove(child)
    try:
        result = check(stack, process)
        assert result.returncode == 1, result.stdout
        expected = "web does not answer" if process == "web" else f"no healthy {process}"
        assert expected in result.stderr
    finally:
        stack.supervisor.start_service(process, *SERVICE_ARGS.get(process, ()))
    assert check(stack, process).returncode == 0


def test_no_redis_fails_the_health_key_checks(stack: Stack) -> None:
    """A Redis that cannot be reached (nothing listens on a free port) is a failed
    check with its reason, not a traceback."""
    env = {**stack.supervisor.env, "HERALD_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for process in ("worker", "bridge", "router-auth"):
        result = subprocess.run(
            [sys.executable, "-m", "herald", process, "--check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, process
        assert "cannot read health keys from Redis: ConnectionError" in result.stderr


# --- the host index the checks read (herald/health.py) --------------------------------


async def test_the_host_index_names_live_instances_only(redis: Redis) -> None:
    """keep_health lists its instance in the host's index while it runs and prunes
    entries that lapsed; an entry whose key is gone (a crash, a flush) counts for
    nothing; another host's instance does not count here; stop removes both."""
    index = host_index_key("probe", socket.gethostname())
    await redis.zadd(index, {"crashed:1": time.time() - 1})
    stop = asyncio.Event()
    here = asyncio.create_task(keep_health(redis, "probe", instance_id(), stop))
    elsewhere = asyncio.create_task(keep_health(redis, "probe", "other-host:7", stop))
    try:
        await eventually(
            lambda: healthy_on_this_host(redis, "probe"), timeout=10, what="the probe indexed"
        )
        assert await redis.zscore(index, "crashed:1") is None
        await redis.delete(health_key("probe", instance_id()))  # as if its key lapsed
        assert not await healthy_on_this_host(redis, "probe")
        assert await redis.exists(health_key("probe", "other-host:7"))
    finally:
        stop.set()
        await asyncio.gather(here, elsewhere)
    assert not await redis.exists(index, host_index_key("probe", "other-host"))
    assert not await healthy_on_this_host(redis, "probe")
