"""The submission receipt email: built here, delivered by SMTP or written to ``var/outbox``.

With ``HERALD_SMTP_URL`` (``smtp://[user:pass@]host[:port]``, STARTTLS whenever the
server offers it; ``smtps://`` for TLS from the first byte) the message goes to that
server through the stdlib ``smtplib`` in a thread. Without it, the embedded default
of DESIGN.md: one ``var/outbox/<key>.eml`` per key, written atomically.

Every message carries a Message-ID made from the caller's key, so a re-run is
recognisable: the outbox keeps the first file for a key, and mail systems that
de-duplicate by Message-ID drop a second SMTP copy. SMTP delivery itself is
at-least-once: a crash between the server's "250" and the caller recording it
sends again on the re-run.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from herald.durable import write_atomically
from herald.settings import Settings

__all__ = [
    "DEFAULT_SENDER",
    "Delivery",
    "MailError",
    "MailPermanentError",
    "MailRetryableError",
    "Mailer",
    "build_grade_notice",
    "build_receipt",
    "grade_notice_key",
    "receipt_key",
]

# No setting names the sender yet; "localhost" keeps the placeholder obviously local.
# A production relay will likely want a real domain here (see the module report).
DEFAULT_SENDER = Address("Herald", "herald", "localhost")
SMTP_TIMEOUT = 30.0
# Keys become file names and Message-IDs: nothing that needs quoting in either.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SPACES = re.compile(r"\s+")


class MailError(Exception):
    """The message was not delivered; ``retryable`` says whether trying later may help."""

    retryable = False


class MailRetryableError(MailError):
    """A connection failure, timeout or temporary (4xx) refusal: try again later."""

    retryable = True


class MailPermanentError(MailError):
    """A permanent (5xx) refusal, an unusable address or configuration: retrying won't help."""


@dataclass(frozen=True)
class Delivery:
    """What :meth:`Mailer.send` did with a message."""

    key: str
    message_id: str
    via: str  # "smtp" or "outbox"
    path: Path | None = None  # the .eml file, for the outbox
    duplicate: bool = False  # the outbox already held this key's message; nothing written


def receipt_key(submission_id: int) -> str:
    """The key of a submission's receipt: one receipt per submission, however many runs."""
    return f"submission-{submission_id}.receipt"


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"mail key {key!r} must match {_KEY.pattern}")
    return key


def _one_line(value: str, limit: int = 200) -> str:
    """``value`` with every line break and control character made a space, and shortened.

    User strings (file names, titles) reach headers and body lines; on one line they
    cannot add a header or fake a paragraph of the receipt.
    """
    cleaned = "".join(
        " "
        if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
        else ch
        for ch in value
    )
    cleaned = _SPACES.sub(" ", cleaned).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024:
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _recipient(to_address: str, to_name: str) -> Address:
    try:
        return Address(_one_line(to_name, 100), addr_spec=to_address.strip())
    except (ValueError, IndexError) as exc:
        # email's parser raises ValueError subclasses (and, on some input, IndexError).
        raise MailPermanentError(f"{to_address!r} is not a usable email address ({exc})") from None


