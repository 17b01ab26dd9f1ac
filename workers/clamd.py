"""A client for ClamAV's clamd over TCP: streams a file with INSTREAM and reads the verdict.

The protocol: ``zINSTREAM\\0``, then the file in chunks each led by its length as
4 bytes big-endian, then a zero-length chunk; clamd answers one NUL-terminated
line, ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``. The verdict
is a :class:`workers.scanner.ScanVerdict`, as from the built-in scanner, so the
scan step treats both alike.

Failures: :class:`ScannerUnavailable` (clamd down, slow, or answering something
unexpected) is worth retrying later; :class:`StreamTooLarge` (the file is over
clamd's ``StreamMaxLength``) never gets better by retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from herald.logs import get_logger
from workers.scanner import ScanVerdict

__all__ = [
    "CLAMD_NAME",
    "DEFAULT_PORT",
    "ClamdError",
    "ClamdScanner",
    "ScannerUnavailable",
    "StreamTooLarge",
]

log = get_logger(__name__)

CLAMD_NAME = "ClamAV (clamd)"
DEFAULT_PORT = 3310
CHUNK = 256 * 1024
# A reply is one short line; anything longer is not clamd.
MAX_REPLY = 4096

_SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded. ERROR"

Progress = Callable[[int], Awaitable[None]]


class ClamdError(Exception):
    """clamd could not give a verdict; ``retryable`` says whether trying later may help."""

    retryable = True


class ScannerUnavailable(ClamdError):
    """clamd refused the connection, timed out, or answered something unexpected."""


class StreamTooLarge(ClamdError):
    """The file is larger than clamd's ``StreamMaxLength``: clamd refuses to scan it."""

    retryable = False


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"a clamd URL is tcp://host:port, not {url!r}")
    return parts.hostname, parts.port or DEFAULT_PORT


def _chunk_frame(chunk: bytes) -> bytes:
    return struct.pack(">I", len(chunk)) + chunk


