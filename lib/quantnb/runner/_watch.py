"""What ``quantnb run`` shows while the kernel works: a live tqdm line from the run's heartbeat JSON."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from quantnb.runs import read_json_tolerant

__all__ = ["HeartbeatProgress", "ipc_kernel_manager_class"]

_POLL_S = 0.5


class _Line:
    """Give tqdm a plain write/flush view of a stream."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class HeartbeatProgress:
    """Tail a run's heartbeat JSON in a thread and draw it as one tqdm line."""

    def __init__(self, heartbeat_path: Path, label: str, *, file: TextIO | None = None,
                 disable: bool | None = None, poll_s: float = _POLL_S):
        self.path = heartbeat_path
        self.label = label
        self.file = file
        self.disable = disable
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self.last: dict[str, Any] | None = None

    def __enter__(self) -> HeartbeatProgress:
        if self.disable is True:
            return self
        self._thread = threading.Thread(target=self._loop, name="quantnb-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._bar is not None:
            self.refresh()
            self._bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def _open_bar(self) -> None:
        import shutil

        from tqdm import tqdm

        columns = shutil.get_terminal_size((100, 24)).columns
        self._bar = tqdm(total=None, desc=self.label, unit="item", file=self.file or _Line(sys.stderr),
                         disable=self.disable, ncols=columns if columns >= 40 else 100, leave=True)

    def refresh(self) -> None:
        """Read the heartbeat once and redraw the line (a missing or torn file is skipped)."""
        hb = read_json_tolerant(self.path)
        if not isinstance(hb, dict) or self.disable is True:
            return
        if self._bar is None:
            self._open_bar()
        self.last = hb
        total = hb.get("total_items")
        done = hb.get("items_done")
        if done is None:
            done = int(hb.get("completed_items") or 0) + int(hb.get("failed_items") or 0)
        if total and self._bar.total != total:
            first = self._bar.total is None
            self._bar.reset(total=int(total))
            if first:  # items of an earlier attempt are not this attempt's rate
                self._bar.initial = int(done)
            self._bar.bar_format = ("{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                                    "[{elapsed}<{remaining}, {rate_fmt}]{postfix}")
        self._bar.n = int(done)
        post = []
        if hb.get("status") not in (None, "running"):
            post.append(str(hb["status"]))
        if hb.get("failed_items"):
            post.append(f"{hb['failed_items']} failed")
        if hb.get("memory_gb") is not None:
            post.append(f"RSS {float(hb['memory_gb']):.2f} GB")
        if hb.get("last_item"):
            post.append(str(hb["last_item"])[-48:])
        self._bar.set_postfix_str(" · ".join(post), refresh=False)
        self._bar.refresh()


def ipc_kernel_manager_class() -> type:
    """Return an AsyncKernelManager class on IPC sockets whose shutdown sends no SIGINT."""
    # IPC sockets are files only our user opens (no 'TCP without encryption' warning); jupyter_client 8
    # interrupts before shutdown_request, a second SIGINT that would land in a handler or the run's finish
    import uuid

    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class _IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            if self.transport == "ipc":
                runtime = Path(jupyter_runtime_dir())
                runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.ip = str(runtime / f"quantnb-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # set by shutdown_kernel just before its interrupt: skip that one
                return
            await super()._async_interrupt_kernel()

    return _IpcKernelManager