def _automatic_message(
    *, key: str, recipient: Address, subject: str, body: str, sender: Address, now: datetime | None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = f"<{key}@{sender.domain}>"
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def build_receipt(
    *,
    key: str,
    to_address: str,
    to_name: str,
    assignment_title: str,
    filename: str,
    size: int,
    sha256: str,
    received_at: datetime,
    link: str,
    course: str | None = None,
    sender: Address = DEFAULT_SENDER,
    now: datetime | None = None,
) -> EmailMessage:
    """A plain-text receipt for one submission, addressed to the student.

    ``link`` is put in the body as given (a full URL, or a path such as
    ``/submissions/420`` while Herald has no public base URL setting). The
    Message-ID is ``<key@sender-domain>``. Raises :class:`MailPermanentError` for an
    address that cannot be mailed, :class:`ValueError` for a bad key or a naive time.
    """
    _check_key(key)
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    recipient = _recipient(to_address, to_name)
    title = _one_line(assignment_title, 150)
    name = _one_line(to_name, 100) or "there"
    where = f" ({_one_line(course, 100)})" if course else ""
    received = received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    size_line = _size_text(size) if size < 1024 else f"{_size_text(size)} ({size:,} bytes)"
    return _automatic_message(
        key=key,
        recipient=recipient,
        subject=f"Submission received: {title}",
        sender=sender,
        now=now,
        body=(
            f"Hello {name},\n"
            "\n"
            f'This is your receipt for a submission to "{title}"{where}.\n'
            "\n"
            f"File:      {_one_line(filename)}\n"
            f"Size:      {size_line}\n"
            f"SHA-256:   {_one_line(sha256, 64)}\n"
            f"Received:  {received}\n"
            "\n"
            "Follow its progress, and see your grade once it is released, at:\n"
            f"{_one_line(link, 500)}\n"
            "\n"
            "The SHA-256 fingerprint identifies exactly the file Herald received.\n"
            "Keep this email as your proof of submission.\n"
            "\n"
            "-- \n"
            "Herald\n"
        ),
    )


def grade_notice_key(submission_id: int) -> str:
    """The key of a submission's grade notice: one per submission, however many runs."""
    return f"submission-{submission_id}.grade"


def build_grade_notice(
    *,
    key: str,
    to_address: str,
    to_name: str,
    assignment_title: str,
    link: str,
    course: str | None = None,
    sender: Address = DEFAULT_SENDER,
    now: datetime | None = None,
) -> EmailMessage:
    """Tells the student their grade is out. The grade itself stays on the page, behind
    the sign-in: mail is read on shared screens and forwarded."""
    _check_key(key)
    recipient = _recipient(to_address, to_name)
    title = _one_line(assignment_title, 150)
    name = _one_line(to_name, 100) or "there"
    where = f" ({_one_line(course, 100)})" if course else ""
    return _automatic_message(
        key=key,
        recipient=recipient,
        subject=f"Your grade is out: {title}",
        sender=sender,
        now=now,
        body=(
            f"Hello {name},\n"
            "\n"
            f'Your grade for "{title}"{where} has been released.\n'
            "\n"
            "Sign in to see it at:\n"
            f"{_one_line(link, 500)}\n"
            "\n"
            "-- \n"
            "Herald\n"
        ),
    )


@dataclass(frozen=True)
class _SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None = field(repr=False)

    @classmethod
    def parse(cls, url: str) -> _SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("HERALD_SMTP_URL must look like smtp[s]://[user:password@]host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("HERALD_SMTP_URL has an invalid port") from None
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


def _classify(exc: BaseException) -> MailError:
    """SMTP/connection failures as retryable or permanent, by their reply code."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{addr}: {code} {reply.decode('utf-8', 'replace')}"
            for addr, (code, reply) in exc.recipients.items()
        )
        if codes and all(400 <= code < 500 for code in codes):
            return MailRetryableError(f"recipient temporarily refused ({detail})")
        return MailPermanentError(f"recipient refused ({detail})")
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else exc.smtp_error
        )
        text = f"SMTP server answered {exc.smtp_code} {reply}"
        if 400 <= exc.smtp_code < 500:
            return MailRetryableError(text)
        return MailPermanentError(text)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailPermanentError(f"SMTP server lacks a needed extension ({exc})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A configuration matter (wrong host name, private CA); retrying will not fix it.
        return MailPermanentError(
            f"SMTP server's TLS certificate was not accepted ({exc.verify_message})"
        )
    # Refused or reset connections, timeouts, DNS failures, disconnects, other TLS errors.
    return MailRetryableError(f"SMTP server unreachable ({type(exc).__name__}: {exc})")


@functools.cache
def default_tls_context() -> ssl.SSLContext:
    """The system's verifying TLS context, made once per process: building one loads
    the whole CA bundle (tens of milliseconds of CPU), and each email built its own
    on the event loop, which under a deadline spike stalled the worker's heartbeats
    long enough to lose leases (bench/deadline_spike.py). A context is safe to share
    between connections and threads."""
    return ssl.create_default_context()


def _loopback(client: smtplib.SMTP) -> bool:
    sock = client.sock
    if sock is None:
        return False
    return ipaddress.ip_address(sock.getpeername()[0].split("%")[0]).is_loopback


def _smtp_deliver(
    server: _SmtpServer, message: EmailMessage, context: ssl.SSLContext, timeout: float
) -> None:
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with client:
        client.ehlo()
        encrypted = server.implicit_tls
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            encrypted = True
        if server.username is not None:
            # Never put the password on the wire in clear, except to this machine.
            if not encrypted and not _loopback(client):
                raise MailPermanentError(
                    f"{server.host} offers no STARTTLS; refusing to send the SMTP password "
                    "unencrypted (use smtps:// or a server with STARTTLS)"
                )
            client.login(server.username, server.password or "")
        refused = client.send_message(message)
    if refused:  # some recipients refused, others accepted
        raise _classify(smtplib.SMTPRecipientsRefused(refused))


def _write_outbox(folder: Path, key: str, data: bytes) -> tuple[Path, bool]:
    """``folder/<key>.eml`` written atomically; an existing file for the key is kept."""
    path = folder / f"{key}.eml"
    if path.exists():
        return path, True
    write_atomically(path, lambda out: out.write(data))
    return path, False


class Mailer:
    """Delivers messages by SMTP when ``settings.smtp_url`` is set, else to ``var/outbox``.

    ``tls_context`` overrides the system trust store (a private CA); ``timeout``
    bounds each network operation with the SMTP server.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = SMTP_TIMEOUT,
    ) -> None:
        self._smtp = _SmtpServer.parse(settings.smtp_url) if settings.smtp_url else None
        self._outbox = settings.var_dir / "outbox"
        self._tls_context = tls_context
        self._timeout = timeout

    @property
    def via(self) -> str:
        return "smtp" if self._smtp else "outbox"

    async def send(self, message: EmailMessage, key: str) -> Delivery:
        """Deliver ``message`` under ``key``; raise :class:`MailError` if it was not."""
        _check_key(key)
        message_id = str(message.get("Message-ID", ""))
        if self._smtp is None:
            data = message.as_bytes()
            path, duplicate = await asyncio.to_thread(_write_outbox, self._outbox, key, data)
            return Delivery(key, message_id, "outbox", path, duplicate)
        context = self._tls_context or default_tls_context()
        try:
            await asyncio.to_thread(_smtp_deliver, self._smtp, message, context, self._timeout)
        except MailError:
            raise
        except (smtplib.SMTPException, OSError) as exc:  # SMTPException is an OSError too
            raise _classify(exc) from exc
        return Delivery(key, message_id, "smtp")
