"""The local implementation of the executor interface (the process pool the stages use by default)."""

from __future__ import annotations

import os

import pytest

from quantnb.errors import DataError
from quantnb.parallel import ExecutorError, LocalExecutor


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
        ex.submit("dies", os._exit, 3)
        with pytest.raises(ExecutorError, match="process pool broke while running dies"):
            list(ex.as_completed())
    finally:
        ex.close()
