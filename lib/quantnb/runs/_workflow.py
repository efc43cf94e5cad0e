"""Start/end/elapsed/error logging for any block of work, sync or async."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from loguru import logger

F = TypeVar("F", bound=Callable[..., Any])


class WorkflowSession:
    """Log the start, end, elapsed time and any error (with traceback) of a block; re-raise."""

    def __init__(self, name: str, **context: Any):
        self.name = name
        self.context = context
        self.elapsed_s: float | None = None
        self._t0 = 0.0

    def __enter__(self) -> WorkflowSession:
        self._t0 = time.perf_counter()
        logger.bind(**self.context).opt(depth=1).info("Workflow '{}' started", self.name)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.elapsed_s = time.perf_counter() - self._t0
        log = logger.bind(**self.context).opt(depth=1)
        if exc is None:
            log.info("Workflow '{}' finished in {:.3f} s", self.name, self.elapsed_s)
        elif isinstance(exc, KeyboardInterrupt | GeneratorExit):
            log.warning("Workflow '{}' interrupted after {:.3f} s", self.name, self.elapsed_s)
        else:
            log.opt(exception=(exc_type, exc, tb)).error(
                "Workflow '{}' failed after {:.3f} s: {}: {}",
                self.name, self.elapsed_s, type(exc).__name__, exc,
            )
        return False


class AsyncWorkflowSession(WorkflowSession):
    """:class:`WorkflowSession` for ``async with``."""

    async def __aenter__(self) -> AsyncWorkflowSession:
        self.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


def log_workflow(name: str | None = None) -> Callable[[F], F]:
    """Decorate a function or coroutine function so each call runs in a :class:`WorkflowSession`."""

    def decorate(func: F) -> F:
        label = name or func.__qualname__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with AsyncWorkflowSession(label):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with WorkflowSession(label):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
