"""Herald's settings: one frozen dataclass built once from ``HERALD_*`` variables.

Nothing else in Herald reads ``os.environ``; every process calls
:meth:`Settings.from_env` at start-up and passes the result down.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = ["Settings", "SettingsError"]

T = TypeVar("T")

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A ``HERALD_*`` variable holds a value Herald cannot use."""


def _int(name: str, raw: str, *, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise SettingsError(f"{name}={value} is out of range ({bounds})")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise SettingsError(f"{name}={raw!r} must use one of the schemes {', '.join(schemes)}")
    return raw


def _timezone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not a time zone (e.g. Europe/London)") from None
    return raw


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} must be one of {', '.join(_TRUE + _FALSE)}")


MIN_SECRET_DISTINCT_CHARS = 10
MIN_SECRET_LENGTH = 16


def _webhook_secret(url: str | None, secret: str | None) -> str | None:
    """The admin webhook's signing secret: required, long and random once its URL is set."""
    if url is None:
        return secret
    # The receiver trusts a record only through its signature, so a guessable key
    # would let anyone post grades and submissions to the admin system.
    if (
        not secret
        or len(secret) < MIN_SECRET_LENGTH
        or len(set(secret)) < MIN_SECRET_DISTINCT_CHARS
    ):
        raise SettingsError(
            "HERALD_ADMIN_WEBHOOK_SECRET must be set to a random string of at least "
            f"{MIN_SECRET_LENGTH} characters when HERALD_ADMIN_WEBHOOK_URL is set "
            "(the admin system verifies each POST with it; e.g. `openssl rand -base64 32`)"
        )
    return secret


