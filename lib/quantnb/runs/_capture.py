"""Sink configuration: the one place quantnb adds loguru handlers (loguru's advice for libraries)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from loguru import logger

from quantnb.errors import RunInterrupted
from quantnb.runs._secrets import SecretMasker

LOG_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS!UTC} | {level: <8} | {process.name}:{thread.name} | "
    "{name}:{line} | {message}"
)
CONSOLE_FORMAT = "{time:HH:mm:ss!UTC} | {level: <8} | {message}"
DEFAULT_THIRD_PARTY_LEVEL = "WARNING"
# Libraries that install their own stderr handler and stop propagation; we route them to the log.
_SELF_HANDLING_LOGGERS = ("optuna", "papermill", "ccxt", "websockets", "asyncio", "urllib3", "aiohttp")

_guard = threading.local()


class _InterceptHandler(logging.Handler):
    """Route stdlib ``logging`` records into loguru, keeping the caller's module and line."""

    def __init__(self, levels: dict[str, int], default_level: int):
        super().__init__(level=0)
        self._levels = sorted(levels.items(), key=lambda kv: len(kv[0]), reverse=True)
        self._default = default_level

    def _threshold(self, name: str) -> int:
        for prefix, level in self._levels:
            if name == prefix or name.startswith(prefix + "."):
                return level
        return self._default

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self._threshold(record.name):
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        if _is_interrupt_echo(record):
            level = "DEBUG"  # the run says it was interrupted, once; the library's echo goes to the log only
        frame: FrameType | None = sys._getframe(0)
        depth = 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).bind(stdlib=record.name).log(
            level, record.getMessage()
        )


_interrupt_echo = threading.local()


def _is_interrupt_echo(record: logging.LogRecord) -> bool:
    """Whether ``record`` is a library's report of an interrupt it passes on (optuna's "Trial 3 failed ...")."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and isinstance(exc, KeyboardInterrupt | RunInterrupted):
        _interrupt_echo.logger = record.name
        return True
    follow_up = getattr(_interrupt_echo, "logger", None) == record.name and "failed with value" in record.getMessage()
    _interrupt_echo.logger = None
    return follow_up


class _StreamToLogger(io.TextIOBase):
    """A stdout/stderr stand-in: tee to the original stream, log each complete line."""

    def __init__(self, name: str, original: TextIO | None, level: str, masker: SecretMasker):
        super().__init__()
        self.name_ = name
        self.original = original
        self._level = level
        self._mask = masker
        self._buf = ""

    def write(self, s: str) -> int:  # noqa: D102
        if not s:
            return 0
        if self.original is not None:
            self.original.write(self._mask(s))
        if getattr(_guard, "active", False):  # a sink failing and printing: do not loop
            return len(s)
        self._buf += s
        if "\n" in self._buf:
            *lines, self._buf = self._buf.split("\n")
            for line in lines:
                self._emit(line)
        return len(s)

    def _emit(self, line: str) -> None:
        line = line.rsplit("\r", 1)[-1].rstrip()  # progress bars: keep what a terminal shows
        if not line:
            return
        _guard.active = True
        try:
            logger.opt(depth=2).bind(stream=self.name_).log(self._level, "{}", line)
        finally:
            _guard.active = False

    def flush(self) -> None:  # noqa: D102
        if self.original is not None:
            self.original.flush()

    def fileno(self) -> int:  # noqa: D102
        if self.original is None:
            raise io.UnsupportedOperation("fileno")
        return self.original.fileno()

    def isatty(self) -> bool:  # noqa: D102
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]  # noqa: D102 - io.TextIOBase's is read-only at runtime
        return getattr(self.original, "encoding", None) or "utf-8"

    def writable(self) -> bool:  # noqa: D102
        return True

    def __getattr__(self, name: str) -> Any:
        # ipykernel calls sys.stdout.set_parent(...) at every cell: without it, output goes to the old cell
        if self.original is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.original, name)


class _AppendFileSink:
    """Worker-process sink: whole lines appended with O_APPEND; follows the parent's rotation."""

    def __init__(self, path: str):
        self.path = path
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.ino = os.fstat(self.fd).st_ino

    def write(self, message: str) -> None:
        try:
            if os.stat(self.path).st_ino != self.ino:
                os.close(self.fd)
                self._open()
        except FileNotFoundError:
            os.close(self.fd)
            self._open()
        os.write(self.fd, message.encode("utf-8", "replace"))


