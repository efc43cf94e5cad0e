"""Peak memory and time of ingesting a small zip that holds one huge line, and of an alias-bomb YAML.

A 2 MB zip can hold one 2 GiB line; a reader that reads a line whole needs that much memory
(and more while decoding it). quantnb caps a line at ``MAX_LINE_BYTES`` (16 MiB): the file is
quarantined with the line number. Each case runs in a fresh child process, whose peak RSS
(``ru_maxrss``) is printed next to that of a normal file of the same kind, so the difference is
what the long line costs.

Usage: ``python benchmarks/bench_input_limits.py [--line-mib 256]`` (the zip is built in a
temporary folder, in 1 MiB blocks).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from quantnb.data import ingest_file
from quantnb.errors import DataError
t0 = time.perf_counter()
try:
    ingest_file(sys.argv[1]); error = None
except DataError as exc:
    error = str(exc)[-160:]
print(json.dumps({"error": error, "s": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
_YAML = """
import json, resource, time
from quantnb.config import load_yaml_params
t0 = time.perf_counter()
try:
    load_yaml_params(%r); error = None
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"error": error, "s": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1800)
    if res.returncode:
        return {"error": f"exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}", "s": None, "rss_mb": None}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print peak RSS and time for a normal Bybit file, the same file with a huge line, and an alias bomb."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--line-mib", type=int, default=256, help="length of the huge line, MiB")
    args = parser.parse_args(argv)
    from quantnb.testing.builders import write_bybit_file

    with tempfile.TemporaryDirectory(prefix="qnb-bench-limits-") as tmp:
        built = write_bybit_file(Path(tmp) / "src", n_deltas=200, seed=1)
        lines = built.path.read_bytes().splitlines(keepends=True)
        huge = Path(tmp) / (built.path.name + ".zip")
        with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
                zf.open(built.path.name, "w", force_zip64=True) as out:
            out.write(b"".join(lines[:5]))
            for _ in range(args.line_mib):
                out.write(b"9" * (1 << 20))
            out.write(b"\n" + b"".join(lines[5:]))
        bomb = Path(tmp) / "bomb.yaml"
        bomb.write_text("\n".join([f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
                                  + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)])
                        + "\ninput_globs: *l8\n")
        t0 = time.perf_counter()
        normal, long_ = _child(_CHILD, str(built.path)), _child(_CHILD, str(huge))
        yaml = _child(_YAML % str(bomb))
        print(f"zip {huge.stat().st_size / 1e6:.2f} MB holding a {args.line_mib} MiB line "
              f"(cases took {time.perf_counter() - t0:.1f} s in all)")
        for name, r in (("normal Bybit file", normal), ("huge-line zip", long_), ("alias-bomb YAML", yaml)):
            rss = f"{r['rss_mb']:.0f} MB" if r["rss_mb"] is not None else "-"
            secs = f"{r['s']:.2f} s" if r["s"] is not None else "-"
            print(f"  {name:18s} peak RSS {rss:>8s}  {secs:>8s}  {r['error'] or 'read'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
