"""Seeded builders of small raw data files, healthy or with one chosen defect, for tests and users.

Each builder writes one file in the exact layout its reader expects (Bybit v5 order-book
``.data``/``.data.zip``, Binance USD-M ``<recv_ns> <json>`` gzip capture, 1-minute OHLCV
CSV, Binance trades CSV) into ``directory`` (created if needed) and returns a
:class:`BuiltFile` with the path and, for a defect, the 1-based line where it is. The book
is a random walk that never crosses, so every defect is the only one in the file. Every
builder draws from ``random.Random(seed)``: same arguments, same bytes.

Examples
--------
>>> from quantnb.testing.builders import write_bybit_file
>>> built = write_bybit_file(tmp_path, defect="seq_gap", seed=3)  # doctest: +SKIP
>>> ingest_file(built.path).quality.seq_gaps  # doctest: +SKIP
1
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import zipfile
from pathlib import Path
from typing import Literal, NamedTuple

from quantnb.testing._book_sim import BookSim, Levels

__all__ = [
    "BuiltFile",
    "BybitDefect",
    "BinanceDefect",
    "CsvDefect",
    "write_bybit_file",
    "write_binance_capture",
    "write_ohlcv_csv",
    "write_trades_csv",
]

BybitDefect = Literal[
    "crossed", "seq_gap", "truncated_line", "non_json_line", "missing_field", "nan_price",
    "delta_before_snapshot", "bad_zip", "negative_size", "mid_stream_snapshot", "time_gap",
]
BinanceDefect = Literal["truncated_gzip", "seq_gap", "nan_price", "crossed", "no_snapshot", "non_json_line"]
CsvDefect = Literal["duplicate_ts", "time_gap", "out_of_order", "nan_price", "bad_number", "non_positive_price"]


class BuiltFile(NamedTuple):
    """A file written by a builder."""

    path: Path
    # 1-based line of the defect (CSV: header is line 1); None for a healthy file or a defect of the whole
    # file (bad zip, truncated gzip)
    defect_line: int | None


def _fmt(ticks: int, tick: float, decimals: int) -> str:
    return f"{ticks * tick:.{decimals}f}"


def _levels(levels: Levels, tick: float, decimals: int) -> list[list[str]]:
    return [[_fmt(p, tick, decimals), "0" if s == 0 else f"{s:.3f}"] for p, s in levels]


def _bybit_line(kind: str, ts: int, symbol: str, depth: int, bids: list, asks: list, u: int) -> str:
    data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": 10 * u}
    msg = {"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": ts, "data": data, "cts": ts - 2}
    return json.dumps(msg, separators=(",", ":"))


def write_bybit_file(directory: str | Path, *, symbol: str = "BTCUSDT", day: str = "2024-01-02", depth: int = 50,
                     n_deltas: int = 600, step_ms: int = 250, seed: int = 0, zipped: bool = False,
                     defect: BybitDefect | None = None) -> BuiltFile:
    """Write a Bybit v5 order-book file ``{day}_{symbol}_ob{depth}.data[.zip]``: one snapshot, then deltas.

    Parameters
    ----------
    directory, seed
        As for every builder (see the module docstring).
    symbol, day : str
        Symbol and UTC day (``YYYY-MM-DD``); messages start at 00:00:00.
    depth : int
        Levels per side in the snapshot.
    n_deltas : int
        Delta messages after the snapshot; ``u`` rises by 1 each.
    step_ms : int
        Milliseconds between messages (600 deltas of 250 ms span 2.5 minutes).
    zipped : bool
        Write a ``.zip`` holding the ``.data`` file, as Bybit's archive does.
    defect : str or None
        One defect at a seeded position in the middle of the file: ``crossed`` (a bid
        above the best ask), ``seq_gap`` (a ``u`` skipped), ``truncated_line`` (the last
        line cut mid-way), ``non_json_line``, ``missing_field`` (a delta without ``u``),
        ``nan_price``, ``delta_before_snapshot`` (the snapshot removed),
        ``bad_zip`` (garbage bytes named ``.zip``), ``negative_size``,
        ``mid_stream_snapshot`` (a valid snapshot mid-file, as after a service
        restart), ``time_gap`` (3 minutes without messages).
    """
    rng = random.Random(seed)
    tick, decimals = 0.1, 1
    sim = BookSim(rng, mid_ticks=rng.randint(300_000, 400_000), n_levels=depth)
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)
    u = rng.randint(1_000, 9_000_000)
    bad_at = rng.randint(n_deltas // 3, 2 * n_deltas // 3) + 1  # delta index (line = index + 1)
    lines = [_bybit_line("snapshot", start, symbol, depth, _levels(sorted(sim.bids.items(), reverse=True), tick,
                                                                     decimals),
                         _levels(sorted(sim.asks.items()), tick, decimals), u)]
    ts = start
    for i in range(1, n_deltas + 1):
        ts += step_ms + (3 * 60_000 if defect == "time_gap" and i == bad_at else 0)
        u += 1 + (5 if defect == "seq_gap" and i == bad_at else 0)
        bids, asks = sim.step()
        b, a = _levels(bids, tick, decimals), _levels(asks, tick, decimals)
        if i == bad_at and defect == "crossed":
            b = [[_fmt(sim.best_ask + 3, tick, decimals), "1.000"], *b]
        if i == bad_at and defect == "nan_price":
            b = [["NaN", "1.000"], *b]
        if i == bad_at and defect == "negative_size":
            a = [[_fmt(sim.best_ask + 50, tick, decimals), "-2.000"], *a]
        kind = "delta"
        if i == bad_at and defect == "mid_stream_snapshot":
            kind, u = "snapshot", 1
            b = _levels(sorted(sim.bids.items(), reverse=True), tick, decimals)
            a = _levels(sorted(sim.asks.items()), tick, decimals)
        line = _bybit_line(kind, ts, symbol, depth, b, a, u)
        if i == bad_at and defect == "missing_field":
            line = line.replace(f',"u":{u}', "")
        if i == bad_at and defect == "non_json_line":
            line = "{" + line[: len(line) // 2]
        lines.append(line)
    defect_line: int | None = bad_at + 1
    if defect == "truncated_line":
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
        defect_line = len(lines)
    elif defect == "delta_before_snapshot":
        lines = lines[1:]
        defect_line = 1
    elif defect in (None, "bad_zip"):
        defect_line = None
    return BuiltFile(_write_text(Path(directory), f"{day}_{symbol}_ob{depth}.data", lines, zipped, defect), defect_line)


def _write_text(directory: Path, name: str, lines: list[str], zipped: bool, defect: str | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = ("\n".join(lines) + ("" if defect == "truncated_line" else "\n")).encode()
    if defect == "bad_zip":
        path = directory / f"{name}.zip"
        path.write_bytes(b"PK\x03\x04" + bytes(random.Random(len(body)).randrange(256) for _ in range(256)))
        return path
    if zipped:
        path = directory / f"{name}.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(info, body, compress_type=zipfile.ZIP_DEFLATED)
        return path
    path = directory / name
    path.write_bytes(body)
    return path


def write_binance_capture(directory: str | Path, *, symbol: str = "BTCUSDT", day: str = "20240102",
                          n_events: int = 1500, step_ms: int = 100, seed: int = 0,
                          defect: BinanceDefect | None = None) -> BuiltFile:
    """Write a Binance USD-M capture ``{symbol}_{day}.gz``: depth diffs, trades, bookTicker, one REST snapshot.

    The snapshot line comes after the sixth diff, with a ``lastUpdateId`` inside the
    fourth diff's ``U..u`` range, so a correct reader drops three stale diffs and syncs on
    the fourth (Binance USD-M "How to manage a local order book correctly").

    Parameters
    ----------
    directory, seed
        As for every builder (see the module docstring).
    symbol, day : str
        Symbol and UTC day (``YYYYMMDD``).
    n_events : int
        Stream frames (about 40% diffs, 30% trades, 30% bookTicker).
    step_ms : int
        Milliseconds between frames.
    defect : str or None
        ``truncated_gzip`` (the file cut at two thirds), ``seq_gap`` (a diff whose ``pu``
        is not the previous ``u``), ``nan_price`` (in a diff), ``crossed`` (a diff bid
        above the best ask), ``no_snapshot``, ``non_json_line``; the :class:`BuiltFile` line is None
        for ``truncated_gzip`` and ``no_snapshot``.
    """
    rng = random.Random(seed)
    tick, decimals = 0.1, 1
    sim = BookSim(rng, mid_ticks=rng.randint(300_000, 400_000), n_levels=100)
    start = int(dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.UTC).timestamp() * 1000) + 1_000
    stream = symbol.lower()
    lines: list[str] = []
    u, trade_id, n_diffs = rng.randint(10**9, 2 * 10**9), rng.randint(10**6, 10**7), 0
    snapshot: str | None = None
    bad_at = rng.randint(n_events // 3, 2 * n_events // 3)
    defect_line: int | None = None
    for i in range(n_events):
        ts = start + i * step_ms
        roll = rng.random()
        inject = defect if i >= bad_at and defect_line is None else None
        if roll < 0.4 or n_diffs < 6 or inject in ("crossed", "nan_price", "seq_gap"):
            bids, asks = sim.step()
            first, u_prev = u + 1, u
            u += rng.randint(1, 6)
            b, a = _levels(bids, tick, decimals), _levels(asks, tick, decimals)
            if inject == "crossed":
                b = [[_fmt(sim.best_ask + 2, tick, decimals), "1.000"], *b]
            if inject == "nan_price":
                a = [["NaN", "0.500"], *a]
            pu = u_prev - (7 if inject == "seq_gap" else 0)
            data = {"e": "depthUpdate", "E": ts, "T": ts - 1, "s": symbol, "U": first, "u": u, "pu": pu, "b": b,
                    "a": a}
            frame = {"stream": f"{stream}@depth@0ms", "data": data}
            n_diffs += 1
            if n_diffs == 4:
                snapshot = json.dumps({"lastUpdateId": (first + u) // 2, "E": ts, "T": ts,
                                       "bids": _levels(sorted(sim.bids.items(), reverse=True), tick, decimals),
                                       "asks": _levels(sorted(sim.asks.items()), tick, decimals)},
                                      separators=(",", ":"))
        elif roll < 0.7:
            trade_id += 1
            side = rng.random() < 0.5
            price = sim.best_bid if side else sim.best_ask
            frame = {"stream": f"{stream}@trade", "data": {
                "e": "trade", "E": ts, "T": ts, "s": symbol, "t": trade_id, "p": _fmt(price, tick, decimals),
                "q": f"{rng.uniform(0.001, 2):.3f}", "X": "MARKET", "m": side}}
        else:
            frame = {"stream": f"{stream}@bookTicker", "data": {
                "e": "bookTicker", "u": u, "s": symbol, "b": _fmt(sim.best_bid, tick, decimals),
                "B": f"{sim.bids[sim.best_bid]:.3f}", "a": _fmt(sim.best_ask, tick, decimals),
                "A": f"{sim.asks[sim.best_ask]:.3f}", "T": ts, "E": ts}}
        text = json.dumps(frame, separators=(",", ":"))
        if inject == "non_json_line":
            text = text[: len(text) // 2]
        recv_ns = ts * 1_000_000 + rng.randint(100_000, 900_000)
        lines.append(f"{recv_ns} {text}")
        if inject in ("seq_gap", "nan_price", "crossed", "non_json_line"):
            defect_line = len(lines)
        if n_diffs == 6 and snapshot is not None and defect != "no_snapshot":
            lines.append(f"{recv_ns + 1} {snapshot}")
            snapshot = None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{symbol}_{day}.gz"
    body = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    if defect == "truncated_gzip":
        body = body[: 2 * len(body) // 3]
    path.write_bytes(body)
    return BuiltFile(path, defect_line)


def _put_csv_defect(rows: list[list[str]], at: int, defect: CsvDefect | None, *, prices: slice, nan_col: int,
                    number_col: int) -> None:
    """Put a row-level ``defect`` into ``rows[at]`` (``time_gap`` is the caller's: it moves the clock)."""
    if defect == "duplicate_ts":
        rows[at][0] = rows[at - 1][0]
    elif defect == "out_of_order":
        rows[at - 1], rows[at] = rows[at], rows[at - 1]
    elif defect == "nan_price":
        rows[at][nan_col] = "NaN"
    elif defect == "bad_number":
        rows[at][number_col] = "abc"
    elif defect == "non_positive_price":
        rows[at][prices] = ["0"] * (prices.stop - prices.start)


def write_ohlcv_csv(directory: str | Path, *, symbol: str = "BTC-PERP", start: str = "2024-01-02 00:00",
                    n_minutes: int = 300, seed: int = 0, defect: CsvDefect | None = None) -> BuiltFile:
    """Write a 1-minute OHLCV CSV ``{symbol}_{YYYYMMDD}_{YYYYMMDD}_1m.csv`` (timestamps ``YYYY-MM-DD HH:MM:SS.ffffff``).

    Parameters
    ----------
    directory, seed
        As for every builder (see the module docstring).
    symbol, start : str
        Symbol and first minute (UTC).
    n_minutes : int
        Rows (consecutive minutes unless a defect says otherwise).
    defect : str or None
        ``duplicate_ts``, ``time_gap`` (5 minutes missing), ``out_of_order`` (two rows
        swapped), ``nan_price`` (a close of ``NaN``), ``bad_number`` (a volume of ``abc``),
        ``non_positive_price`` (a row with all prices 0).
    """
    rng = random.Random(seed)
    t0 = dt.datetime.fromisoformat(start)
    price = rng.uniform(20_000, 60_000)
    rows: list[list[str]] = []
    minute = -1
    bad_at = rng.randint(n_minutes // 3, 2 * n_minutes // 3)
    for i in range(n_minutes):
        minute += 6 if defect == "time_gap" and i == bad_at else 1
        o = price
        c = max(1.0, o * (1 + rng.gauss(0, 0.001)))
        h, lo = max(o, c) * (1 + abs(rng.gauss(0, 0.0005))), min(o, c) * (1 - abs(rng.gauss(0, 0.0005)))
        ts = (t0 + dt.timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows.append([ts, f"{o:.1f}", f"{h:.1f}", f"{lo:.1f}", f"{c:.1f}", f"{rng.uniform(1e5, 5e6):.4f}"])
        price = c
    line = bad_at + 2
    _put_csv_defect(rows, bad_at, defect, prices=slice(1, 5), nan_col=4, number_col=5)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    end = t0 + dt.timedelta(minutes=minute)
    path = directory / f"{symbol}_{t0:%Y%m%d}_{end:%Y%m%d}_1m.csv"
    text = "timestamp,open,high,low,close,volume\n" + "".join(",".join(r) + "\n" for r in rows)
    path.write_text(text)
    return BuiltFile(path, line if defect else None)


def write_trades_csv(directory: str | Path, *, symbol: str = "BTCUSDT", day: str = "2024-01-02", n_trades: int = 2000,
                     seed: int = 0, header: bool = True, defect: CsvDefect | None = None) -> BuiltFile:
    """Write a Binance public trades CSV ``{symbol}-trades-{day}.csv`` (``id,price,qty,quote_qty,time,is_buyer_maker``).

    Parameters
    ----------
    directory, seed
        As for every builder (see the module docstring).
    symbol, day : str
        Symbol and UTC day (``YYYY-MM-DD``).
    n_trades : int
        Trades, about 10 a second from 00:00 UTC.
    header : bool
        Write the header row (older Binance files have none).
    defect : str or None
        ``duplicate_ts`` (a repeated trade id), ``time_gap`` (3 minutes without trades),
        ``out_of_order`` (two rows swapped), ``nan_price``, ``bad_number`` (a qty of
        ``abc``), ``non_positive_price``.
    """
    rng = random.Random(seed)
    t_ms = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)
    price = rng.uniform(20_000, 60_000)
    trade_id = rng.randint(10**8, 10**9)
    rows: list[list[str]] = []
    bad_at = rng.randint(n_trades // 3, 2 * n_trades // 3)
    for i in range(n_trades):
        t_ms += rng.randint(1, 200) + (180_000 if defect == "time_gap" and i == bad_at else 0)
        trade_id += 1
        price = max(1.0, price + rng.choice((-0.1, 0.0, 0.1)))
        qty = rng.uniform(0.001, 1.5)
        rows.append([str(trade_id), f"{price:.1f}", f"{qty:.3f}", f"{price * qty:.4f}", str(t_ms),
                     "true" if rng.random() < 0.5 else "false"])
    line = bad_at + 1 + int(header)
    _put_csv_defect(rows, bad_at, defect, prices=slice(1, 2), nan_col=1, number_col=2)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{symbol}-trades-{day}.csv"
    head = "id,price,qty,quote_qty,time,is_buyer_maker\n" if header else ""
    path.write_text(head + "".join(",".join(r) + "\n" for r in rows))
    return BuiltFile(path, line if defect else None)
