"""Execute stage notebooks with papermill into ``runs/<run_id>/`` and record each run (``quantnb run``).

The command line (:mod:`quantnb.runner.cli`) imports papermill only for the commands that
execute a notebook, so ``quantnb runs`` (which only reads files) does not.
"""

from __future__ import annotations

from quantnb._lazy import defer_rfc3987_syntax

defer_rfc3987_syntax()  # papermill imports jsonschema: seconds of grammar building at every `quantnb run` start

__all__: list[str] = []
