"""A papermill I/O hook: every notebook papermill writes to a local path has its secrets masked.

papermill writes the output notebook, with the injected parameters cell, before the
first cell runs; a secret passed with ``papermill -p api_key ...`` would reach the file
even though the notebook then refuses it. quantnb registers this module under
papermill's ``papermill.io`` entry point group (``pyproject.toml``), so importing
papermill (its CLI included) replaces the local file handler with
:class:`MaskingLocalHandler`. ``quantnb run`` also installs it explicitly.
"""

from __future__ import annotations

from typing import Any

from papermill.iorw import LocalHandler

from quantnb._secrets import SecretMasker


class MaskingLocalHandler(LocalHandler):
    """papermill's local file handler, with secret values replaced by ``***`` in what it writes."""

    def write(self, buf: str, path: str) -> Any:
        """Write ``buf`` to ``path`` with every known secret value masked."""
        return super().write(SecretMasker()(buf), path)


def install() -> MaskingLocalHandler:
    """Make papermill's ``local`` handler a :class:`MaskingLocalHandler` (idempotent); return it."""
    import papermill.iorw as iorw

    handlers = iorw.papermill_io._handlers
    for n, (scheme, handler) in enumerate(handlers):
        if scheme == "local":
            if isinstance(handler, MaskingLocalHandler):
                return handler
            masking = MaskingLocalHandler()
            masking._cwd = getattr(handler, "_cwd", None)
            handlers[n] = ("local", masking)
            return masking
    masking = MaskingLocalHandler()
    iorw.papermill_io.register("local", masking)
    return masking


# papermill loads this object for the entry point (its scheme matches no real path); loading it
# is what installs the masking local handler, since papermill's own one is registered by then.
handler = install()