def _make_patcher(masker: SecretMasker) -> Callable[[Any], None]:
    def patch(record: Any) -> None:
        if not masker:
            return
        record["message"] = masker(record["message"])
        exc = record["exception"]
        if exc is not None and exc.value is not None:
            text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
            if masker(text) != text:
                masked = RuntimeError(masker(f"{exc.type.__name__}: {exc.value}"))
                record["exception"] = type(exc)(RuntimeError, masked, None)

    return patch


class SinkState:
    """What :func:`configure_sinks` changed, so the next configuration can undo it."""

    def __init__(self) -> None:
        self.stdout: TextIO | None = None
        self.stderr: TextIO | None = None
        self.excepthook: Any = None
        self.threading_excepthook: Any = None
        self.showwarning: Any = None
        self.ipython_callback: Any = None
        self.file_sinks: list[int] = []  # loguru handler ids writing the run's files

    def release_capture(self) -> None:
        """Stop capturing: put back stdout, stderr, hooks and ``warnings.showwarning``."""
        for name in ("stdout", "stderr"):
            original = getattr(self, name)
            if original is not None:
                current = getattr(sys, name)
                with contextlib.suppress(Exception):
                    current.flush()
                if isinstance(current, _StreamToLogger):
                    setattr(sys, name, original)
                setattr(self, name, None)
        if self.excepthook is not None:
            sys.excepthook = self.excepthook
            self.excepthook = None
        if self.threading_excepthook is not None:
            threading.excepthook = self.threading_excepthook
            self.threading_excepthook = None
        if self.showwarning is not None:
            warnings.showwarning = self.showwarning
            self.showwarning = None
        ip = _ipython()
        if ip is not None and self.ipython_callback is not None:
            with contextlib.suppress(ValueError):
                ip.events.unregister("post_run_cell", self.ipython_callback)
        self.ipython_callback = None

    def release_files(self) -> None:
        """Remove the sinks that write the run's files (session log, cumulative logs)."""
        for sink_id in self.file_sinks:
            with contextlib.suppress(ValueError):
                logger.remove(sink_id)
        self.file_sinks = []

    def restore(self) -> None:
        """Put back stdout, stderr, hooks and ``warnings.showwarning``; remove all loguru sinks."""
        self.release_capture()
        self.file_sinks = []
        logger.remove()


_state: SinkState | None = None


def release_sinks(state: SinkState) -> None:
    """End a run's capture: nothing logged or printed afterwards reaches its files."""
    state.release_capture()
    state.release_files()


def add_file_sink(state: SinkState | None, sink_id: int) -> None:
    """Register loguru handler ``sink_id`` as one of the run's files (removed at the run's end)."""
    if state is not None:
        state.file_sinks.append(sink_id)


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _route_stdlib(levels: dict[str, str] | None) -> None:
    parsed = {name: logging.getLevelName(lv.upper()) for name, lv in (levels or {}).items()}
    default = logging.getLevelName(DEFAULT_THIRD_PARTY_LEVEL)
    handler = _InterceptHandler(parsed, default)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(min([default, *parsed.values()]))
    for name in (*_SELF_HANDLING_LOGGERS, *parsed):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
        lg.propagate = True
        lg.setLevel(logging.NOTSET if name not in parsed else parsed[name])


# Modules whose INFO lines are the run's story (start, one summary per phase, end); the rest
# (readers, book sync, trainer epochs, SB3 steps) is per-file/per-item detail for the session log.
_CONSOLE_INFO_MODULES = ("quantnb.stages.", "quantnb.runs.")
_WARNING_NO = 30


