"""Source detection from file names, streaming line access to plain/zip/gzip files, error translation."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from quantnb.errors import DataError

BYBIT = "bybit_book"
BINANCE = "binance_usdm"
OHLCV = "ohlcv_csv"
TRADES = "trades_csv"
# Files of the venues' public archives (the download stage fetches them; :mod:`quantnb.data._archive_csv` reads them).
KLINES = "binance_klines"
AGG_TRADES = "binance_aggtrades"
BOOK_TICKER = "binance_bookticker"
FUNDING = "binance_funding"
BYBIT_TRADES = "bybit_trades"


def _binance_public(kind: str, word: str, days: str, what: str) -> tuple[str, re.Pattern[str], str]:
    """One kind of Binance public-data file, ``SYMBOL-<word>-<days>.csv|.zip``."""
    return (kind, re.compile(rf"^(?P<symbol>[A-Za-z0-9]+)-{word}-(?P<day>[0-9-]+)\.(?:csv|zip)$"),
            f"SYMBOL-{word}-{days}.csv|.zip (Binance public {what})")


_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (BYBIT, re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})_(?P<symbol>[A-Za-z0-9]+)_ob(?P<depth>\d+)\.data(?:\.zip)?$"),
     "YYYY-MM-DD_SYMBOL_obN.data[.zip] (Bybit v5 order book)"),
    (BINANCE, re.compile(r"^(?P<symbol>[A-Za-z0-9]+)_(?P<day>\d{8})(?:\.[A-Za-z0-9]+)?\.gz$"),
     "SYMBOL_YYYYMMDD[.ext].gz (Binance USD-M stream capture, '<recv_ns> <json>' lines)"),
    _binance_public(TRADES, "trades", "YYYY-MM-DD", "trades CSV"),
    (KLINES, re.compile(r"^(?P<symbol>[A-Za-z0-9]+)-(?P<interval>\d+(?:s|m|h|d|w|mo))-(?P<day>[0-9-]+)\.(?:csv|zip)$"),
     "SYMBOL-1m-YYYY-MM[-DD].csv|.zip (Binance public klines)"),
    _binance_public(AGG_TRADES, "aggTrades", "YYYY-MM[-DD]", "aggTrades"),
    _binance_public(BOOK_TICKER, "bookTicker", "YYYY-MM[-DD]", "bookTicker"),
    _binance_public(FUNDING, "fundingRate", "YYYY-MM", "funding rates"),
    (BYBIT_TRADES, re.compile(r"^(?P<symbol>[A-Z0-9]+?)_?(?P<day>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?$"),
     "SYMBOLYYYY-MM-DD.csv.gz or SYMBOL_YYYY-MM-DD.csv.gz (Bybit public trades)"),
    (OHLCV, re.compile(r"^(?P<symbol>[^_]+)_.*1m\.csv$"), "SYMBOL_..._1m.csv (1-minute OHLCV CSV)"),
)

BUFFER_BYTES = 1 << 20
# The longest line any reader accepts. A Bybit ob500 or a Binance 1000-level snapshot is under 100 kB;
# a line past this is not data (a 2 MB zip can hold one 2 GiB line, which whole would take 4+ GB of RAM).
MAX_LINE_BYTES = 16 << 20
IO_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile)


class SourceInfo(NamedTuple):
    """What a file name says: source kind and the symbol it names."""

    kind: str
    symbol: str


# The venue of each source kind (an OHLCV CSV names none: the ETL's ``ohlcv_venue`` parameter).
VENUES = {BYBIT: "bybit", BINANCE: "binance", TRADES: "binance", KLINES: "binance", AGG_TRADES: "binance",
          BOOK_TICKER: "binance", FUNDING: "binance", BYBIT_TRADES: "bybit"}
BINANCE_ARCHIVE_KINDS = (BINANCE, TRADES, KLINES, AGG_TRADES, BOOK_TICKER, FUNDING)
# Bybit's archive folders (``.../orderbook/linear/BTCUSDT/...``, ``.../spot/...``) are the market names.
BYBIT_MARKETS = ("linear", "inverse", "spot", "option")
# Binance's archive folders: ``data/futures/um/...`` (USD-M), ``data/futures/cm/...`` (COIN-M), ``data/spot/...``.
BINANCE_MARKETS = {("futures", "um"): "usdm", ("futures", "cm"): "coinm", ("spot",): "spot",
                   ("usdm",): "usdm", ("um",): "usdm", ("coinm",): "coinm", ("cm",): "coinm"}
MARKET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def market_from_path(path: str | Path, kind: str) -> str | None:
    """Return the market an exchange's archive folder layout gives ``path``, or None if it gives none.

    The nearest matching folder wins: Bybit ``linear``, ``inverse``, ``spot``, ``option``;
    Binance ``futures/um`` (or ``usdm``, ``um``) -> ``usdm``, ``futures/cm`` (``coinm``,
    ``cm``) -> ``coinm``, ``spot`` -> ``spot``. Folder names are compared in lower case.
    """
    parts = [p.lower() for p in Path(path).parts[:-1]]
    for i in range(len(parts) - 1, -1, -1):
        if kind == BYBIT and parts[i] in BYBIT_MARKETS:
            return parts[i]
        if kind == BYBIT_TRADES and parts[i] in ("spot", "trading"):  # Bybit's trades folders
            inverse = re.match(r"^[A-Z0-9]+USD(?:[A-Z]\d{2})?_?\d{4}-", Path(path).name)  # BTCUSD, BTCUSDH25
            return "spot" if parts[i] == "spot" else "inverse" if inverse else "linear"
        if kind in BINANCE_ARCHIVE_KINDS:
            if parts[i] in ("um", "cm") and i > 0 and parts[i - 1] == "futures":
                return BINANCE_MARKETS[("futures", parts[i])]
            if (parts[i],) in BINANCE_MARKETS:
                return BINANCE_MARKETS[(parts[i],)]
    return None


def accepted_patterns() -> list[str]:
    """Return the file-name patterns :func:`detect_source` accepts, in words."""
    return [desc for _, _, desc in _PATTERNS]


def detect_source(path: str | Path) -> SourceInfo:
    """Detect the source kind and symbol of a raw data file from its name."""
    name = Path(path).name
    for kind, pattern, _ in _PATTERNS:
        m = pattern.match(name)
        if m:
            symbol = m.group("symbol")
            return SourceInfo(kind, symbol if kind == OHLCV else symbol.upper())
    raise DataError(
        f"{path}: unknown file type {name!r}; rename it to one of the accepted patterns: "
        + "; ".join(accepted_patterns()),
        path=str(path),
    )


def line_too_long(path: Path, line: int, max_bytes: int = MAX_LINE_BYTES) -> DataError:
    """Return the DataError for a line longer than ``max_bytes`` (named by its 1-based number)."""
    return DataError(f"{path} line {line}: longer than {max_bytes:,} bytes; no record of "
                     "this format is that long, so the file is corrupt or not this kind of data — re-download it",
                     path=str(path), line=line)


class LineStream:
    """Lines of a binary stream, each at most ``max_bytes`` long (else a :class:`DataError` naming it).

    Iterating reads at most ``max_bytes + 1`` bytes per line, so a file holding one huge line
    costs that much memory, not the line's length. Other attributes are the stream's.
    """

    def __init__(self, stream: IO[bytes], path: Path, max_bytes: int = MAX_LINE_BYTES):
        self._stream, self._path, self._max = stream, path, max_bytes
        self.lines = 0  # lines handed out so far

    def __iter__(self) -> LineStream:
        return self

    def __next__(self) -> bytes:
        raw = self._stream.readline(self._max + 1)
        if not raw:
            raise StopIteration
        if len(raw) > self._max:
            raise line_too_long(self._path, self.lines + 1, self._max)
        self.lines += 1
        return raw

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def check_line_lengths(stream: IO[bytes], path: Path, max_bytes: int = MAX_LINE_BYTES,
                       copy_to: IO[bytes] | None = None) -> int:
    """Read ``stream`` to its end in 1 MiB blocks; raise if a line is longer than ``max_bytes``.

    For readers that hand a whole file to a library (polars' CSV reader): the check costs one
    pass at block speed and ``BUFFER_BYTES`` of memory, whatever the line lengths.
    """
    lines, run = 0, 0  # complete lines so far; bytes of the current, unfinished line
    while block := stream.read(BUFFER_BYTES):
        if copy_to is not None:
            copy_to.write(block)
        first = block.find(b"\n")
        if first < 0:
            run += len(block)
            if run > max_bytes:
                raise line_too_long(path, lines + 1, max_bytes)
            continue
        if run + first + 1 > max_bytes:
            raise line_too_long(path, lines + 1, max_bytes)
        if max_bytes < len(block):  # a small limit: lines inside the block count too
            inner = block[first + 1:block.rfind(b"\n") + 1].split(b"\n")[:-1]
            long_ = next((i for i, seg in enumerate(inner) if len(seg) + 1 > max_bytes), None)
            if long_ is not None:
                raise line_too_long(path, lines + 2 + long_, max_bytes)
        lines += block.count(b"\n")
        run = len(block) - block.rfind(b"\n") - 1
        if run > max_bytes:
            raise line_too_long(path, lines + 1, max_bytes)
    return lines + (1 if run else 0)


@contextlib.contextmanager
def open_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[LineStream]:
    """Open a plain, ``.zip`` (one member) or ``.gz`` file as a buffered binary stream of lines."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                members = [i for i in zf.infolist() if not i.is_dir()]
                if len(members) != 1:
                    raise DataError(
                        f"{path}: the zip archive holds {len(members)} files "
                        f"({', '.join(i.filename for i in members[:5]) or 'none'}); expected exactly one "
                        "data file — re-download the daily archive or unzip it and pass the file itself",
                        path=str(path),
                    )
                with zf.open(members[0]) as member:
                    yield LineStream(io.BufferedReader(member, BUFFER_BYTES), path, max_line_bytes)  # type: ignore[type-var]
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                yield LineStream(io.BufferedReader(gz, BUFFER_BYTES), path, max_line_bytes)
        else:
            with open(path, "rb", buffering=BUFFER_BYTES) as fh:
                yield LineStream(fh, path, max_line_bytes)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc}); the download is corrupt or incomplete — "
                        "re-download it", path=str(path)) from exc


