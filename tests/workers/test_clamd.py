"""The clamd client against a real clamd with a local EICAR signature, and injected faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.clamd_server import CLAMD, EICAR_DETECTED_AS, NOT_INSTALLED, ClamdServer
from tests.support import free_port
from workers.clamd import ClamdScanner, ScannerUnavailable, StreamTooLarge
from workers.scanner import EICAR_SIGNATURE

STREAM_MAX = 1024 * 1024  # the fixture's StreamMaxLength, 1M


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """One real clamd for the module's tests."""
    if CLAMD is None:
        pytest.skip(NOT_INSTALLED)
    server = ClamdServer(tmp_path_factory.mktemp("clamd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def scanner(clamd: ClamdServer) -> ClamdScanner:
    return ClamdScanner(clamd.url, timeout=10)


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


async def test_ping_and_version(scanner: ClamdScanner, clamd: ClamdServer) -> None:
    """A running clamd answers PING, and its version names ClamAV."""
    assert await scanner.ping() is True
    assert (await scanner.version()).startswith("ClamAV ")
    assert clamd.started_in is not None and clamd.started_in < 30


async def test_clean_file_is_clean(scanner: ClamdScanner, tmp_path: Path) -> None:
    """An ordinary file gets a clean verdict labelled with clamd's name."""
    path = write(tmp_path, "essay.txt", b"An essay on the causes of the First World War.\n" * 500)
    verdict = await scanner.scan(path)
    assert verdict.infected is False
    assert "ClamAV (clamd)" in verdict.reason


async def test_eicar_file_is_infected(scanner: ClamdScanner, tmp_path: Path) -> None:
    """The bare EICAR test file is infected, with the signature clamd matched."""
    verdict = await scanner.scan(write(tmp_path, "eicar.com", EICAR_SIGNATURE))
    assert verdict.infected is True
    assert EICAR_DETECTED_AS in verdict.reason


async def test_eicar_split_across_chunks_is_found(clamd: ClamdServer, tmp_path: Path) -> None:
    """EICAR inside a larger file, straddling two INSTREAM chunks, is still found."""
    scanner = ClamdScanner(clamd.url, chunk_size=1000)
    content = b"a" * 980 + EICAR_SIGNATURE + b"b" * 5000
    sent: list[int] = []

    async def progress(done: int) -> None:
        sent.append(done)

    verdict = await scanner.scan(write(tmp_path, "report.pdf", content), progress)
    assert verdict.infected is True
    assert EICAR_DETECTED_AS in verdict.reason
    assert sent == [*range(1000, len(content), 1000), len(content)]


async def test_file_at_the_limit_is_scanned(scanner: ClamdScanner, tmp_path: Path) -> None:
    """A file of exactly StreamMaxLength is scanned, and EICAR at its very end is found."""
    content = b"x" * (STREAM_MAX - len(EICAR_SIGNATURE)) + EICAR_SIGNATURE
    verdict = await scanner.scan(write(tmp_path, "limit.bin", content))
    assert verdict.infected is True


async def test_file_over_the_limit_is_refused_for_good(
    scanner: ClamdScanner, tmp_path: Path
) -> None:
    """A file over StreamMaxLength is refused with a permanent error as soon as clamd
    says so (the rest is not sent), and clamd stays up."""
    size = 32 * STREAM_MAX
    path = write(tmp_path, "huge.bin", b"x" * size)
    sent: list[int] = []

    async def progress(done: int) -> None:
        sent.append(done)

    with pytest.raises(StreamTooLarge, match="larger than ClamAV") as raised:
        await scanner.scan(path, progress)
    assert raised.value.retryable is False
    # Loopback socket buffers hold a few MB beyond the 1 MB limit, never half the file.
    assert STREAM_MAX <= sent[-1] < size // 2
    assert await scanner.ping() is True


async def test_concurrent_scans(scanner: ClamdScanner, tmp_path: Path) -> None:
    """Several scans at once each get their own connection and their own verdict."""
    clean = write(tmp_path, "clean.txt", b"clean " * 10_000)
    bad = write(tmp_path, "bad.txt", b"header " + EICAR_SIGNATURE)
    verdicts = await asyncio.gather(*(scanner.scan(p) for p in [clean, bad] * 4))
    assert [v.infected for v in verdicts] == [False, True] * 4


async def test_logs_name_the_file_never_its_content(scanner: ClamdScanner, tmp_path: Path) -> None:
    """Log entries carry the file's name and the signature, not the file's bytes."""
    with capture_logs() as logs:
        await scanner.scan(write(tmp_path, "secret-essay.txt", b"PRIVATE " + EICAR_SIGNATURE))
    infected = [entry for entry in logs if entry["event"] == "clamd.scan.infected"]
    assert infected and infected[0]["file"] == "secret-essay.txt"
    assert infected[0]["signature"] == EICAR_DETECTED_AS
    assert "PRIVATE" not in repr(logs)


async def test_nothing_listening_is_unavailable(tmp_path: Path) -> None:
    """With no clamd on the port, a scan is retryable-unavailable and ping says False."""
    scanner = ClamdScanner(f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(ScannerUnavailable, match="cannot connect to clamd") as raised:
        await scanner.scan(write(tmp_path, "a.txt", b"hello"))
    assert raised.value.retryable is True
    assert await scanner.ping() is False


async def test_stopped_clamd_is_unavailable(tmp_path: Path) -> None:
    """A clamd that was up and is then stopped makes the next scan unavailable."""
    if CLAMD is None:
        pytest.skip(NOT_INSTALLED)
    server = ClamdServer(tmp_path / "clamd")
    server.start()
    scanner = ClamdScanner(server.url)
    path = write(tmp_path, "a.txt", b"hello")
    try:
        assert (await scanner.scan(path)).infected is False
    finally:
        server.stop()
    with pytest.raises(ScannerUnavailable):
        await scanner.scan(path)


@pytest.fixture
async def fake_clamd() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads what it is sent and answers as ``replies[0]`` says:
    ``b"hang"`` never answers; anything else is sent back as the reply."""
    replies: list[bytes] = [b"hang"]
    connections: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        await reader.read(10)
        if replies[0] != b"hang":
            writer.write(replies[0])
            await writer.drain()
            writer.close()
            return
        # Hang: keep reading (so the client's sends succeed) and never answer.
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"tcp://127.0.0.1:{port}", replies
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_silent_clamd_times_out(fake_clamd: tuple[str, list[bytes]], tmp_path: Path) -> None:
    """A server that takes the file and never answers times out as unavailable."""
    url, _ = fake_clamd
    scanner = ClamdScanner(url, timeout=0.5)
    with pytest.raises(ScannerUnavailable, match=r"no verdict within 0\.5s"):
        await scanner.scan(write(tmp_path, "a.txt", b"hello" * 1000))
    assert await scanner.ping() is False


@pytest.mark.parametrize(
    "reply",
    [b"stream: Can't allocate memory ERROR\0", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\0"],
)
async def test_unexpected_reply_is_unavailable(
    fake_clamd: tuple[str, list[bytes]], tmp_path: Path, reply: bytes
) -> None:
    """An error or a reply that is not clamd's is unavailable (retryable), never a verdict."""
    url, replies = fake_clamd
    replies[0] = reply
    with pytest.raises(ScannerUnavailable) as raised:
        await ClamdScanner(url, timeout=5).scan(write(tmp_path, "a.txt", b"hello"))
    assert raised.value.retryable is True


def test_url_must_be_tcp() -> None:
    """Only tcp://host[:port] is accepted; the port defaults to clamd's 3310."""
    scanner = ClamdScanner("tcp://scanner.internal")
    assert (scanner.host, scanner.port) == ("scanner.internal", 3310)
    with pytest.raises(ValueError, match="tcp://host:port"):
        ClamdScanner("unix:///run/clamd.sock")
