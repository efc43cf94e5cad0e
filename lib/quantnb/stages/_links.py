"""How a stage finds the recorded outputs of the stages before it (the latest completed runs)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, PrivateAttr, model_validator

from quantnb._paths import project_root
from quantnb.config import StageParams, resolve_output_dir
from quantnb.errors import ConfigError
from quantnb.runs import RunContext, read_run_record, record_files, record_test_spans

_DONE = ("completed", "completed_with_errors")
SampleWeightCol = Literal["uniqueness", "return_weight"] | None  # the labels' AFML weights (training, optimization)


def instrument_of(frame: Any, source: str) -> str:
    """Return the data's ``symbol`` column value, else the instrument folder of ``source``."""
    if "symbol" in frame.columns and frame.height and frame["symbol"][0] is not None:
        return str(frame["symbol"][0])
    path = Path(source)
    return path.parent.name if any(ch in path.name for ch in "*?[") else path.name


def record_labelled_span(ctx: RunContext, labelled: Any, label_cfg: dict[str, Any], labelled_dir: str,
                         first_ts: Any, last_ts: Any, what: str) -> int:
    """Record that the run scores the labels of ``first_ts .. last_ts``; return earlier runs that did."""
    last = last_ts if isinstance(last_ts, dt.datetime) else dt.datetime.fromisoformat(str(last_ts))
    end = last + dt.timedelta(minutes=float(label_cfg.get("lookahead_min") or 0))
    instrument = instrument_of(labelled, str(label_cfg.get("input_glob") or labelled_dir))
    return record_test_spans(ctx, [(first_ts, end)], instrument=instrument, what=what)


def completed_runs(root: Path, stage: str) -> list[dict[str, Any]]:
    """Return the run.json of every completed run of ``stage`` under ``root/runs``, newest first."""
    found = []
    for rec_path in record_files(root):
        rec = read_run_record(rec_path.parent, detect_dead=False)
        if rec and rec.get("stage") == stage and rec.get("status") in _DONE:
            found.append({**rec, "run_id": rec.get("run_id") or rec_path.parent.name})
    return sorted(found, key=lambda r: (str(r.get("ended_at") or r.get("started_at") or ""), r["run_id"]),
                  reverse=True)


def latest_output(project_dir: str | os.PathLike[str] | None, stage: str, output: str,
                  *, parameter: tuple[str, str] | None = None) -> tuple[str, str] | None:
    """Return ``(run_id, path)`` of ``output`` of the latest completed ``stage`` run, or None."""
    root = project_root(project_dir)
    for rec in completed_runs(root, stage):
        path = (rec.get("outputs") or {}).get(output)
        if not path:
            continue
        if parameter is not None:
            given = (rec.get("parameters") or {}).get(parameter[0])
            if not given or resolve_output_dir(given, root) != resolve_output_dir(parameter[1], root):
                continue
        return rec["run_id"], str(path)
    return None


def latest_run_ids(project_dir: str | os.PathLike[str] | None, stage: str, n: int = 5) -> list[str]:
    """Return the ids of the ``n`` latest completed runs of ``stage``, newest first."""
    return [r["run_id"] for r in completed_runs(project_root(project_dir), stage)[:n]]


class LabelledDataParams(StageParams):
    """Parameters of a stage reading labelled data; ``labelled_dir=None``: the latest labelling run's."""

    labelled_dir: str | None = Field(
        None, description="Output folder of the labelling stage (absolute or relative to the project); None: "
                          "the latest completed labelling run's (quantnb runs --stage labelling).")
    _labelled_from: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _latest_labelled(self) -> Self:
        if self.labelled_dir is None:
            found = latest_output(self.project_dir, "labelling", "labelled_dir")
            if found is not None:
                object.__setattr__(self, "labelled_dir", found[1])  # frozen: set once, while validating
                self._labelled_from = found[0]
        return self

    def run_suffix(self) -> str:
        """Return the label suffix: the name of ``labelled_dir``."""
        return Path(self.labelled_dir).name if self.labelled_dir else "unlabelled"

    def labelled_folder(self) -> str:
        """Return ``labelled_dir``; ConfigError if it was not given and no labelling run has completed."""
        if self.labelled_dir is None:
            raise ConfigError("labelled_dir: not given, and no completed labelling run under runs/ to take it from; "
                              "run the labelling stage first (quantnb run labelling) or pass labelled_dir")
        return self.labelled_dir

    def labelled_source(self) -> str:
        """Return ``labelled_dir`` and where it came from, for the run's log."""
        folder = self.labelled_folder()
        if self._labelled_from is None:
            return f"labelled_dir {folder} (given)"
        return (f"labelled_dir {folder}: the output of {self._labelled_from}, the latest completed "
                "labelling run (pass labelled_dir to choose another)")