def _console_filter(record: Any) -> bool:
    if "stream" in record["extra"] or record["extra"].get("console") is False:
        return False
    return record["level"].no >= _WARNING_NO or (record["name"] or "").startswith(_CONSOLE_INFO_MODULES)


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    logger.patch(lambda r: r.update({"name": "warnings", "line": lineno})).warning(
        "{}: {} ({}:{})", category.__name__, message, filename, lineno
    )


def configure_sinks(
    log_path: Path,
    *,
    console_level: str | None = "INFO",
    rotation_mb: float = 50.0,
    retention_days: float = 7.0,
    third_party_levels: dict[str, str] | None = None,
    capture_stdio: bool = True,
) -> SinkState:
    """Configure every sink of this process for one run; undo any previous configuration."""
    global _state
    if _state is not None:
        _state.restore()
    state = SinkState()
    masker = SecretMasker()
    logger.remove()
    logger.configure(patcher=_make_patcher(masker), extra={})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_sink = logger.add(
        str(log_path),
        level="DEBUG",
        format=LOG_FORMAT,
        rotation=f"{rotation_mb} MB",
        retention=f"{retention_days} days",
        compression="zip",
        mode="a",
        buffering=1,  # line-buffered: a line is in the OS once its logging call returns
        encoding="utf-8",
        enqueue=False,
        backtrace=True,
        diagnose=False,  # diagnose prints local variables: a secret could leak
    )
    state.file_sinks.append(file_sink)
    console = sys.stdout  # notebook output: a few plain lines, not a stderr wall
    if console_level is not None:
        logger.add(
            console,
            level=console_level.upper(),
            format=CONSOLE_FORMAT,
            filter=_console_filter,
            colorize=False,
            backtrace=False,
            diagnose=False,
        )
    _route_stdlib(third_party_levels)
    state.showwarning = warnings.showwarning
    warnings.showwarning = _log_warning
    if capture_stdio:
        state.stdout, state.stderr = sys.stdout, sys.stderr
        sys.stdout = _StreamToLogger("stdout", state.stdout, "INFO", masker)
        sys.stderr = _StreamToLogger("stderr", state.stderr, "WARNING", masker)
    _install_exception_hooks(state, console)
    _state = state
    return state


def _install_exception_hooks(state: SinkState, console: TextIO) -> None:
    state.excepthook = sys.excepthook

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        logger.opt(exception=(exc_type, exc, tb)).critical("Uncaught exception, process ending")
        traceback.print_exception(exc_type, exc, tb, file=console)

    sys.excepthook = excepthook
    state.threading_excepthook = threading.excepthook

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        logger.opt(exception=(args.exc_type, args.exc_value, args.exc_traceback)).error(
            "Uncaught exception in thread {}", name
        )

    threading.excepthook = thread_hook
    ip = _ipython()
    if ip is not None:

        def post_run_cell(result: Any) -> None:
            err = getattr(result, "error_in_exec", None)
            if err is not None:
                # the session log keeps the traceback; the notebook already shows the error once
                logger.bind(console=False).opt(exception=err).error("Notebook cell raised {}", type(err).__name__)

        ip.events.register("post_run_cell", post_run_cell)
        state.ipython_callback = post_run_cell


def configure_worker(log_path: str, third_party_levels: dict[str, str] | None = None) -> None:
    """Configure a worker process (ProcessPoolExecutor initializer) to log into the session log."""
    masker = SecretMasker()
    logger.remove()
    logger.configure(patcher=_make_patcher(masker))
    logger.add(_AppendFileSink(log_path), level="DEBUG", format=LOG_FORMAT, diagnose=False)
    _route_stdlib(third_party_levels)
    warnings.showwarning = _log_warning
    sys.stdout = _StreamToLogger("stdout", None, "INFO", masker)
    sys.stderr = _StreamToLogger("stderr", None, "WARNING", masker)
