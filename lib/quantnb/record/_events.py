"""The normalized events table: raw venue frames (buffered as text) to one row per book level or trade.

Frames are kept as received and decoded in bulk at each flush by polars' NDJSON reader (in
Rust), so the per-message cost of the Parquet and ClickHouse sinks is one list append.

Columns (``EVENT_SCHEMA``):

- ``recv_ns``: local receive time, ns since the epoch (UTC); ``exch_ms``: the venue's
  event time, ms (Bybit ``ts`` of book frames, ``T`` of trades; Binance ``E`` / ``T``).
- ``venue`` (bybit | binance), ``market`` (linear | spot | usdm), ``symbol``.
- ``channel``: book | trade | bbo; ``type``: snapshot | delta | trade | bbo.
- ``update_id``: Bybit ``u``; Binance ``u`` of a diff, ``lastUpdateId`` of a REST snapshot,
  ``u`` of a bookTicker, trade id ``t`` of a trade. Null for Bybit trades.
- ``seq``: Bybit cross sequence ``seq``; Binance ``pu`` (previous diff's ``u``) of a diff.
- ``side``: bid | ask for book rows; buy | sell (the taker's side) for trades.
- ``price`` (quote per base unit), ``size`` (base units; 0 deletes a level).
- ``trade_id``: the venue's trade id as text (Bybit ``i``), null for book rows.
- ``shard``: the shard the row was written in (ClickHouse deduplicates on it).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import polars as pl

__all__ = ["EVENT_SCHEMA", "events_frame", "book_events_from_decoded", "BYBIT_BOOK", "BYBIT_TRADE",
           "BINANCE_DEPTH", "BINANCE_TRADE", "BINANCE_BBO", "BINANCE_SNAPSHOT"]

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "recv_ns": pl.Int64(), "exch_ms": pl.Int64(), "venue": pl.String(), "market": pl.String(),
    "symbol": pl.String(), "channel": pl.String(), "type": pl.String(), "update_id": pl.Int64(),
    "seq": pl.Int64(), "side": pl.String(), "price": pl.Float64(), "size": pl.Float64(),
    "trade_id": pl.String(), "shard": pl.String(),
}

# Frame kinds a client hands to the sinks.
BYBIT_BOOK = "bybit_book"
BYBIT_TRADE = "bybit_trade"
BINANCE_DEPTH = "binance_depth"
BINANCE_TRADE = "binance_trade"
BINANCE_BBO = "binance_bbo"
BINANCE_SNAPSHOT = "binance_snapshot"

_LEVELS = pl.List(pl.List(pl.String()))
_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    BYBIT_BOOK: {"type": pl.String(), "ts": pl.Int64(),
                 "data": pl.Struct({"s": pl.String(), "b": _LEVELS, "a": _LEVELS, "u": pl.Int64(), "seq": pl.Int64()})},
    BYBIT_TRADE: {"data": pl.List(pl.Struct({"T": pl.Int64(), "s": pl.String(), "S": pl.String(), "v": pl.String(),
                                             "p": pl.String(), "i": pl.String(), "seq": pl.Int64()}))},
    BINANCE_DEPTH: {"data": pl.Struct({"E": pl.Int64(), "s": pl.String(), "u": pl.Int64(), "pu": pl.Int64(),
                                       "b": _LEVELS, "a": _LEVELS})},
    BINANCE_TRADE: {"data": pl.Struct({"T": pl.Int64(), "s": pl.String(), "t": pl.Int64(), "p": pl.String(),
                                       "q": pl.String(), "m": pl.Boolean()})},
    BINANCE_BBO: {"data": pl.Struct({"u": pl.Int64(), "s": pl.String(), "b": pl.String(), "B": pl.String(),
                                     "a": pl.String(), "A": pl.String(), "E": pl.Int64()})},
    BINANCE_SNAPSHOT: {"lastUpdateId": pl.Int64(), "E": pl.Int64(), "bids": _LEVELS, "asks": _LEVELS},
}


def _decode(kind: str, recv_ns: list[int], texts: list[bytes]) -> pl.DataFrame:
    frame = pl.read_ndjson(b"\n".join(texts), schema=_SCHEMAS[kind])
    return frame.with_columns(recv_ns=pl.Series(recv_ns, dtype=pl.Int64))


def _levels(frame: pl.DataFrame, col: str, side: str) -> pl.DataFrame:
    out = frame.select(pl.exclude("b", "a", "bids", "asks"), lvl=pl.col(col)).explode("lvl")
    out = out.filter(pl.col("lvl").is_not_null())
    return out.with_columns(side=pl.lit(side), price=pl.col("lvl").list.get(0).cast(pl.Float64),
                            size=pl.col("lvl").list.get(1).cast(pl.Float64)).drop("lvl")


def _book(frame: pl.DataFrame, bid: str, ask: str) -> pl.DataFrame:
    return pl.concat([_levels(frame, bid, "bid"), _levels(frame, ask, "ask")])


def events_frame(kind: str, recv_ns: list[int], texts: list[bytes], *, venue: str, market: str,
                 symbols: list[str] | None = None, shard: str = "") -> pl.DataFrame:
    """Decode buffered frames of one kind into normalized event rows (schema ``EVENT_SCHEMA``).

    Parameters
    ----------
    kind : str
        One of the frame kinds (``BYBIT_BOOK``, ``BINANCE_DEPTH``, ...).
    recv_ns : list of int
        Local receive time of each frame, ns.
    texts : list of bytes
        The frames as received (JSON, one each, no newline).
    venue, market : str
        Written in every row.
    symbols : list of str, optional
        Symbol of each frame; needed for REST snapshots (their JSON has none).
    shard : str
        The shard name written in every row.

    Returns
    -------
    polars.DataFrame
        Rows in frame order (within a frame: bids then asks), schema ``EVENT_SCHEMA``.
    """
    if not texts:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    f = _decode(kind, recv_ns, texts)
    if kind == BYBIT_BOOK:
        f = f.select("recv_ns", exch_ms="ts", type="type", symbol=pl.col("data").struct.field("s"),
                     update_id=pl.col("data").struct.field("u"), seq=pl.col("data").struct.field("seq"),
                     b=pl.col("data").struct.field("b"), a=pl.col("data").struct.field("a"))
        rows = _book(f.with_row_index("_i"), "b", "a").sort("_i", maintain_order=True).drop("_i")
        rows = rows.with_columns(channel=pl.lit("book"), trade_id=pl.lit(None, pl.String))
    elif kind == BYBIT_TRADE:
        t = f.explode("data").unnest("data")
        rows = t.select("recv_ns", exch_ms="T", symbol="s", update_id=pl.lit(None, pl.Int64), seq="seq",
                        side=pl.col("S").str.to_lowercase(), price=pl.col("p").cast(pl.Float64),
                        size=pl.col("v").cast(pl.Float64), trade_id="i", channel=pl.lit("book"),
                        type=pl.lit("trade")).with_columns(channel=pl.lit("trade"))
    elif kind == BINANCE_DEPTH:
        d = f.unnest("data")
        f = d.select("recv_ns", "b", "a", exch_ms="E", symbol="s", update_id="u", seq="pu", type=pl.lit("delta"))
        rows = _book(f.with_row_index("_i"), "b", "a").sort("_i", maintain_order=True).drop("_i")
        rows = rows.with_columns(channel=pl.lit("book"), trade_id=pl.lit(None, pl.String))
    elif kind == BINANCE_TRADE:
        d = f.unnest("data")
        rows = d.select("recv_ns", exch_ms="T", symbol="s", update_id="t", seq=pl.lit(None, pl.Int64),
                        side=pl.when(pl.col("m")).then(pl.lit("sell")).otherwise(pl.lit("buy")),
                        price=pl.col("p").cast(pl.Float64), size=pl.col("q").cast(pl.Float64),
                        trade_id=pl.col("t").cast(pl.String), channel=pl.lit("trade"), type=pl.lit("trade"))
    elif kind == BINANCE_BBO:
        d = f.unnest("data").with_row_index("_i")
        common = [pl.col("recv_ns"), pl.col("E").alias("exch_ms"), pl.col("s").alias("symbol"),
                  pl.col("u").alias("update_id"), pl.col("_i")]
        rows = pl.concat([
            d.select(*common, side=pl.lit("bid"), price=pl.col("b").cast(pl.Float64),
                     size=pl.col("B").cast(pl.Float64)),
            d.select(*common, side=pl.lit("ask"), price=pl.col("a").cast(pl.Float64),
                     size=pl.col("A").cast(pl.Float64)),
        ]).sort("_i", maintain_order=True).drop("_i").with_columns(
            seq=pl.lit(None, pl.Int64), trade_id=pl.lit(None, pl.String), channel=pl.lit("bbo"), type=pl.lit("bbo"))
    elif kind == BINANCE_SNAPSHOT:
        f = f.with_columns(symbol=pl.Series(symbols or [""] * f.height, dtype=pl.String))
        f = f.select("recv_ns", "symbol", "bids", "asks", exch_ms="E", update_id="lastUpdateId",
                     seq=pl.lit(None, pl.Int64), type=pl.lit("snapshot"))
        rows = _book(f.with_row_index("_i"), "bids", "asks").sort("_i", maintain_order=True).drop("_i")
        rows = rows.with_columns(channel=pl.lit("book"), trade_id=pl.lit(None, pl.String))
    else:
        raise ValueError(f"unknown frame kind {kind!r}")
    rows = rows.with_columns(venue=pl.lit(venue), market=pl.lit(market), shard=pl.lit(shard))
    return rows.select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])


def book_events_from_decoded(kind: str, recv_ns: list[int], msgs: list[Any], *, venue: str, market: str,
                             shard: str = "") -> pl.DataFrame:
    """Build book event rows from frames the client already decoded (the fast path of the sinks).

    Same rows as :func:`events_frame` on the frames' text (prices and sizes are the same
    correctly rounded parses of the same decimal strings), without decoding the JSON again.

    Parameters
    ----------
    kind : {BYBIT_BOOK, BINANCE_DEPTH}
        The frame kind of ``msgs``.
    recv_ns : list of int
        Receive time of each frame, ns.
    msgs : list
        ``BybitBookMsg`` (Bybit) or the ETL's ``_Depth`` events (Binance), one per frame.
    venue, market, shard : str
        Written in every row.

    Returns
    -------
    polars.DataFrame
        Schema ``EVENT_SCHEMA``, frames in order, bids then asks within a frame.
    """
    if not msgs:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    if kind == BYBIT_BOOK:
        data = [m.data for m in msgs]
        head = {"exch_ms": [m.ts for m in msgs], "type": [m.type for m in msgs], "symbol": [d.s for d in data],
                "update_id": [d.u for d in data], "seq": [d.seq for d in data]}
    elif kind == BINANCE_DEPTH:
        data = msgs
        head = {"exch_ms": [m.E for m in msgs], "type": ["delta"] * len(msgs), "symbol": [d.s for d in data],
                "update_id": [d.u for d in data], "seq": [d.pu for d in data]}
    else:
        raise ValueError(f"no decoded fast path for frame kind {kind!r}")
    nb = np.fromiter(map(len, (d.b for d in data)), np.int64, len(data))
    na = np.fromiter(map(len, (d.a for d in data)), np.int64, len(data))
    n = nb + na
    # each frame's bids then asks, frames in order, flattened to price, size, price, size, ...
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(chain(d.b, d.a) for d in data)), np.float64)
    total = int(n.sum())
    idx = np.repeat(np.arange(len(data)), n)
    pos = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    is_bid = pos < np.repeat(nb, n)
    frame = pl.DataFrame({"recv_ns": np.asarray(recv_ns, np.int64)[idx], "_bid": is_bid,
                          "price": flat[0::2], "size": flat[1::2]})
    gather = pl.Series("_i", idx)
    out = frame.with_columns(
        *[pl.Series(k, v).gather(gather) for k, v in head.items()],
        venue=pl.lit(venue), market=pl.lit(market), channel=pl.lit("book"),
        side=pl.when(pl.col("_bid")).then(pl.lit("bid")).otherwise(pl.lit("ask")),
        trade_id=pl.lit(None, pl.String), shard=pl.lit(shard))
    return out.select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])
