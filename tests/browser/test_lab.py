"""A researcher's session in JupyterLab (Chromium): Run All twice, the progress widget, the monitor."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SCREENSHOTS, Lab

pytestmark = pytest.mark.slow

_STATE_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!w || !w.content || !w.content.widgets || !kernel) return null;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  return {status: kernel.status, counts: cells.map(c => c.model.executionCount),
          busy: cells.some(c => c.promptNode && c.promptNode.textContent.includes('*'))};
}"""
_RUN_TIMEOUT_MS = 300_000
_STDERR = "application/vnd.jupyter.stderr"  # JupyterLab renders error outputs with the stderr mime type too


def _open(page, lab: Lab, path: str) -> None:
    page.goto(lab.notebook_url(path))
    page.wait_for_function(f"() => {{ const s = ({_STATE_JS})(); return s && s.status === 'idle'; }}",
                           timeout=180_000)


def _state(page) -> dict:
    return page.evaluate(_STATE_JS)


def _run_all(page, *, expect_error: bool = False) -> None:
    """Run > Run All Cells from the menu bar, then wait until the last code cell (or a failing one) has run."""
    before = _state(page)["counts"]
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    index = 1 if expect_error else len(before) - 1  # the call cell, or the last one
    page.wait_for_function(
        f"""() => {{ const s = ({_STATE_JS})(); if (!s) return false;
              const n = s.counts[{index}];
              return s.status === 'idle' && !s.busy && n !== null && n > {before[index] or 0}; }}""",
        timeout=_RUN_TIMEOUT_MS, polling=500)


def _set_parameters_cell(page, old: str, new: str) -> None:
    source = page.evaluate(
        """([old, neu]) => { const w = window.jupyterapp.shell.currentWidget;
             const cell = w.content.widgets.find(c => c.model.type === 'code');
             const src = cell.model.sharedModel.getSource();
             if (!src.includes(old)) return null;
             cell.model.sharedModel.setSource(src.replace(old, neu)); return cell.model.sharedModel.getSource(); }""",
        [old, new])
    assert source is not None and new in source, f"parameters cell has no {old!r}"


def _outputs(page, mime: str):
    return page.locator(f'.jp-OutputArea-output[data-mime-type="{mime}"]')


def test_etl_run_all_twice_then_the_monitor_shows_both_runs(page, lab: Lab):
    _open(page, lab, "notebooks/etl.ipynb")
    _run_all(page)
    progress = page.locator(".quantnb-progress").first
    assert "(100%)" in progress.inner_text() and "completed" in progress.inner_text(), progress.inner_text()
    assert _outputs(page, _STDERR).count() == 0, "error or stderr output in the notebook"
    page.screenshot(path=str(SCREENSHOTS / "etl_first_run_all.png"), full_page=False)

    _set_parameters_cell(page, "n_workers = 2", "n_workers = 1")
    _run_all(page)
    assert _outputs(page, _STDERR).count() == 0, "second Run All in the same kernel: an error or stderr output"
    console = "\n".join(_outputs(page, "application/vnd.jupyter.stdout").all_inner_texts())
    assert "Starting run etl_" in console and "ended: completed" in console, console
    assert len(console.splitlines()) <= 12, f"console too chatty:\n{console}"
    assert "Saved " not in console
    progress = page.locator(".quantnb-progress").first
    assert "(100%)" in progress.inner_text()
    html = page.locator(".qnb").first.inner_text()
    assert "Parquet file(s)" in html and "Data quality" in html
    page.locator(".qnb").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "etl_second_run_all_result.png"), full_page=False)
    runs = sorted(p.name for p in (lab.project / "runs").glob("etl_*"))
    assert len(runs) == 2, runs

    _open(page, lab, "notebooks/monitor.ipynb")
    _run_all(page)
    monitor = page.locator(".quantnb-monitor")
    monitor.wait_for()
    for run_id in runs:
        monitor.locator(f"[title='{run_id}']").first.wait_for(timeout=30_000)  # shortened, full id on hover
    assert monitor.inner_text().count("completed") >= 2
    page.screenshot(path=str(SCREENSHOTS / "monitor_two_runs.png"), full_page=False)
    monitor.get_by_role("button", name="post-mortem").first.click()
    monitor.locator(".qnb h4", has_text="Post-mortem").wait_for(timeout=120_000)
    page.screenshot(path=str(SCREENSHOTS / "monitor_postmortem.png"), full_page=True)


