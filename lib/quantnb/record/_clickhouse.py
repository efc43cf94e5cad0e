"""The ClickHouse sink: Parquet shards inserted once each into ``<table>_frames``, with the events view ``<table>``.

Embedded chDB (a folder) or a server through clickhouse-connect. Names spliced into SQL
are checked (:func:`quantnb.record._guard.check_identifier`), string literals quoted
(:func:`_sql_str`). An embedded folder another process holds, or one that cannot be
opened, is refused naming the folder and the cause; a part whose checksums do not match
is found on open (``CHECK TABLE``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from loguru import logger

from quantnb._secrets import refuse_password_in_url
from quantnb.errors import ConfigError, OperationalError, TemporaryError
from quantnb.record._guard import check_identifier
from quantnb.retry import RetryPolicy

__all__ = ["ClickHouseConnection", "ClickHouseSink", "TABLE_DDL", "VIEW_DDL"]


TABLE_DDL = """CREATE TABLE IF NOT EXISTS {table}_frames (
    recv_ns Int64, exch_ms Int64, venue LowCardinality(String), market LowCardinality(String),
    symbol LowCardinality(String), channel LowCardinality(String), type LowCardinality(String),
    update_id Nullable(Int64), seq Nullable(Int64), side LowCardinality(Nullable(String)), n_bids UInt32,
    price Array(Float64), size Array(Float64), trade_id Nullable(String), shard LowCardinality(String)
) ENGINE = MergeTree
PARTITION BY toDate(intDiv(recv_ns, 1000000000))
ORDER BY (symbol, recv_ns)
SETTINGS non_replicated_deduplication_window = 10000, min_rows_for_wide_part = 4000000,
    min_bytes_for_wide_part = 1000000000"""

# One row per level or trade, EVENT_SCHEMA's columns, over the stored frames.
VIEW_DDL = """CREATE VIEW IF NOT EXISTS {table} AS
SELECT recv_ns, exch_ms, venue, market, symbol, channel, type, update_id, seq,
    if(channel = 'trade', side, if(k <= n_bids, 'bid', 'ask')) AS side, price, size, trade_id, shard
FROM {table}_frames ARRAY JOIN price, size, arrayEnumerate(price) AS k"""


class ClickHouseConnection:
    """An embedded chDB session or a server client (clickhouse-connect), whichever is open."""

    _session: Any = None
    _client: Any = None

    def close(self) -> None:
        """Release the database (embedded chDB allows one process per folder)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._client is not None:
            self._client.close()
            self._client = None


