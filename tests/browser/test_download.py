"""The download notebook in JupyterLab (Chromium) against a loopback archive: progress, then a result that names
the day the venue did not publish and the file that failed its checksum."""

from __future__ import annotations

import re

import pytest

from quantnb.testing import ArchiveServer, sample_archive
from tests.browser.conftest import SCREENSHOTS, Lab
from tests.browser.test_lab import _STATE_JS, _STDERR, _open, _outputs, _set_parameters_cell
from tests.conftest import REPO

pytestmark = pytest.mark.slow

_DAILY = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-{:02d}.zip"


def test_download_shows_progress_then_names_the_missing_and_the_corrupt_file(page, lab: Lab):
    server = ArchiveServer(sample_archive(REPO / "data" / "samples"), bytes_per_s=40_000)
    server.remove(_DAILY.format(5))  # a day the venue did not publish: 404
    server.corrupt_checksum(_DAILY.format(7))  # published checksum does not match
    with server:
        _open(page, lab, "notebooks/download.ipynb")
        for old, new in [('start = "2024-07-01"', 'start = "2022-01-03"'), ('end = "2024-09-30"', 'end = "2022-01-10"'),
                         ("base_url = None", f"base_url = {server.url!r}"),
                         ("max_concurrency = 8", "max_concurrency = 2"), ("retry_attempts = 6", "retry_attempts = 1")]:
            _set_parameters_cell(page, old, new)
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        # while it runs: files done of the total, bytes, a rate and an ETA
        page.wait_for_function(
            """() => { const p = document.querySelector('.quantnb-progress');
                       return p && /[1-7]\\/8 files/.test(p.innerText) && /MB/.test(p.innerText)
                              && /ETA \\d/.test(p.innerText); }""", timeout=180_000, polling=200)
        running = page.locator(".quantnb-progress").first.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "download_progress.png"), full_page=False)
        page.wait_for_function(f"""() => {{ const s = ({_STATE_JS})();
                                   return s && s.status === 'idle' && !s.busy && s.counts[s.counts.length - 1]; }}""",
                               timeout=180_000, polling=500)
    page.locator(".qnb-download").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "download_result.png"), full_page=False)
    assert re.search(r"MB/s", running), running
    assert _outputs(page, _STDERR).count() == 0, "\n".join(_outputs(page, _STDERR).all_inner_texts())
    result = page.locator(".qnb-download").first.inner_text()
    run_id = next((lab.project / "runs").glob("download_*")).name
    assert "6 downloaded" in result and "1 missing" in result and "1 corrupt" in result, result
    assert "BTCUSDT-1m-2022-01-05.zip" in result and "not published" in result, result
    assert "BTCUSDT-1m-2022-01-07.zip" in result and "checksum" in result.lower(), result
    assert f"runs/{run_id}/quarantine" in result, result
    assert str(lab.project / "data" / "raw") in result, result
    assert "quantnb run etl" in result, result
