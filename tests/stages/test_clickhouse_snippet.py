"""The README's ClickHouse snippet, run from a notebook in notebooks/ (JupyterLab's kernel cwd)."""

from __future__ import annotations

import re

import nbformat
import pytest

from quantnb.errors import ConfigError
from quantnb.stages.record import RecordParams, open_clickhouse, run_record
from quantnb.testing.bybit_ws_server import BybitStreamServer
from tests.conftest import REPO

N_FRAMES = 414  # the Bybit sample: 1 snapshot + 413 deltas


def _readme_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    found = [b for b in blocks if "open_clickhouse" in b]
    assert len(found) == 1, "the README has one ClickHouse query snippet"
    return found[0]


@pytest.fixture
def recorded(project):
    with BybitStreamServer() as srv:
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=["BTCUSDT"], depth=200,
                                      channels=["book"], ws_url=srv.url("linear"),
                                      sinks=["raw", "parquet", "clickhouse"], max_messages=N_FRAMES,
                                      flush_every_s=0.3, progress_every_s=0.3, project_dir=str(project),
                                      console_level=None))
    assert res.status == "completed"
    return project


@pytest.mark.slow
def test_the_readme_clickhouse_snippet_runs_in_a_notebook_from_notebooks_cwd(recorded, monkeypatch):
    import nbclient

    monkeypatch.delenv("QUANTNB_HOME", raising=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(_readme_snippet()),
        nbformat.v4.new_code_cell("print('ROWS', per_minute.height, int(per_minute['deltas'].sum()), "
                                  "top_changed.height)"),
    ])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(recorded / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    _, minutes, deltas, top = text.split()
    assert int(minutes) >= 1 and int(deltas) == N_FRAMES - 1 and int(top) == 10, text
    assert not (recorded / "notebooks" / "data").exists(), "the snippet created a database under notebooks/"


def test_open_clickhouse_finds_the_projects_database_from_notebooks_and_refuses_a_missing_one(recorded, monkeypatch):
    monkeypatch.delenv("QUANTNB_HOME", raising=False)
    monkeypatch.chdir(recorded / "notebooks")
    with open_clickhouse() as ch:
        frames = ch.query("SELECT count() AS n FROM quantnb.book_events_frames")
    assert frames["n"][0] == N_FRAMES
    with pytest.raises(ConfigError, match="no ClickHouse data at .*elsewhere.*record with"):
        open_clickhouse("elsewhere")
    assert not (recorded / "elsewhere").exists() and not (recorded / "notebooks" / "data").exists()