class ClickHouseSink(ClickHouseConnection):
    """Insert Parquet shards into a ClickHouse MergeTree table, once each.

    The shards' rows (one per frame) go into the MergeTree table ``<table>_frames``; the view
    ``<table>`` gives one row per level or trade (``EVENT_SCHEMA``). ``url`` None: embedded chDB
    under ``path``; else a server (clickhouse-connect), its password from ``CLICKHOUSE_PASSWORD`` only.
    """

    name = "clickhouse"

    def __init__(self, url: str | None, path: Path, table: str = "quantnb.book_events", retries: int = 3,
                 retry_wait_s: float = 0.5) -> None:
        self.url, self.path, self.table = url, path, table
        self.retries, self.retry_wait_s = retries, retry_wait_s
        self.retry = RetryPolicy(attempts=retries, timeout_s=None, wait_initial_s=retry_wait_s,
                                 wait_max_s=retry_wait_s * retries, wait_jitter_s=0.0, what="record/clickhouse")
        self.inserted = self.rows = 0
        self.bytes = 0
        self.backlog: list[str] = []
        # shards known to be in the table: read once (first insert), then kept up to date by this
        # process, so an insert does not scan the whole shard column (a cost growing with the table)
        self._known: set[str] | None = None
        check_identifier(table)
        db = table.split(".")[0] if "." in table else "default"
        if url is None:
            self._session = _open_chdb(path)
        else:
            self._session = None
            self._client = clickhouse_server_client(url)
        self._exec(f"CREATE DATABASE IF NOT EXISTS {db}")
        name = table.split(".")[-1]
        found = f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = '{name}'"
        engine = str(self._exec(found)).strip().strip('"')  # chDB's CSV quotes it
        if engine and engine != "View":
            raise ConfigError(f"ClickHouse {table} is a {engine} table, not the events view of {table}_frames "
                              "(a table of an earlier quantnb layout?): set clickhouse_table to a new name, or "
                              f"rename {table} in ClickHouse")
        self._exec(TABLE_DDL.format(table=table))
        self._exec(VIEW_DDL.format(table=table))
        if self._session is not None:
            self._check_parts()

    def _check_parts(self, partitions: int = 2) -> None:
        """Verify the checksums of the newest ``partitions`` days' parts; raise naming the folder and bad parts.

        Only the newest days (where a crash or a full disk leaves a damaged part): ``CHECK TABLE``
        reads every byte it checks, and a month of frames would delay each start.
        """
        db, name = (self.table.split(".", 1) if "." in self.table else ("default", self.table))
        ids = str(self._session.query(
            f"SELECT DISTINCT partition_id FROM system.parts WHERE database = {_sql_str(db)} AND table = "
            f"{_sql_str(name + '_frames')} AND active ORDER BY partition_id DESC LIMIT {int(partitions)}",
            "TSV")).split()
        bad = []
        for pid in ids:
            out = str(self._session.query(f"CHECK TABLE {self.table}_frames PARTITION ID {_sql_str(pid)} SETTINGS "
                                          "check_query_single_value_result = 0", "TSV"))
            bad += [ln.split("\t") for ln in out.splitlines() if ln.count("\t") >= 2 and ln.split("\t")[1] == "0"]
        if bad:
            self.close()
            parts = "; ".join(f"part {b[0]}: {b[2][:200]}" for b in bad[:3])
            raise OperationalError(f"chDB folder {self.path}: table {self.table}_frames has {len(bad)} corrupted "
                                   f"part(s) ({parts}): restore the folder from a backup, or move it aside and "
                                   "backfill from the Parquet shards (ClickHouseSink.backfill)")

    def _exec(self, sql: str) -> Any:
        if self._session is not None:
            return self._session.query(sql, "CSV")
        return self._client.command(sql)

    def _scalar(self, sql: str) -> int:
        if self._session is not None:
            return int(str(self._session.query(sql, "CSV")).strip() or 0)
        return int(self._client.command(sql))

    def shards_in_table(self) -> set[str]:
        """Return the shard names already in the table."""
        if self._session is not None:
            out = str(self._session.query(f"SELECT DISTINCT shard FROM {self.table}_frames", "TSV")).split()
            return set(out)
        return {r[0] for r in self._client.query(f"SELECT DISTINCT shard FROM {self.table}_frames").result_rows}

    def insert_shard(self, path: Path, events: int | None = None) -> bool:
        """Insert one shard unless the table holds it already; retry, else leave it for backfill."""
        shard = path.stem
        failures: list[Exception] = []

        def attempt() -> bool:
            try:
                return self._insert(path, shard, events, verify=bool(failures))
            except Exception as exc:  # noqa: BLE001 - any driver error: retried, then the shard is backlogged
                failures.append(exc)
                raise TemporaryError(f"ClickHouse insert of shard {shard}: {type(exc).__name__}: {exc}") from exc

        try:
            return self.retry.call(attempt)
        except TemporaryError:
            logger.error("ClickHouse insert of shard {} failed {} times ({}); its events stay in {} and are listed "
                         "for backfill", shard, len(failures), failures[-1], path)
        if shard not in self.backlog:
            self.backlog.append(shard)
        return False

    def _insert(self, path: Path, shard: str, events: int | None, verify: bool) -> bool:
        """Insert one shard (after a failed attempt, first ask the table whether it landed all the same)."""
        if self._known is None:
            self._known = self.shards_in_table()
        if shard in self._known or (verify and self._scalar(
                f"SELECT count() FROM {self.table}_frames WHERE shard = {_sql_str(shard)}")):
            logger.debug("ClickHouse already holds shard {}; not inserted again", shard)
            self._known.add(shard)
            return True
        if self._session is not None:
            self._session.query(
                f"INSERT INTO {self.table}_frames SETTINGS insert_deduplication_token = {_sql_str(shard)}, "
                f"max_insert_block_size = 100000000, min_insert_block_size_rows = 100000000 "
                f"SELECT * FROM file({_sql_str(str(path.resolve()))}, Parquet)", "CSV")
            n = events if events is not None else int(
                pl.scan_parquet(path).select(pl.col("price").list.len().sum()).collect().item())
        else:
            table = pl.read_parquet(path)
            self._client.insert_arrow(f"{self.table}_frames", table.to_arrow(),
                                      settings={"insert_deduplication_token": shard})
            n = int(table["price"].list.len().sum())
        self._known.add(shard)
        self.inserted += 1
        self.rows += n
        self.bytes += path.stat().st_size
        return True

    def backfill(self, shard_dir: Path) -> list[str]:
        """Insert every shard of ``shard_dir`` the table lacks (e.g. after a kill or failed inserts)."""
        have = self._known = self.shards_in_table()
        done = []
        for path in sorted(shard_dir.glob("*.parquet")):
            if path.stem not in have and self.insert_shard(path):
                done.append(path.stem)
                if path.stem in self.backlog:
                    self.backlog.remove(path.stem)
        if done:
            logger.info("ClickHouse backfill: inserted {} shard(s) missing from {}", len(done), self.table)
        return done


