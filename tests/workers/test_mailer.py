"""The receipt email against a real SMTP server (aiosmtpd, in this process) and the outbox."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from herald.settings import Settings
from tests.outside_world import SmtpServer
from tests.support import free_port
from workers.mailer import (
    DEFAULT_SENDER,
    Mailer,
    MailPermanentError,
    MailRetryableError,
    build_receipt,
    default_tls_context,
    receipt_key,
)

RECEIVED = dt.datetime(2026, 11, 22, 10, 0, 0, tzinfo=dt.UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _receipt(key: str = "submission-420.receipt", **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "key": key,
        "to_address": "alice@example.org",
        "to_name": "Alice Liddell",
        "assignment_title": "Essay 1: Wonderland",
        "course": "DEMO101",
        "filename": "essay.pdf",
        "size": 1_234_567,
        "sha256": SHA,
        "received_at": RECEIVED,
        "link": "http://herald.example.org/submissions/420",
    }
    fields.update(overrides)
    return build_receipt(**fields)


def _settings(tmp_path: Path, smtp_url: str | None = None) -> Settings:
    env = {"HERALD_VAR_DIR": str(tmp_path / "var")}
    if smtp_url:
        env["HERALD_SMTP_URL"] = smtp_url
    return Settings.from_env(env)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def _authenticator(user: str, password: str):  # type: ignore[no-untyped-def]
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


def _client_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


# --- The message ----------------------------------------------------------------------


def test_receipt_names_the_submission_and_has_a_stable_message_id() -> None:
    """Headers and body carry the assignment, file, size, SHA-256, time and link."""
    message = _receipt()

    assert message["From"] == "Herald <herald@localhost>"
    assert message["To"] == "Alice Liddell <alice@example.org>"
    assert message["Subject"] == "Submission received: Essay 1: Wonderland"
    assert message["Message-ID"] == "<submission-420.receipt@localhost>"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    for expected in (
        "Hello Alice Liddell,",
        '"Essay 1: Wonderland" (DEMO101)',
        "File:      essay.pdf",
        "Size:      1.2 MB (1,234,567 bytes)",
        f"SHA-256:   {SHA}",
        "Received:  2026-11-22 10:00:00 UTC",
        "http://herald.example.org/submissions/420",
    ):
        assert expected in body
    assert _receipt()["Message-ID"] == message["Message-ID"]
    assert receipt_key(420) == "submission-420.receipt"


def test_received_time_is_shown_in_utc() -> None:
    """A time in another zone is converted, not printed with the wrong label."""
    local = RECEIVED.astimezone(dt.timezone(dt.timedelta(hours=-5)))

    assert "Received:  2026-11-22 10:00:00 UTC" in _receipt(received_at=local).get_content()


@pytest.mark.parametrize(
    "field_name",
    ["assignment_title", "filename", "to_name", "course", "link", "sha256"],
)
def test_hostile_strings_cannot_inject_headers_or_body_lines(field_name: str) -> None:
    """CR, LF, Unicode line separators and controls in user strings end up as spaces."""
    hostile = "Essay\r\nBcc: victim@example.com\n\nPay here\u2028X-Evil: 1\x00\x85end"
    message = _receipt(**{field_name: hostile})

    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert [name.lower() for name in parsed] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    ]
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_content()
    assert "\nBcc:" not in body and "\nPay here" not in body
    assert "Essay Bcc: victim@example.com Pay here X-Evil: 1 end" in str(parsed["Subject"]) + body


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org\r\nBcc: victim@example.com",
        "a@b.org, victim@example.com",
        "no-at-sign",
        "",
    ],
)
def test_unusable_address_is_a_permanent_error(address: str) -> None:
    """An address that is not exactly one mailbox is refused before anything is sent."""
    with pytest.raises(MailPermanentError, match="not a usable email address"):
        _receipt(to_address=address)


def test_keys_that_could_escape_the_outbox_are_refused() -> None:
    """A key is a plain name: no path separators, no Message-ID syntax."""
    for key in ("../etc/passwd", "a/b", "x@y", "<id>", "", ".hidden"):
        with pytest.raises(ValueError, match="mail key"):
            _receipt(key=key)


def test_naive_received_time_is_refused() -> None:
    """A time without a zone cannot be printed as UTC honestly."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _receipt(received_at=RECEIVED.replace(tzinfo=None))


# --- The outbox (no HERALD_SMTP_URL) ----------------------------------------------------


