"""The download stage's transfer engine: verified, resumable, concurrent HTTP downloads with aiohttp.

One file is fetched by :func:`fetch_file`: its ``.CHECKSUM`` first (Binance), then the data
streamed into a hidden ``.<name>.part`` file next to the destination (continued with an
HTTP ``Range`` request when a part is already there), fsynced, verified, and renamed
atomically into place. Transfers go through the project's one retry policy
(:class:`quantnb.retry.RetryPolicy`), which honours ``Retry-After`` on 429 and 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp
from loguru import logger

from quantnb.data import ArchiveFile
from quantnb.errors import DataError, QuantnbError, TemporaryError
from quantnb.retry import RetryPolicy, translate_error

CHUNK_BYTES = 1 << 16
_HASH_BLOCK = 1 << 20


class Missing(QuantnbError):
    """The archive answered 404: the venue did not publish this file."""


@dataclasses.dataclass
class Outcome:
    """What became of one file: ``downloaded``, ``skipped`` (already verified), ``missing``, ``corrupt``, ``failed``."""

    item: str
    status: str
    bytes: int = 0
    reason: str = ""


def _part_path(dest: Path) -> Path:
    """Return the hidden partial-download file of ``dest`` (globs such as ``*.zip`` never match it)."""
    return dest.parent / f".{dest.name}.part"


def _sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _place(part: Path, dest: Path) -> None:
    """Rename the verified part file onto its destination (atomic on POSIX) and make the rename durable."""
    os.replace(part, dest)
    _fsync_dir(dest.parent)


def _container_problem(path: Path, name: str) -> str | None:
    """Return why a zip or gzip file without a published checksum is broken (its own CRCs), or None."""
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                return f"zip member {bad!r} fails its CRC" if bad else None
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                while gz.read(_HASH_BLOCK):
                    pass
    except (zipfile.BadZipFile, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Fetcher:
    """Fetch archive files under one aiohttp session, at most ``max_concurrency`` at a time."""

    def __init__(self, base_url: str, out_dir: Path, quarantine_dir: Path, policy: RetryPolicy,
                 max_concurrency: int, timeout_s: float, on_bytes: Callable[[int], None]) -> None:
        self.base_url = base_url.rstrip("/")
        self.out_dir = out_dir
        self.quarantine_dir = quarantine_dir
        self.policy = policy
        self.max_concurrency = max_concurrency
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self.on_bytes = on_bytes
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(limit=self.max_concurrency)
        self.session = aiohttp.ClientSession(timeout=self.timeout, connector=connector, auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    def url(self, file: ArchiveFile, suffix: str = "") -> str:
        """Return the URL of ``file`` (plus ``suffix``, e.g. ``.CHECKSUM``)."""
        return f"{self.base_url}/{file.path}{suffix}"

    async def _checksum_once(self, url: str) -> str:
        assert self.session is not None
        try:
            async with self.session.get(url) as resp:
                if resp.status == 404:
                    raise Missing(f"{url}: 404 Not Found")
                if resp.status >= 400:
                    raise translate_error(RuntimeError(f"HTTP {resp.status}"), what=f"GET {url}",
                                          headers=resp.headers, status=resp.status)
                text = (await resp.read()).decode("ascii", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        digest = text.split()[0].lower() if text.split() else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{url}: not a SHA-256 checksum file (starts {text[:60]!r})")
        return digest

    async def _data_once(self, url: str, part: Path) -> int:
        """Stream ``url`` into ``part``, continuing it with a Range request; return the bytes received."""
        assert self.session is not None
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        received = 0
        try:
            async with self.session.get(url, headers=headers) as resp:
                if resp.status == 404:
                    raise Missing(f"{url}: 404 Not Found")
                if resp.status == 416:  # the part is already whole (or longer): start over
                    part.unlink(missing_ok=True)
                    raise TemporaryError(f"GET {url}: 416 Range Not Satisfiable for bytes={offset}-; restarting")
                if resp.status >= 400:
                    raise translate_error(RuntimeError(f"HTTP {resp.status}"), what=f"GET {url}",
                                          headers=resp.headers, status=resp.status)
                append = offset > 0 and resp.status == 206
                if offset and not append:
                    logger.debug("{}: the server ignored Range (status {}); downloading it whole", url, resp.status)
                part.parent.mkdir(parents=True, exist_ok=True)
                with open(part, "ab" if append else "wb") as fh:
                    async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                        fh.write(chunk)
                        received += len(chunk)
                        self.on_bytes(len(chunk))
                    await asyncio.to_thread(_flush, fh)  # an fsync must not stall the other transfers
                expected = resp.content_length
                if expected is not None and received != expected:
                    raise TemporaryError(f"GET {url}: connection closed after {received} of {expected} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryError(f"GET {url}: {type(exc).__name__}: {exc} (after {received} bytes; the next "
                                 "attempt continues from there)") from exc
        return received

    async def fetch(self, file: ArchiveFile, *, trusted: bool) -> Outcome:
        """Download, verify and place one file; never raises for a per-file failure."""
        dest = self.out_dir / file.path
        if (trusted or not file.checksum) and dest.is_file():  # placed only once verified (atomic rename)
            return Outcome(file.path, "skipped")
        try:
            expected = (await self.policy.acall(self._checksum_once, self.url(file, ".CHECKSUM"))
                        if file.checksum else None)
            if expected is not None and dest.is_file() and _sha256_file(dest) == expected:
                logger.debug("{}: in place and matches its checksum; kept", file.path)
                return Outcome(file.path, "skipped")
            part = _part_path(dest)
            received = await self.policy.acall(self._data_once, self.url(file), part)
        except Missing as exc:
            logger.warning("{}: missing from the archive ({}); the venue did not publish it — listed under "
                           "'missing', the run goes on", file.path, exc)
            return Outcome(file.path, "missing", reason=str(exc))
        except QuantnbError as exc:
            logger.error("{}: download failed: {}; resume the run to try again", file.path, exc)
            return Outcome(file.path, "failed", reason=str(exc))
        problem = await asyncio.to_thread(self._verify, part, file, expected)
        if problem is not None:
            target = self.quarantine_dir / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(part, target)
            logger.error("{}: {}; quarantined to {} (never left where the ETL reads) — re-download it later or "
                         "report it to the venue", file.path, problem, target)
            return Outcome(file.path, "corrupt", received, reason=problem)
        await asyncio.to_thread(_place, part, dest)
        return Outcome(file.path, "downloaded", received)

    @staticmethod
    def _verify(part: Path, file: ArchiveFile, expected: str | None) -> str | None:
        if expected is not None:
            actual = _sha256_file(part)
            return None if actual == expected else (f"SHA-256 {actual} differs from the published .CHECKSUM "
                                                    f"{expected}")
        return _container_problem(part, file.name)
