"""Inputs that try to break the readers: a huge line, bytes that are not UTF-8, a stray quote."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from quantnb.data import ingest_file
from quantnb.errors import DataError
from quantnb.testing.builders import write_bybit_file
from tests.conftest import SAMPLES

MAX_LINE_BYTES = 16 << 20  # quantnb.data._io.MAX_LINE_BYTES (checked below)
HUGE_LINE_BYTES = 96 << 20  # 6 times the limit; about 100 kB zipped
_RSS = """
import json, resource, sys
from quantnb.data import ingest_file
from quantnb.errors import DataError
try:
    ingest_file(sys.argv[1])
    out = {"error": None}
except DataError as exc:
    out = {"error": str(exc), "line": exc.line}
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def _zip_with_lines(path: Path, member: str, head: bytes, huge_at: int, tail: bytes = b"") -> Path:
    """A zip whose member holds ``head`` lines, one line of HUGE_LINE_BYTES, then ``tail``; written in blocks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open(member, "w", force_zip64=True) as out:
        out.write(head)
        block = b"9" * (1 << 20)
        for _ in range(HUGE_LINE_BYTES // len(block)):
            out.write(block)
        out.write(b"\n" + tail)
    assert path.stat().st_size < 2 << 20 and head.count(b"\n") == huge_at - 1
    return path


def _ingest_in_child(path: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _RSS, str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["bybit", "trades"])
def test_a_zip_holding_one_huge_line_is_quarantined_with_its_line_in_bounded_memory(tmp_path, kind):
    if kind == "bybit":
        built = write_bybit_file(tmp_path / "src", n_deltas=20, seed=3)
        lines = built.path.read_bytes().splitlines(keepends=True)
        path = _zip_with_lines(tmp_path / (built.path.name + ".zip"), built.path.name, b"".join(lines[:5]), 6,
                               b"".join(lines[5:]))
    else:
        csv_lines = (SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").read_bytes().splitlines(keepends=True)
        path = _zip_with_lines(tmp_path / "BTCUSDT-trades-2024-08-08.zip", "BTCUSDT-trades-2024-08-08.csv",
                               b"".join(csv_lines[:40]), 41, b"".join(csv_lines[40:60]))
    small = _ingest_in_child(built.path if kind == "bybit" else SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv")
    got = _ingest_in_child(path)
    assert got["error"] is not None, "a 96 MiB line was accepted"
    assert f"line {6 if kind == 'bybit' else 41}: longer than {MAX_LINE_BYTES:,} bytes" in got["error"]
    assert got["line"] == (6 if kind == "bybit" else 41) and str(path) in got["error"]
    grew_mb = (got["maxrss_kb"] - small["maxrss_kb"]) / 1024
    assert grew_mb < 3 * MAX_LINE_BYTES / 2**20, f"peak RSS grew {grew_mb:.0f} MB over a normal file"


@pytest.mark.parametrize(("bad", "what"), [
    (b"1723161256999,61.8,62,61,\xff\xfe,3", "not UTF-8 text (byte"),
    (b'1723161256999,61.8,62,61"x,61.9,3', "a quote inside an unquoted field"),
    (b"1723161256999,61.8,62,61,61.9,3,7,8", "8 fields, expected 6"),
])
def test_a_csv_that_polars_cannot_read_names_the_line(tmp_path, bad, what):
    head = b"timestamp,open,high,low,close,volume\n" + b"".join(
        f"{1723161196999 + 60000 * i},61.8,62,61,61.9,3\n".encode() for i in range(30))
    path = tmp_path / "BTC-PERP_x_1m.csv"
    path.write_bytes(head + bad + b"\n" + head.split(b"\n", 1)[1])
    with pytest.raises(DataError) as err:
        ingest_file(path)
    assert err.value.line == 32 and f"{path} line 32: {what}" in str(err.value), str(err.value)


def test_a_plain_csv_line_past_the_limit_is_refused_before_polars_reads_it(tmp_path):
    from quantnb.data import _io

    assert _io.MAX_LINE_BYTES == MAX_LINE_BYTES
    path = tmp_path / "BTC-PERP_x_1m.csv"
    with open(path, "wb") as fh:
        fh.write(b"timestamp,open,high,low,close,volume\n1723161196999,61.8,62,61,61.9,3\n")
        fh.write(b"1" * (MAX_LINE_BYTES + 10) + b"\n")
    with pytest.raises(DataError, match=r"line 3: longer than") as err:
        ingest_file(path)
    assert err.value.line == 3