def test_a_misspelt_parameter_shows_one_clear_config_error(page, lab: Lab):
    _open(page, lab, "notebooks/etl.ipynb")
    _set_parameters_cell(page, "n_workers = 2", "n_worker = 2")
    _run_all(page, expect_error=True)
    errors = _outputs(page, _STDERR)
    assert errors.count() == 1
    text = errors.first.inner_text()
    assert "ConfigError" in text and "unknown parameter 'n_worker'; did you mean 'n_workers'" in text, text
    assert "Traceback" not in text and "config.py" not in text and len(text.splitlines()) <= 4, text
    everything = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in everything, f"a traceback reached the notebook:\n{everything}"
    errors.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "etl_config_error.png"), full_page=False)


def test_record_in_the_lab_then_interrupt_flushes_and_says_so(page, lab: Lab):
    """Record from a loopback Bybit server in JupyterLab; the kernel's Interrupt stops it cleanly."""
    from quantnb.record import read_events
    from quantnb.testing.bybit_ws_server import BybitStreamServer

    with BybitStreamServer(loop=True, message_delay_s=0.005) as srv:  # endless, ~200 frames/s
        _open(page, lab, "notebooks/record.ipynb")
        _set_parameters_cell(page, "ws_url = None", f"ws_url = {srv.url('linear')!r}")
        _set_parameters_cell(page, 'channels = ["book", "trades"]', 'channels = ["book"]')
        _set_parameters_cell(page, "flush_every_s = 5.0", "flush_every_s = 1.0")
        before = _state(page)["counts"]
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        progress = page.locator(".quantnb-progress").first
        page.wait_for_function(r"""() => { const p = document.querySelector('.quantnb-progress');
                                          return p && /(^|\s)([2-9]|\d{2,})\/(\?|\d+) shards/.test(p.innerText); }""",
                               timeout=120_000, polling=500)
        running = progress.inner_text()
        assert "msgs" in running and "gaps 0" in running, running
        page.screenshot(path=str(SCREENSHOTS / "record_running.png"), full_page=False)
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Interrupt Kernel$")).click()
        page.wait_for_function(f"() => {{ const s = ({_STATE_JS})(); return s && s.status === 'idle' && !s.busy; }}",
                               timeout=120_000, polling=500)
    assert _state(page)["counts"][1] > (before[1] or 0)
    console = "\n".join(_outputs(page, "application/vnd.jupyter.stdout").all_inner_texts())
    assert "Recorded " in console and "ended: interrupted" in console, console
    assert len(console.splitlines()) <= 12, f"console too chatty:\n{console}"
    errors = "\n".join(_outputs(page, _STDERR).all_inner_texts())
    assert len(errors.splitlines()) <= 6, f"a traceback wall:\n{errors}"
    everything = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in everything, f"a traceback reached the notebook:\n{everything}"
    assert "interrupted" in progress.inner_text(), progress.inner_text()
    page.locator(".jp-OutputArea-output").last.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "record_interrupted.png"), full_page=False)
    runs = sorted((lab.project / "runs").glob("record_*"))
    assert len(runs) == 1
    import json

    results = json.loads((runs[0] / "run.json").read_text())["results"]
    assert results["stopped_by"] == "stop" and results["messages"] > 0
    assert "stopped by an interrupt or SIGTERM (every sink flushed)" in everything
    events = read_events(lab.project / "data" / "recorded" / "parquet" / "bybit" / "linear")
    assert events.select("recv_ns", "update_id").unique().height == results["messages"], "a frame lost on interrupt"
