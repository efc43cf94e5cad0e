"""The kernel gets no SIGINT of its own at shutdown: jupyter_client's ``shutdown_kernel`` interrupts before it asks
the kernel to exit, which printed ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` after runs that
completed, and after a relayed interrupt could land in the run's ``finish``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from tests.conftest import QUANTNB, run_cli

# Cell 2 makes every SIGINT that reaches the kernel after it (once ipykernel puts back its handler of before
# the cell) a line in sigint_after_cells.txt: the runner relays one SIGINT, nothing else may send one.
_CELL = '''import signal, time
from pathlib import Path
from IPython import get_ipython
from quantnb.runs import start_run
from quantnb.stages import params_class

def _count(signum, frame):
    with open(Path(project_dir) / "sigint_after_cells.txt", "a") as f:
        f.write("SIGINT\\n")

get_ipython().kernel.saved_sigint_handler = _count
params = params_class("postmortem").parse(
    {"target_run_id": target_run_id, "run_id": run_id, "project_dir": project_dir}, source="test")
with start_run(params) as ctx:
    ctx.set_total(1)
    print("READY", flush=True)
    while WAIT and not (Path(project_dir) / "never").exists():
        time.sleep(0.01)
'''


def _notebook(root: Path, wait: bool) -> None:
    params = nbformat.v4.new_code_cell("target_run_id = None\nrun_id = None\nproject_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(f"WAIT = {wait}\n" + _CELL),
                                         nbformat.v4.new_code_cell("print('after')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "postmortem.ipynb")


def _sigints_after_cells(root: Path) -> list[str]:
    path = root / "sigint_after_cells.txt"
    return path.read_text().split() if path.exists() else []


# The same count for a real stage notebook, left as it is: an IPython startup file re-arms it after every cell.
_STARTUP = '''import os
from pathlib import Path
from IPython import get_ipython

def _count(signum, frame):
    with open(Path(os.environ["QNB_TEST_SIGINT_FILE"]), "a") as f:
        f.write("SIGINT\\n")

def _arm(result):
    get_ipython().kernel.saved_sigint_handler = _count

get_ipython().events.register("post_run_cell", _arm)
'''


@pytest.mark.slow
def test_a_completed_stage_sends_the_kernel_no_sigint_and_prints_no_kernel_error(project, tmp_path):
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-count-sigint.py").write_text(_STARTUP)
    env = {"IPYTHONDIR": str(tmp_path / "ipython"), "QNB_TEST_SIGINT_FILE": str(project / "sigint_after_cells.txt")}
    res = run_cli("run", "etl", "-p", "input_globs", '["data/samples/ohlcv/*.csv"]', "-p", "n_workers", "1",
                  cwd=project, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = (project / "runs").glob("etl_*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert "[IPKernelApp] ERROR" not in res.stderr
    assert _sigints_after_cells(project) == []


@pytest.mark.slow
def test_sigint_to_the_runner_reaches_the_kernel_once_and_the_run_is_recorded_interrupted(project):
    _notebook(project, wait=True)
    for attempt in range(2):
        proc = subprocess.Popen([QUANTNB, "run", "postmortem", "-p", "target_run_id", "x"], cwd=project,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run_id = proc.stdout.readline().split(" run ")[1].split()[0]
        hb = project / "logs" / "heartbeats" / f"{run_id}_heartbeat.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (hb.exists() and "total_items" in hb.read_text()):
            time.sleep(0.05)
        time.sleep(0.2 + 0.3 * attempt)  # inside the loop of cell 2
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, out + err
        assert "[IPKernelApp] ERROR" not in err
        record = json.loads((project / "runs" / run_id / "run.json").read_text())
        ckpt = json.loads((project / "logs" / "checkpoints" / f"{run_id}_completed.json").read_text())
        assert record["status"] == ckpt["status"] == "interrupted"
        # one resume hint in the notebook: the red line, not also the console's "Resume with ..."
        nb = nbformat.read(project / "runs" / run_id / "postmortem.ipynb", as_version=4)
        (outputs,) = [c.outputs for c in nb.cells if "start_run(params)" in c.source]
        streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        errors = [o for o in outputs if o.output_type == "error"]
        assert "READY" in streams and "Resume with" not in streams and f"--resume {run_id}" not in streams
        assert len(errors) == 1 and f"--resume {run_id}" in errors[0].evalue
        assert f"--resume {run_id}" in (project / "logs" / "postmortem" / f"{run_id}.log").read_text()
    assert _sigints_after_cells(project) == []