@dataclass(frozen=True)
class Settings:
    """Every knob of Herald, with the embedded defaults of DESIGN.md."""

    var_dir: Path
    database_url: str
    redis_url: str
    redis_is_private: bool
    files_dir: Path
    backend_secret: str | None
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    router_host: str = "127.0.0.1"
    router_port: int = 8080
    backend_port: int = 8081
    # Where browsers join the router: one URL per router node, the page starts at a
    # random one and moves to the next when it cannot connect or loses its connection.
    router_public_urls: tuple[str, ...] = ("ws://127.0.0.1:8080/ws",)
    allowed_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 25 * 1024 * 1024
    ticket_ttl_seconds: int = 60
    session_ttl_seconds: int = 8 * 3600
    # Behind a TLS-terminating reverse proxy: believe its X-Forwarded-Proto and
    # (rightmost) X-Forwarded-For. Off, anyone could claim any address or https.
    trust_proxy: bool = False
    # Failed sign-ins allowed per username and per client address within the
    # window; once reached, sign-in is refused (429) until the window ends. 0: no limit.
    login_account_limit: int = 5
    login_address_limit: int = 25
    login_window_seconds: int = 15 * 60
    demo_password: str = "demo"  # noqa: S105 - DESIGN.md's documented demo password
    clamd_url: str | None = None
    plagiarism_url: str | None = None
    admin_webhook_url: str | None = None
    # HMAC-SHA256 key that signs every POST to the admin webhook; required with its URL.
    # Kept out of repr so a logged Settings never shows it.
    admin_webhook_secret: str | None = field(default=None, repr=False)
    smtp_url: str | None = None
    worker_concurrency: int = 4
    # The zone queue windows ("Mon-Fri 18:00-08:00") and schedules are read in.
    timezone: str = "UTC"
    # Task outputs (reports, exports, import error reports) are kept this many days,
    # then purged by a scheduled job; the task then says so instead of a broken link.
    output_retention_days: int = 14
    # A TOML file of recurring jobs (docs/operations.md); None: the built-in schedule.
    schedule_file: Path | None = None
    # Addresses (comma-separated in the variable) emailed when a task fails for good
    # or a queue's backlog ages past backlog_alert_seconds; empty: live alerts only.
    alert_emails: tuple[str, ...] = ()
    # A queue whose oldest ready job has waited longer than this raises an alert; 0: never.
    backlog_alert_seconds: int = 600
    # A scrape of /metrics must send it as a bearer token; None: loopback scrapes only.
    metrics_token: str | None = field(default=None, repr=False)
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def router_public_url(self) -> str:
        """The first router URL: this node's own, for clients that know only one."""
        return self.router_public_urls[0]

    @property
    def backend_url(self) -> str:
        """Where backend components (router auth, bridge) join Crossbar: loopback rawsocket."""
        return f"rs://127.0.0.1:{self.backend_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def redis_socket(self) -> Path:
        """The unix socket of the private redis-server ``herald up`` starts."""
        return self.var_dir / "redis" / "redis.sock"

    def require_backend_secret(self) -> str:
        """The Crossbar backend secret; backend processes refuse to start without one."""
        secret = self.backend_secret
        # Herald ships no default secret; a placeholder someone typed ("changeme-changeme",
        # "xxxxxxxxxxxxxxxx") is refused by its few distinct characters.
        if not secret or len(secret) < 16 or len(set(secret)) < MIN_SECRET_DISTINCT_CHARS:
            raise SettingsError(
                "HERALD_BACKEND_SECRET must be set to a random string of at least 16 characters "
                "(`herald up` generates one in var/backend.secret; "
                "elsewhere use e.g. `openssl rand -base64 32`)"
            )
        return secret

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``HERALD_*`` variables; raise :class:`SettingsError` on bad input."""
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: T, convert: Callable[[str, str], T]) -> T:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            return convert(name, raw)

        var_dir = Path(env.get("HERALD_VAR_DIR") or "var").resolve()
        files_dir = Path(env.get("HERALD_FILES_DIR") or var_dir / "files").resolve()
        database_url = get(
            "HERALD_DATABASE_URL",
            f"sqlite+aiosqlite:///{var_dir / 'herald.db'}",
            lambda n, v: _url(n, v, ("sqlite+aiosqlite", "postgresql+asyncpg")),
        )
        private_redis_url = f"unix://{var_dir / 'redis' / 'redis.sock'}"
        redis_url = get(
            "HERALD_REDIS_URL",
            private_redis_url,
            lambda n, v: _url(n, v, ("redis", "rediss", "unix")),
        )
        web_host = env.get("HERALD_WEB_HOST") or "127.0.0.1"
        web_port = get("HERALD_WEB_PORT", 8000, lambda n, v: _int(n, v, low=1, high=65535))
        router_host = env.get("HERALD_ROUTER_HOST") or "127.0.0.1"
        router_port = get("HERALD_ROUTER_PORT", 8080, lambda n, v: _int(n, v, low=1, high=65535))
        backend_port = get(
            "HERALD_ROUTER_BACKEND_PORT", 8081, lambda n, v: _int(n, v, low=1, high=65535)
        )
        default_public_urls: tuple[str, ...] = (f"ws://{router_host}:{router_port}/ws",)
        public_urls = get("HERALD_ROUTER_PUBLIC_URL", default_public_urls, _router_urls)
        admin_webhook_url = get(
            "HERALD_ADMIN_WEBHOOK_URL", None, lambda n, v: _url(n, v, ("http", "https"))
        )
        default_origins = (f"http://127.0.0.1:{web_port}", f"http://localhost:{web_port}")
        origins_raw = env.get("HERALD_ALLOWED_ORIGINS")
        origins = (
            tuple(o.strip() for o in origins_raw.split(",") if o.strip())
            if origins_raw
            else default_origins
        )
        return cls(
            var_dir=var_dir,
            database_url=database_url,
            redis_url=redis_url,
            redis_is_private=redis_url == private_redis_url,
            files_dir=files_dir,
            backend_secret=env.get("HERALD_BACKEND_SECRET") or None,
            web_host=web_host,
            web_port=web_port,
            router_host=router_host,
            router_port=router_port,
            backend_port=backend_port,
            router_public_urls=public_urls,
            allowed_origins=origins,
            max_upload_bytes=get(
                "HERALD_MAX_UPLOAD_BYTES", 25 * 1024 * 1024, lambda n, v: _int(n, v, low=1)
            ),
            ticket_ttl_seconds=get(
                "HERALD_TICKET_TTL", 60, lambda n, v: _int(n, v, low=1, high=3600)
            ),
            session_ttl_seconds=get(
                "HERALD_SESSION_TTL", 8 * 3600, lambda n, v: _int(n, v, low=60)
            ),
            trust_proxy=get("HERALD_TRUST_PROXY", False, _bool),
            login_account_limit=get(
                "HERALD_LOGIN_ACCOUNT_LIMIT", 5, lambda n, v: _int(n, v, low=0, high=10_000)
            ),
            login_address_limit=get(
                "HERALD_LOGIN_ADDRESS_LIMIT", 25, lambda n, v: _int(n, v, low=0, high=1_000_000)
            ),
            login_window_seconds=get(
                "HERALD_LOGIN_WINDOW", 15 * 60, lambda n, v: _int(n, v, low=1, high=7 * 86400)
            ),
            demo_password=env.get("HERALD_DEMO_PASSWORD") or "demo",
            clamd_url=get("HERALD_CLAMD_URL", None, lambda n, v: _url(n, v, ("tcp",))),
            plagiarism_url=get(
                "HERALD_PLAGIARISM_URL", None, lambda n, v: _url(n, v, ("http", "https"))
            ),
            admin_webhook_url=admin_webhook_url,
            admin_webhook_secret=_webhook_secret(
                admin_webhook_url, env.get("HERALD_ADMIN_WEBHOOK_SECRET") or None
            ),
            smtp_url=get("HERALD_SMTP_URL", None, lambda n, v: _url(n, v, ("smtp", "smtps"))),
            worker_concurrency=get(
                "HERALD_WORKER_CONCURRENCY", 4, lambda n, v: _int(n, v, low=1, high=1000)
            ),
            timezone=get("HERALD_TIMEZONE", "UTC", _timezone),
            output_retention_days=get(
                "HERALD_OUTPUT_RETENTION_DAYS", 14, lambda n, v: _int(n, v, low=1, high=3650)
            ),
            schedule_file=get("HERALD_SCHEDULE_FILE", None, lambda n, v: Path(v).resolve()),
            alert_emails=tuple(
                a.strip() for a in (env.get("HERALD_ALERT_EMAILS") or "").split(",") if a.strip()
            ),
            backlog_alert_seconds=get(
                "HERALD_BACKLOG_ALERT_SECONDS", 600, lambda n, v: _int(n, v, low=0, high=7 * 86400)
            ),
            log_format=get("HERALD_LOG_FORMAT", "auto", lambda n, v: _choice(n, v, LOG_FORMATS)),
            log_level=get(
                "HERALD_LOG_LEVEL", "info", lambda n, v: _choice(n, v.lower(), LOG_LEVELS)
            ),
            metrics_token=get("HERALD_METRICS_TOKEN", None, _metrics_token),
        )


def _router_urls(name: str, raw: str) -> tuple[str, ...]:
    """One router URL, or several (comma-separated) for a cluster of router nodes."""
    urls = tuple(dict.fromkeys(u.strip() for u in raw.split(",") if u.strip()))
    if not urls:
        raise SettingsError(f"{name}={raw!r} names no router URL")
    for url in urls:
        _url(name, url, ("ws", "wss"))
        if not urlsplit(url).hostname:
            raise SettingsError(f"{name}={raw!r}: {url!r} names no host")
    return urls


def _metrics_token(name: str, raw: str) -> str:
    # /metrics tells whoever holds the token how busy the site is: not a guessable word.
    if len(raw) < MIN_SECRET_LENGTH or len(set(raw)) < MIN_SECRET_DISTINCT_CHARS:
        raise SettingsError(
            f"{name} must be a random string of at least {MIN_SECRET_LENGTH} characters "
            "(e.g. `openssl rand -base64 32`)"
        )
    return raw