def _readable_gzip_lines(path: Path) -> int:
    """Count the complete lines before a gzip stream breaks (read-ahead hides where it broke)."""
    n = 0
    with contextlib.suppress(*IO_ERRORS, DataError), gzip.open(path, "rb") as gz:
        for _ in LineStream(gz, path):  # type: ignore[arg-type]
            n += 1
    return n


def io_error(path: Path, last_line: int, exc: BaseException) -> DataError:
    """Translate a decompression error met after ``last_line`` good lines into a DataError.

    Buffered read-ahead surfaces the error before the lines preceding it are handed out,
    so for gzip the readable lines are counted again; a zip member is checked as a whole
    (its CRC at the end), so its error names no line.
    """
    if path.name.lower().endswith(".zip"):
        return DataError(f"{path}: corrupt zip member ({type(exc).__name__}: {exc}); re-download the file",
                         path=str(path))
    if path.name.lower().endswith(".gz"):
        last_line = _readable_gzip_lines(path)
    line = last_line + 1
    if isinstance(exc, EOFError):
        what = f"the gzip stream ends early ({exc}): the file is truncated"
    elif isinstance(exc, gzip.BadGzipFile):
        what = f"not a valid gzip file ({exc})"
    else:
        what = f"corrupt compressed data ({type(exc).__name__}: {exc})"
    return DataError(f"{path} line {line}: {what}; re-download the file", path=str(path), line=line)


def no_messages(path: Path) -> DataError:
    """Return the DataError for an order-book file without a single message."""
    return DataError(f"{path}: the file holds no messages (empty download?); re-download it", path=str(path))


def snippet(raw: bytes | str, limit: int = 80) -> str:
    """Return the start of a line for an error message."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def markets_by_kind(binance_market: str, bybit_market: str, ohlcv_market: str) -> dict[str, str]:
    """Map each source kind to the market of its files when their folders name none.

    Parameters
    ----------
    binance_market, bybit_market, ohlcv_market : str
        Market of Binance archive files (every Binance kind), Bybit book and trade files, OHLCV CSVs.
    """
    return {**dict.fromkeys(BINANCE_ARCHIVE_KINDS, binance_market), BYBIT: bybit_market,
            BYBIT_TRADES: bybit_market, OHLCV: ohlcv_market}
