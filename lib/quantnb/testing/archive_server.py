"""A loopback server of the venues' public archives (Binance data.binance.vision, Bybit) for tests and demos.

:class:`ArchiveServer` serves files held in memory on ``127.0.0.1`` (ephemeral port), in
the archives' folder layouts (:mod:`quantnb.data._archive`), with ``.CHECKSUM`` files
(``<sha256>  <name>``) next to Binance zips, HTTP ``Range`` requests (206) and injected
faults: a wrong checksum (:meth:`ArchiveServer.corrupt_checksum`), a 404 day
(:meth:`ArchiveServer.remove`), a status such as 503 with ``Retry-After``
(:meth:`ArchiveServer.inject_fault`), a connection dropped mid-file
(:meth:`ArchiveServer.drop_mid_file`), and a slow server (``latency_s`` per request,
``bytes_per_s``).

:func:`sample_archive` builds its files from the bundled real samples (``data/samples/``):

- Binance USD-M ``klines`` 1m, daily files for 2022-01-01 to 2022-01-31 and the monthly
  file 2022-01: the rows of ``ohlcv/BTC-PERP_20211231_20220201_1m.csv`` in Binance's kline
  columns (the sample's volume is USD notional; it is written as ``quote_volume`` and as
  ``volume`` divided by the close; ``count`` and taker volumes are 0: the sample has none);
- ``trades`` 2024-08-08: ``trades/BTCUSDT-trades-2024-08-08.csv`` unchanged, zipped;
- ``aggTrades`` 2024-08-08: the same trades aggregated as Binance does (consecutive trades
  with the same time, price and side);
- ``bookTicker`` 2024-08-08: the ``btcusdt@bookTicker`` messages of
  ``binance_usdm/BTCUSDT_20240808.gz`` in the archive's columns;
- ``fundingRate`` 2022-01 and 2024-08: NOT recorded data (no sample holds funding): every
  8 hours the rate 0.0001 (Binance's interest-rate component, paid with a zero premium);
- Bybit ``orderbook`` linear XRPUSDT 2024-12-01 (``bybit/2024-12-01_XRPUSDT_ob500.data.zip``,
  byte for byte) and BTCUSDT 2026-08-09 (``bybit/2026-08-09_BTCUSDT_ob200.data`` zipped);
- Bybit ``trades`` linear BTCUSDT 2024-08-08: the Binance trades above in Bybit's
  ``trading`` CSV columns (gzip).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from quantnb.testing._faults import Fault, FaultPlan

__all__ = ["ArchiveServer", "Fault", "sample_archive", "zip_bytes", "checksum_text"]

_CHUNK = 1 << 14
FUNDING_RATE = 0.0001  # Binance's interest-rate component per 8 h; NOT a recorded value (see the module doc)


def zip_bytes(name: str, data: bytes) -> bytes:
    """Return a zip archive holding ``data`` as member ``name`` (deflated, fixed timestamps).

    Parameters
    ----------
    name : str
        The member's name, e.g. ``BTCUSDT-1m-2022-01-01.csv``.
    data : bytes
        Its content.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)
    return buf.getvalue()


def checksum_text(name: str, data: bytes) -> bytes:
    """Return a Binance ``.CHECKSUM`` body: ``<sha256 hex>  <file name>``.

    Parameters
    ----------
    name : str
        The zip's file name.
    data : bytes
        The zip's content.
    """
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()


@dataclasses.dataclass
class _Drop:
    after_bytes: int
    count: int


