"""Per-stage overhead of ``quantnb run`` against bare papermill on the same notebook and parameters.

Usage::

    .venv/bin/python benchmarks/bench_runner_overhead.py [--repeats 3] [--stages etl training]
        [--quantnb PATH_TO_QUANTNB ...]

Each stage's notebook runs in a throwaway project (the repo's notebooks, the samples linked in)
``repeats`` times through ``papermill`` and through each given ``quantnb`` executable (e.g. this
worktree's and an older checkout's, for before/after); the median wall time and the difference
are printed. The training stage is run without labelled data, so it stops right after importing
torch in the kernel: what is left is the start-up cost the runner adds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_PARAMS = {
    "etl": ["input_globs", "[data/samples/ohlcv/*.csv]", "n_workers", "1"],
    "training": ["labelled_dir", "data/labelled/none", "epochs", "1"],
    "postmortem": ["target_stage", "etl"],
}


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench-project'\n")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "data").mkdir()
    os.symlink(REPO / "data" / "samples", root / "data" / "samples")
    return root


def _timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - t0


def _papermill_cmd(python: str, project: Path, stage: str, out: Path) -> list[str]:
    params = STAGE_PARAMS[stage]
    cmd = [python, "-m", "papermill", str(project / "notebooks" / f"{stage}.ipynb"), str(out),
           "--cwd", str(project), "-k", "python3", "--no-progress-bar"]
    for name, value in zip(params[::2], params[1::2], strict=True):
        cmd += ["-y", f"{name}: {value}"]
    return cmd


def _quantnb_cmd(quantnb: str, stage: str) -> list[str]:
    params = STAGE_PARAMS[stage]
    help_text = subprocess.run([quantnb, "run", "--help"], capture_output=True, text=True, check=False).stdout
    cmd = [quantnb, "run", stage, *(["-q"] if "--quiet" in help_text else [])]  # older runners have no -q
    for name, value in zip(params[::2], params[1::2], strict=True):
        cmd += ["-p", name, value]
    return cmd


def _import_s(python: str, stage: str) -> float:
    code = f"from quantnb.stages import params_class; params_class({stage!r})"
    return statistics.median(_timed([python, "-c", code], REPO) for _ in range(2))


def main() -> int:
    """Print median wall times of papermill and quantnb run per stage, and the overhead."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=["etl", "training"], choices=sorted(STAGE_PARAMS))
    parser.add_argument("--quantnb", nargs="+", default=[str(Path(sys.executable).with_name("quantnb"))],
                        help="quantnb executables to compare (e.g. before and after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp) / "proj")
        if "postmortem" in args.stages:  # something to analyse
            subprocess.run(_quantnb_cmd(args.quantnb[0], "etl"), cwd=project, capture_output=True, check=False)
        print(f"{'stage':<11} {'runner':<44} {'papermill s':>11} {'quantnb s':>10} {'overhead s':>10} "
              f"{'ratio':>6} {'stage import s':>14}")
        for stage in args.stages:
            pm: list[float] = []
            qn: dict[str, list[float]] = {q: [] for q in args.quantnb}
            cmds = {q: _quantnb_cmd(q, stage) for q in args.quantnb}
            python = str(Path(args.quantnb[0]).with_name("python"))
            for i in range(args.repeats):  # round-robin, so load drift on a shared machine hits all alike
                pm.append(_timed(_papermill_cmd(python, project, stage, Path(tmp) / f"pm_{i}.ipynb"), project))
                for q in args.quantnb:
                    qn[q].append(_timed(cmds[q], project))
            pm_s = statistics.median(pm)
            for q in args.quantnb:
                q_s = statistics.median(qn[q])
                label = q if len(q) <= 44 else "…" + q[-43:]
                print(f"{stage:<11} {label:<44} {pm_s:>11.2f} {q_s:>10.2f} {q_s - pm_s:>10.2f} {q_s / pm_s:>6.2f} "
                      f"{_import_s(str(Path(q).with_name('python')), stage):>14.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
