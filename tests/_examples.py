"""Run the ``Examples`` section of a docstring as a doctest, with the names a test provides."""

from __future__ import annotations

import doctest
from typing import Any


def run_examples(obj: Any, **names: Any) -> None:
    """Fail with doctest's report unless every example of ``obj``'s docstring gives its shown output."""
    test = doctest.DocTestParser().get_doctest(obj.__doc__ or "", dict(names), obj.__qualname__, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert test.examples, f"{obj.__qualname__} has no examples"
    assert runner.failures == 0, "".join(report)