async def test_outbox_writes_one_parseable_eml_per_key(tmp_path: Path) -> None:
    """Without SMTP, the message becomes var/outbox/<key>.eml; a re-send adds nothing."""
    mailer = Mailer(_settings(tmp_path))
    outbox = tmp_path / "var" / "outbox"

    first = await mailer.send(_receipt(), "submission-420.receipt")
    again = await mailer.send(_receipt(filename="changed.pdf"), "submission-420.receipt")
    other = await mailer.send(_receipt("submission-421.receipt"), "submission-421.receipt")

    assert mailer.via == "outbox"
    assert first.via == "outbox" and not first.duplicate
    assert first.path == outbox / "submission-420.receipt.eml"
    assert again.duplicate and again.path == first.path
    assert not other.duplicate
    assert sorted(p.name for p in outbox.iterdir()) == [
        "submission-420.receipt.eml",
        "submission-421.receipt.eml",
    ]
    parsed = email.message_from_bytes(first.path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Message-ID"] == first.message_id == "<submission-420.receipt@localhost>"
    assert parsed["To"] == "Alice Liddell <alice@example.org>"
    assert "File:      essay.pdf" in parsed.get_content()  # the first send's file was kept


async def test_outbox_refuses_a_key_that_is_a_path(tmp_path: Path) -> None:
    """send() checks the key too: it names the file."""
    with pytest.raises(ValueError, match="mail key"):
        await Mailer(_settings(tmp_path)).send(_receipt(), "../escape")
    assert not (tmp_path / "escape.eml").exists()


# --- SMTP ---------------------------------------------------------------------------------


async def test_smtp_delivers_the_receipt(tmp_path: Path, smtp: SmtpServer) -> None:
    """The message reaches a real SMTP server with its headers, body and envelope."""
    mailer = Mailer(_settings(tmp_path, f"smtp://127.0.0.1:{smtp.port}"))

    delivery = await mailer.send(_receipt(), "submission-420.receipt")

    assert delivery.via == "smtp" and delivery.message_id == "<submission-420.receipt@localhost>"
    [(session, envelope)] = smtp.handler.messages
    assert envelope.mail_from == "herald@localhost"
    assert envelope.rcpt_tos == ["alice@example.org"]
    received = smtp.handler.parsed()
    assert received["Subject"] == "Submission received: Essay 1: Wonderland"
    assert received["Message-ID"] == "<submission-420.receipt@localhost>"
    assert f"SHA-256:   {SHA}" in received.get_content()
    assert not (tmp_path / "var" / "outbox").exists()
    assert session.ssl is None  # this server offered no STARTTLS


# aiosmtpd warns about AUTH without TLS; these tests set that up on purpose.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_auth_with_percent_encoded_password(tmp_path: Path) -> None:
    """user:password from the URL (percent-decoded) authenticate; a wrong one is permanent."""
    password = "p@ss:w/rd%"
    options = {
        "auth_required": True,
        "auth_require_tls": False,  # loopback only; the TLS tests cover the encrypted path
        "authenticator": _authenticator("herald", password),
    }
    with SmtpServer(**options) as server:
        good = Mailer(
            _settings(tmp_path, f"smtp://herald:p%40ss%3Aw%2Frd%25@127.0.0.1:{server.port}")
        )
        await good.send(_receipt(), "submission-420.receipt")
        assert server.handler.messages[0][0].authenticated

        bad = Mailer(_settings(tmp_path, f"smtp://herald:wrong@127.0.0.1:{server.port}"))
        with pytest.raises(MailPermanentError, match="535"):
            await bad.send(_receipt(), "submission-420.receipt")

        anonymous = Mailer(_settings(tmp_path, f"smtp://127.0.0.1:{server.port}"))
        with pytest.raises(MailPermanentError, match="530"):
            await anonymous.send(_receipt(), "submission-420.receipt")
    assert len(server.handler.messages) == 1


async def test_refused_recipient_is_permanent(tmp_path: Path, smtp: SmtpServer) -> None:
    """A 550 for the recipient is a permanent error naming the reason."""
    smtp.handler.refuse["alice@example.org"] = "550 5.1.1 No such user"
    mailer = Mailer(_settings(tmp_path, f"smtp://127.0.0.1:{smtp.port}"))

    with pytest.raises(MailPermanentError, match="550") as caught:
        await mailer.send(_receipt(), "submission-420.receipt")

    assert not caught.value.retryable
    assert smtp.handler.messages == []


async def test_temporarily_refused_recipient_is_retryable(tmp_path: Path, smtp: SmtpServer) -> None:
    """A 451 (greylisting, full mailbox) is worth retrying."""
    smtp.handler.refuse["alice@example.org"] = "451 4.7.1 Greylisted, try again later"
    mailer = Mailer(_settings(tmp_path, f"smtp://127.0.0.1:{smtp.port}"))

    with pytest.raises(MailRetryableError, match="451") as caught:
        await mailer.send(_receipt(), "submission-420.receipt")

    assert caught.value.retryable


async def test_nothing_listening_is_retryable(tmp_path: Path) -> None:
    """A refused connection is a retryable error, not a crash."""
    mailer = Mailer(_settings(tmp_path, f"smtp://127.0.0.1:{free_port()}"))

    with pytest.raises(MailRetryableError, match="unreachable"):
        await mailer.send(_receipt(), "submission-420.receipt")


async def test_server_that_never_answers_times_out_as_retryable(tmp_path: Path) -> None:
    """A server that accepts but never greets is given up after the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mailer = Mailer(
            _settings(tmp_path, f"smtp://127.0.0.1:{silent.getsockname()[1]}"), timeout=0.5
        )

        with pytest.raises(MailRetryableError, match="unreachable"):
            await mailer.send(_receipt(), "submission-420.receipt")


async def test_starttls_is_used_when_offered(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    """smtp:// upgrades to TLS when the server offers it, then authenticates."""
    options = {
        "tls_context": _server_context(tls_files),
        "require_starttls": True,
        "auth_required": True,
        "authenticator": _authenticator("herald", "secret"),
    }
    with SmtpServer(**options) as server:
        url = f"smtp://herald:secret@127.0.0.1:{server.port}"
        mailer = Mailer(_settings(tmp_path, url), tls_context=_client_context(tls_files))

        await mailer.send(_receipt(), "submission-420.receipt")

        [(session, _)] = server.handler.messages
        assert session.ssl is not None and session.authenticated

        untrusting = Mailer(_settings(tmp_path, url))  # the system store lacks the test CA
        with pytest.raises(MailPermanentError, match="certificate"):
            await untrusting.send(_receipt(), "submission-420.receipt")


async def test_smtps_uses_tls_from_the_first_byte(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    """smtps:// speaks TLS at once (port 465 style)."""
    with SmtpServer(ssl_context=_server_context(tls_files)) as server:
        mailer = Mailer(
            _settings(tmp_path, f"smtps://127.0.0.1:{server.port}"),
            tls_context=_client_context(tls_files),
        )

        await mailer.send(_receipt(), "submission-420.receipt")

    assert server.handler.parsed()["Message-ID"] == "<submission-420.receipt@localhost>"


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks a route, sends nothing
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


# aiosmtpd warns about AUTH without TLS; these tests set that up on purpose.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_password_is_never_sent_unencrypted_off_this_machine(tmp_path: Path) -> None:
    """Without STARTTLS, credentials go only to a loopback server; elsewhere it is refused."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    options = {"auth_require_tls": False, "authenticator": _authenticator("herald", "secret")}
    with SmtpServer(address, **options) as server:
        mailer = Mailer(_settings(tmp_path, f"smtp://herald:secret@{address}:{server.port}"))

        with pytest.raises(MailPermanentError, match="unencrypted"):
            await mailer.send(_receipt(), "submission-420.receipt")

    assert server.handler.messages == []


def test_bad_smtp_url_is_refused_at_start(tmp_path: Path) -> None:
    """A URL without a host fails when the Mailer is made, not at the first receipt."""
    with pytest.raises(ValueError, match="HERALD_SMTP_URL"):
        Mailer(_settings(tmp_path, "smtp:///nohost"))


def test_smtp_password_is_not_in_the_mailer_repr(tmp_path: Path) -> None:
    """The parsed server settings do not print the password."""
    mailer = Mailer(_settings(tmp_path, "smtp://herald:hunter2-secret@127.0.0.1:2525"))

    assert "hunter2-secret" not in repr(vars(mailer))
    assert DEFAULT_SENDER.addr_spec == "herald@localhost"


def test_the_default_tls_context_is_built_once_and_verifies() -> None:
    """Building a context loads the CA bundle; every email shares one (per process)."""
    context = default_tls_context()
    assert context is default_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