class ClamdScanner:
    """Scans files with a clamd at ``tcp://host:port``; one connection per call.

    ``connect_timeout`` bounds opening the connection; ``timeout`` bounds each
    later wait: one chunk's send, or clamd's reply once the whole file is sent
    (clamd scans only then, so a large file needs a generous ``timeout``).
    """

    name = CLAMD_NAME

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        timeout: float = 60.0,
        chunk_size: int = CHUNK,
    ) -> None:
        self.host, self.port = _address(url)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"ClamdScanner(tcp://{self.host}:{self.port})"

    async def ping(self) -> bool:
        """True when clamd answers PING with PONG; False when it is down or says anything else."""
        try:
            return await self._command(b"zPING\0") == "PONG"
        except ScannerUnavailable:
            return False

    async def version(self) -> str:
        """clamd's version line, e.g. ``ClamAV 1.4.6/27000/...`` (engine/database/date)."""
        return await self._command(b"zVERSION\0")

    async def scan(self, path: Path, progress: Progress | None = None) -> ScanVerdict:
        """Stream ``path`` to clamd and return its verdict.

        ``progress`` is awaited with the number of bytes sent so far after each
        chunk. Raises :class:`ScannerUnavailable` or :class:`StreamTooLarge`.
        """
        log.debug("clamd.scan.start", file=path.name, clamd=f"{self.host}:{self.port}")
        reader, writer = await self._connect()
        try:
            reply = await self._instream(path, reader, writer, progress)
        finally:
            await self._close(writer)
        verdict = self._verdict(path, reply)
        log.info("clamd.scan.done", file=path.name, infected=verdict.infected)
        return verdict

    async def _instream(
        self,
        path: Path,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        progress: Progress | None,
    ) -> str:
        # The reply is read while the file is still being sent: over StreamMaxLength
        # clamd answers at once and closes, and a client that only reads after
        # sending would hit a reset connection and lose the reason.
        reply = asyncio.ensure_future(self._read_reply(reader, timeout=None))
        try:
            handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
            try:
                await self._send_file(handle, writer, reply, progress)
            except TimeoutError:
                raise ScannerUnavailable(
                    f"clamd took more than {self.timeout:g}s to accept a chunk of the file"
                ) from None
            except ConnectionError as exc:
                # clamd may have answered and closed (size limit): the reply says why.
                if not reply.done():
                    raise ScannerUnavailable(f"clamd connection lost while sending: {exc}") from exc
            finally:
                await asyncio.to_thread(handle.close)
            try:
                return await asyncio.wait_for(reply, self.timeout)
            except TimeoutError:
                raise ScannerUnavailable(
                    f"clamd gave no verdict within {self.timeout:g}s of the end of the file"
                ) from None
        finally:
            if not reply.done():
                reply.cancel()
                # asyncio.wait neither raises the reader's error nor swallows our own
                # cancellation, unlike awaiting the cancelled reader directly.
                await asyncio.wait({reply})
            if not reply.cancelled():
                reply.exception()  # seen: the caller gets our error, not "never retrieved"

    async def _send_file(
        self,
        handle: BinaryIO,
        writer: asyncio.StreamWriter,
        reply: asyncio.Future[str],
        progress: Progress | None,
    ) -> None:
        writer.write(b"zINSTREAM\0")
        sent = 0
        while chunk := await asyncio.to_thread(handle.read, self.chunk_size):
            if reply.done():
                return  # clamd has answered early (size limit): stop sending
            writer.write(_chunk_frame(chunk))
            await asyncio.wait_for(writer.drain(), self.timeout)
            sent += len(chunk)
            if progress is not None:
                await progress(sent)
        if not reply.done():
            writer.write(_chunk_frame(b""))
            await asyncio.wait_for(writer.drain(), self.timeout)

    def _verdict(self, path: Path, reply: str) -> ScanVerdict:
        if reply == "stream: OK":
            return ScanVerdict(False, f"no threat found by {self.name}")
        if reply.startswith("stream: ") and reply.endswith(" FOUND"):
            signature = reply.removeprefix("stream: ").removesuffix(" FOUND")
            log.warning("clamd.scan.infected", file=path.name, signature=signature)
            return ScanVerdict(True, f"matched the signature {signature} ({self.name})")
        if reply == _SIZE_LIMIT_REPLY:
            log.warning("clamd.scan.too_large", file=path.name, size=path.stat().st_size)
            raise StreamTooLarge(
                f"the file is larger than {self.name} accepts (its StreamMaxLength)"
            )
        # clamd's other errors (out of memory, a read timeout on its side) pass.
        log.warning("clamd.scan.error", file=path.name, reply=reply)
        raise ScannerUnavailable(f"clamd could not scan the file: {reply!r}")

    async def _command(self, command: bytes) -> str:
        reader, writer = await self._connect()
        try:
            writer.write(command)
            try:
                await asyncio.wait_for(writer.drain(), self.timeout)
            except (ConnectionError, TimeoutError) as exc:
                raise ScannerUnavailable(f"clamd connection lost: {exc}") from exc
            return await self._read_reply(reader, timeout=self.timeout)
        finally:
            await self._close(writer)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_REPLY), self.connect_timeout
            )
        except TimeoutError:
            raise ScannerUnavailable(
                f"clamd at {self.host}:{self.port} did not accept a connection "
                f"within {self.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise ScannerUnavailable(
                f"cannot connect to clamd at {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc

    async def _read_reply(
        self,
        reader: asyncio.StreamReader,
        *,
        timeout: float | None,  # noqa: ASYNC109 - one deadline for the whole reply
    ) -> str:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\0"), timeout)
        except TimeoutError:
            raise ScannerUnavailable(f"clamd did not answer within {timeout:g}s") from None
        except asyncio.IncompleteReadError as exc:
            partial = exc.partial[:80]
            raise ScannerUnavailable(
                f"clamd closed the connection mid-reply: {partial!r}"
            ) from None
        except asyncio.LimitOverrunError:
            raise ScannerUnavailable("clamd's reply is too long to be a clamd reply") from None
        except OSError as exc:
            raise ScannerUnavailable(f"clamd connection lost: {exc}") from exc
        return raw[:-1].decode("utf-8", "replace").strip()

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        # The connection is done with either way; a reset while closing changes nothing.
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
