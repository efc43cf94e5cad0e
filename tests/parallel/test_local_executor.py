"""The local implementation of the executor interface (the process pool the stages use by default)."""

from __future__ import annotations

import os
import signal

import pytest

from quantnb.errors import DataError
from quantnb.parallel import ExecutorError
from quantnb.parallel._local import LocalExecutor


def _ok_or_bad(x: int) -> int:
    if x < 0:
        raise DataError(f"item {x}: negative", path=f"file{x}")
    return x * x


@pytest.mark.parametrize("n_workers", [1, 2])
def test_local_executor_yields_every_item_once_and_reraises_its_own_error(tmp_path, n_workers):
    ex = LocalExecutor(n_workers, (str(tmp_path / "session.log"), {}))
    try:
        for x in (3, -1, 2):
            ex.submit(f"item{x}", _ok_or_bad, x)
        got, errors = {}, {}
        for done in ex.as_completed():
            try:
                got[done.key] = done.result()
            except DataError as exc:
                errors[done.key] = exc.path
    finally:
        ex.close()
    assert got == {"item3": 9, "item2": 4} and errors == {"item-1": "file-1"}


def test_a_dead_pool_process_is_an_executor_error_not_an_item_error(tmp_path):
    ex = LocalExecutor(2, (str(tmp_path / "session.log"), {}))
    try:
        ex.submit("ok", _ok_or_bad, 1)  # two tasks: one task alone runs in this process
        ex.submit("dies", os._exit, 3)
        # the exit code when the driver saw the process die; "died" when the pool had already dropped it (under load)
        with pytest.raises(ExecutorError, match=r"worker pool crashed while processing dies \(its worker process "
                                                r"\d+ (exited with code 3|died)\)"):
            for done in ex.as_completed():
                done.result()
    finally:
        ex.close()



def _kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


def test_a_worker_killed_by_sigkill_is_named_with_its_item_and_the_resume_command(tmp_path):
    ex = LocalExecutor(2, (str(tmp_path / "session.log"), {}), resume_hint="quantnb run etl --resume r1")
    try:
        ex.submit("data/raw/a.gz", _ok_or_bad, 2)
        ex.submit("data/raw/killed.gz", _kill_self, signal.SIGKILL)
        with pytest.raises(ExecutorError) as err:
            for done in ex.as_completed():
                assert done.key == "data/raw/a.gz" and done.result() == 4
    finally:
        ex.close()
    text = str(err.value)
    # "died" when the pool had already reaped the process before the driver saw it (under load): its exit unknown
    assert "data/raw/killed.gz (its worker process" in text and ("killed by SIGKILL" in text or " died)" in text)
    assert "quantnb run etl --resume r1" in text and "Nothing was quarantined" in text