class ArchiveServer:
    """Threaded HTTP server of archive files on ``127.0.0.1`` (HTTP/1.1, keep-alive, Range).

    Parameters
    ----------
    files : mapping of str to bytes, optional
        Archive path (``data/futures/um/daily/...zip``) to content. Binance zips (paths
        starting ``data/``) get a ``.CHECKSUM`` file served next to them.
    latency_s : float
        Wait before answering each request, seconds (a slow or distant server).
    bytes_per_s : float or None
        Cap on the send rate of each response body, bytes per second; None: no cap.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None, *, latency_s: float = 0.0,
                 bytes_per_s: float | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.latency_s = latency_s
        self.bytes_per_s = bytes_per_s
        self.faults = FaultPlan()
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, path, Range header or "")
        self._drops: dict[str, _Drop] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for path, data in (files or {}).items():
            self.add_file(path, data)

    # -- content and faults ----------------------------------------------------------------
    def add_file(self, path: str, data: bytes, *, checksum: bool | None = None) -> None:
        """Serve ``data`` at ``path`` (and its ``.CHECKSUM`` for a Binance path, unless ``checksum`` is False).

        Parameters
        ----------
        path : str
            Archive path without a leading slash.
        data : bytes
            The file.
        checksum : bool, optional
            Publish ``<path>.CHECKSUM``; default: for paths under ``data/`` (Binance).
        """
        path = path.lstrip("/")
        self.files[path] = data
        if checksum if checksum is not None else path.startswith("data/"):
            self.files[f"{path}.CHECKSUM"] = checksum_text(path.rsplit("/", 1)[-1], data)

    def corrupt_checksum(self, path: str) -> None:
        """Publish a ``.CHECKSUM`` for ``path`` that its content does not match.

        Parameters
        ----------
        path : str
            Archive path of a file already served.
        """
        path = path.lstrip("/")
        self.files[f"{path}.CHECKSUM"] = checksum_text(path.rsplit("/", 1)[-1], self.files[path] + b"x")

    def remove(self, path: str) -> None:
        """Answer 404 for ``path`` and its checksum (a day the venue did not publish).

        Parameters
        ----------
        path : str
            Archive path.
        """
        path = path.lstrip("/")
        self.files.pop(path, None)
        self.files.pop(f"{path}.CHECKSUM", None)

    def inject_fault(self, fault: Fault) -> None:
        """Queue a fault (status with ``Retry-After``, ``timeout`` delay, ``drop`` before any reply).

        Parameters
        ----------
        fault : Fault
            Its ``path`` is the URL path with a leading slash, e.g. ``/data/.../x.zip``.
        """
        self.faults.add(fault)

    def drop_mid_file(self, path: str, after_bytes: int, count: int = 1) -> None:
        """Close the connection after ``after_bytes`` of the body of the next ``count`` GETs of ``path``.

        Parameters
        ----------
        path : str
            Archive path.
        after_bytes : int
            Body bytes sent before the connection is closed (the headers announce the full length).
        count : int
            Requests that suffer it.
        """
        self._drops[path.lstrip("/")] = _Drop(after_bytes, count)

    # -- life cycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Root URL, ``http://127.0.0.1:<port>`` (pass it as ``base_url``)."""
        if self._httpd is None:
            raise RuntimeError("ArchiveServer is not started; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        """Listen on an ephemeral port of 127.0.0.1 in a daemon thread; return self."""
        server: ArchiveServer = self

        class Handler(_Handler):
            archive = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="archive-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_drop(self, path: str) -> int | None:
        with self._lock:
            drop = self._drops.get(path)
            if drop is None or drop.count <= 0:
                return None
            drop.count -= 1
            return drop.after_bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    archive: ArchiveServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._guarded(body=False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._guarded(body=True)

    def _guarded(self, body: bool) -> None:
        try:
            self._answer(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout): nothing to answer
            self.close_connection = True

    def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"{code}\n".encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, body: bool) -> None:
        srv = self.archive
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range", "")
        srv.requests.append((time.monotonic(), path, rng))
        if srv.latency_s:
            time.sleep(srv.latency_s)
        fault = srv.faults.take(self.command, path)
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "timeout":
                time.sleep(fault.delay_s)
            else:
                extra = {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else {}
                self._status(fault.status, extra)
                return
        key = path.lstrip("/")
        data = srv.files.get(key)
        if data is None:
            self._status(404)
            return
        start = 0
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self._status(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not body:
            return
        cut = srv._take_drop(key)
        self._send(data[start:] if cut is None else data[start:start + cut], srv.bytes_per_s)
        if cut is not None:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, payload: bytes, bytes_per_s: float | None) -> None:
        try:
            for i in range(0, len(payload), _CHUNK):
                self.wfile.write(payload[i:i + _CHUNK])
                if bytes_per_s:
                    time.sleep(min(_CHUNK, len(payload) - i) / bytes_per_s)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# -- building the archive from the bundled samples ------------------------------------------------
_UM = "data/futures/um"


def _kline_rows(ohlcv_csv: Path) -> dict[str, list[str]]:
    """Day (YYYY-MM-DD) -> Binance kline CSV rows built from the 1-minute OHLCV sample."""
    out: dict[str, list[str]] = {}
    with open(ohlcv_csv) as fh:
        next(fh)
        for line in fh:
            ts, o, h, lo, c, v = line.strip().split(",")
            t = dt.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
            open_ms = int(t.timestamp() * 1000)
            base = float(v) / float(c)
            out.setdefault(t.date().isoformat(), []).append(
                f"{open_ms},{o},{h},{lo},{c},{base:.8f},{open_ms + 59_999},{v},0,0,0,0")
    return out


_KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                 "taker_buy_quote_volume,ignore")


def _agg_trades(trades_csv: Path) -> bytes:
    """Binance aggTrades CSV (futures header) aggregated from a trades CSV as the venue does."""
    rows: list[list[Any]] = []
    with open(trades_csv) as fh:
        next(fh)
        for line in fh:
            tid, price, qty, _, t, maker = line.strip().split(",")
            last = rows[-1] if rows else None
            if last and last[5] == t and last[1] == price and last[6] == maker:
                last[2] = f"{float(last[2]) + float(qty):.3f}"
                last[4] = tid
            else:
                rows.append([len(rows) + 1, price, qty, tid, tid, t, maker])
    text = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
    return (text + "".join(",".join(map(str, r)) + "\n" for r in rows)).encode()


def _book_ticker(capture_gz: Path) -> bytes:
    lines = ["update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"]
    with gzip.open(capture_gz, "rt") as fh:
        for line in fh:
            if "@bookTicker" not in line:
                continue
            d = json.loads(line.split(" ", 1)[1])["data"]
            lines.append(f"{d['u']},{d['b']},{d['B']},{d['a']},{d['A']},{d['T']},{d['E']}")
    return ("\n".join(lines) + "\n").encode()


def _funding(year: int, month: int) -> bytes:
    days = calendar.monthrange(year, month)[1]
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    rows = ["calc_time,funding_interval_hours,last_funding_rate"]
    for k in range(days * 3):
        rows.append(f"{int((start + dt.timedelta(hours=8 * k)).timestamp() * 1000)},8,{FUNDING_RATE:.8f}")
    return ("\n".join(rows) + "\n").encode()


def _bybit_trades(trades_csv: Path) -> bytes:
    """Bybit ``trading`` CSV columns (timestamp in seconds) of a Binance trades CSV."""
    rows = ["timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"]
    with open(trades_csv) as fh:
        next(fh)
        for line in fh:
            tid, price, qty, quote, t, maker = line.strip().split(",")
            side = "Sell" if maker == "true" else "Buy"
            rows.append(f"{int(t) / 1000:.4f},BTCUSDT,{side},{qty},{price},ZeroPlusTick,{tid},"
                        f"{int(float(quote) * 1e8)},{qty},{quote}")
    return gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0)


def sample_archive(samples: str | Path) -> dict[str, bytes]:
    """Return archive path -> content built from the bundled samples (see the module docstring).

    Binance paths (``data/futures/um/...``) and Bybit paths (``orderbook/...``, ``trading/...``);
    give it to :class:`ArchiveServer` (checksums are added there).

    Parameters
    ----------
    samples : str or Path
        The samples folder (``data/samples`` of the repository).
    """
    samples = Path(samples)
    files: dict[str, bytes] = {}
    days = _kline_rows(samples / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv")
    month: list[str] = []
    for day, rows in sorted(days.items()):
        if not day.startswith("2022-01"):
            continue
        month += rows
        name = f"BTCUSDT-1m-{day}.csv"
        files[f"{_UM}/daily/klines/BTCUSDT/1m/{name[:-4]}.zip"] = zip_bytes(
            name, ("\n".join([_KLINE_HEADER, *rows]) + "\n").encode())
    files[f"{_UM}/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01.zip"] = zip_bytes(
        "BTCUSDT-1m-2022-01.csv", ("\n".join([_KLINE_HEADER, *month]) + "\n").encode())
    trades = samples / "trades" / "BTCUSDT-trades-2024-08-08.csv"
    files[f"{_UM}/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip"] = zip_bytes(trades.name, trades.read_bytes())
    files[f"{_UM}/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"] = zip_bytes(
        "BTCUSDT-aggTrades-2024-08-08.csv", _agg_trades(trades))
    files[f"{_UM}/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-08-08.zip"] = zip_bytes(
        "BTCUSDT-bookTicker-2024-08-08.csv", _book_ticker(samples / "binance_usdm" / "BTCUSDT_20240808.gz"))
    for y, m in ((2022, 1), (2024, 8)):
        name = f"BTCUSDT-fundingRate-{y:04d}-{m:02d}"
        files[f"{_UM}/monthly/fundingRate/BTCUSDT/{name}.zip"] = zip_bytes(f"{name}.csv", _funding(y, m))
    files["orderbook/linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"] = (
        samples / "bybit" / "2024-12-01_XRPUSDT_ob500.data.zip").read_bytes()
    ob = samples / "bybit" / "2026-08-09_BTCUSDT_ob200.data"
    files["orderbook/linear/BTCUSDT/2026-08-09_BTCUSDT_ob200.data.zip"] = zip_bytes(ob.name, ob.read_bytes())
    files["trading/BTCUSDT/BTCUSDT2024-08-08.csv.gz"] = _bybit_trades(trades)
    return files