def clickhouse_server_client(url: str, name: str = "clickhouse_url") -> Any:
    """Return a clickhouse-connect client for ``http(s)://user@host:port/database``.

    Parameters
    ----------
    url : str
        Server URL without a password (``CLICKHOUSE_PASSWORD`` gives it); port defaults 8123 (http),
        8443 (https); user and database default to ``default``.
    name : str
        The parameter named in the error.

    Raises
    ------
    ConfigError
        If ``url`` carries a password.
    """
    import clickhouse_connect

    refuse_password_in_url(url, what=name, env="CLICKHOUSE_PASSWORD")
    u = urlsplit(url)
    return clickhouse_connect.get_client(
        host=u.hostname or "localhost", port=u.port or (8443 if u.scheme == "https" else 8123),
        username=u.username or "default", password=os.environ.get("CLICKHOUSE_PASSWORD", ""),
        secure=u.scheme == "https", database=(u.path.strip("/") or "default"))


def _sql_str(value: str) -> str:
    """Quote ``value`` as a ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _status_locked(path: Path) -> bool:
    """Return True when another process holds the ``flock`` of the chDB folder's ``status`` file."""
    try:
        fd = os.open(path / "status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _open_chdb(path: Path) -> Any:
    """Open an embedded chDB session on ``path``; a refusal names the folder and its cause (in use, damaged)."""
    import chdb.session

    path.mkdir(parents=True, exist_ok=True)
    try:
        return chdb.session.Session(str(path))
    except Exception as exc:  # noqa: BLE001 - chDB raises RuntimeError/ChdbError with the server's text
        text = str(exc)
        cause = text[text.rfind("DB::Exception:") + 14:].strip() if "DB::Exception:" in text else text
        if "Cannot lock file" in text or "already running" in text or _status_locked(path):
            pid = ""
            with contextlib.suppress(OSError):
                pid = next((ln.split(":", 1)[1].strip() for ln in (path / "status").read_text().splitlines()
                            if ln.startswith("PID:")), "")
            why = (f"another process uses it (pid {pid or '?'}, from its status file; Cannot lock file "
                   f"{path / 'status'}): stop it or use another folder")
        else:
            why = "it could not be opened (damaged or unreadable?): move it aside or restore it from a backup"
        raise OperationalError(f"chDB folder {path}: {why}; cause: {cause[:300]}") from exc
