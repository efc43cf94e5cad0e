"""Long cells in JupyterLab (Chromium): progress inside a trial, a one-line interrupt, an idle monitor that is quiet."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SCREENSHOTS, Lab
from tests.browser.test_lab import _STATE_JS, _STDERR, _open, _outputs, _set_parameters_cell, _state

pytestmark = pytest.mark.slow

_SMALL_SLOW_STUDY = [  # one setting, small batches: a trial takes tens of seconds on a loaded machine
    ("n_trials = 6", "n_trials = 3"), ("epochs_per_trial = 3", "epochs_per_trial = 20"),
    ("tcn_channels = [16, 32]", "tcn_channels = [16]"), ("lstm_hidden = [16, 32]", "lstm_hidden = [16]"),
    ("seq_len = [30, 60]", "seq_len = [30]"), ("batch_size = [256, 512]", "batch_size = [32]"),
]  # num_threads is 1 by default


def _menu(page, menu: str, item: str) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


def test_optimization_shows_progress_inside_a_trial_then_an_interrupt_is_one_line(page, lab: Lab):
    from tests.stages.conftest import write_labelled_month_slice

    labelled = write_labelled_month_slice(lab.project)
    _open(page, lab, "notebooks/optimization.ipynb")
    _set_parameters_cell(page, "labelled_dir = None", f"labelled_dir = {str(labelled)!r}")
    for old, new in _SMALL_SLOW_STUDY:
        _set_parameters_cell(page, old, new)
    before = _state(page)["counts"]
    _menu(page, "Run", "Run All Cells")
    progress = page.locator(".quantnb-progress").first
    # before the first trial ends: which trial, epoch and batch, a rate and an ETA (not "0/3 trials · ETA ?")
    page.wait_for_function(
        """() => { const p = document.querySelector('.quantnb-progress');
                   return p && /^0\\/3 trials/.test(p.innerText) && /trial 0 · epoch \\d+\\/20 · batch \\d+\\/\\d+/
                          .test(p.innerText) && /ETA \\d/.test(p.innerText); }""",
        timeout=240_000, polling=250)
    running = progress.inner_text()
    assert re.search(r"[\d.]+ (s|min)/trial", running), running
    progress.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "optimization_in_trial_progress.png"), full_page=False)

    _menu(page, "Kernel", "Interrupt Kernel")
    page.wait_for_function(f"() => {{ const s = ({_STATE_JS})(); return s && s.status === 'idle' && !s.busy; }}",
                           timeout=120_000, polling=500)
    assert _state(page)["counts"][1] > (before[1] or 0)
    errors = _outputs(page, _STDERR)
    assert errors.count() == 1, "\n".join(errors.all_inner_texts())
    text = errors.first.inner_text().strip()
    run_id = next((lab.project / "runs").glob("optimization_*")).name
    assert len(text.splitlines()) == 1, text
    assert f"run {run_id} interrupted during trial 0 · epoch " in text, text
    assert f"resume: quantnb run optimization --resume {run_id}" in text and "trials finished and saved" in text
    everything = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in everything and "Trial 0 failed" not in everything, everything
    assert "interrupted" in progress.inner_text(), progress.inner_text()
    errors.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "optimization_interrupted.png"), full_page=False)


_COUNT_IOPUB_JS = """() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  window.__qnbMessages = [];
  kernel.iopubMessage.connect((_, msg) => { window.__qnbMessages.push(msg.header.msg_type); });
}"""


def test_the_monitor_left_open_sends_nothing_when_idle(page, lab: Lab):
    from quantnb.config import StageParams
    from quantnb.runs import _capture, start_run

    class ShortParams(StageParams):
        stage = "labelling"
        horizon: str = "30m"

        def run_suffix(self) -> str:
            return f"SELL_0004_BUY_0008_{self.horizon}"

    for horizon in ("30m", "1h"):  # two runs whose ids differ only in the config suffix's end
        with start_run(ShortParams(horizon=horizon, project_dir=str(lab.project), console_level=None)) as ctx:
            ctx.record_metrics(distribution=f"SELL 30% NEUTRAL 40% BUY 30% ({horizon})")
    _capture._state.restore()
    _capture._state = None
    _open(page, lab, "notebooks/monitor.ipynb")
    _set_parameters_cell(page, "refresh_s = 2.0", "refresh_s = 0.5")
    _menu(page, "Run", "Run All Cells")
    monitor = page.locator(".quantnb-monitor")
    monitor.wait_for()
    page.wait_for_function(f"() => {{ const s = ({_STATE_JS})(); return s && s.status === 'idle' && !s.busy; }}",
                           timeout=120_000, polling=500)
    text = monitor.inner_text()
    for run in (lab.project / "runs").glob("labelling_*"):
        assert run.name.removeprefix("labelling_") in text.replace("\n", ""), (run.name, text)
    page.wait_for_timeout(1500)
    page.evaluate(_COUNT_IOPUB_JS)
    page.wait_for_timeout(10_000)  # twenty refreshes
    messages = page.evaluate("() => window.__qnbMessages")
    assert messages == [], f"{len(messages)} kernel messages in 10 s with nothing running: {messages[:10]}"
    page.screenshot(path=str(SCREENSHOTS / "monitor_idle.png"), full_page=False)
