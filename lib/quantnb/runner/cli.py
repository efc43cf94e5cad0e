"""``quantnb`` command line: ``run`` one stage, a ``pipeline`` of stages, or list ``runs``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from quantnb._yaml import safe_load_bounded
from quantnb.errors import ConfigError
from quantnb.runner._clihelp import StageHelpAction
from quantnb.stages import STAGES

_DESCRIPTION = ("quantnb: run one stage's notebook (run), the stages of a pipeline YAML (pipeline), "
                "or list the runs (runs). quantnb run <stage> --help lists a stage's parameters.")


def _parse_value(text: str) -> Any:
    try:
        return safe_load_bounded(text, source="-p value")
    except yaml.YAMLError:
        return text


def _run_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter; VALUE is read as YAML (0.1, true, [a, b])")
    common.add_argument("-f", "--params-file", help="YAML mapping of parameters")
    common.add_argument("--resume", metavar="RUN_ID", help="continue this run, skipping finished items")
    common.add_argument("--root", help="project directory (default: found from the cwd)")
    common.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    common.add_argument("--log-output", action="store_true",
                        help="stream the kernel's log lines here (instead of the progress line)")
    return common


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantnb", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks/<stage>.ipynb into runs/<run_id>/",
                         description="Execute notebooks/<stage>.ipynb into runs/<run_id>/ and record the run. "
                                     "quantnb run <stage> --help lists the stage's parameters.")
    stages = run.add_subparsers(dest="stage", required=True, metavar="STAGE")
    common = _run_options()
    for name in STAGES:  # help built on demand: listing runs imports no stage
        stage = stages.add_parser(name, parents=[common], add_help=False, help=f"the {name} stage (-h: its parameters)")
        stage.add_argument("-h", "--help", action=StageHelpAction, stage=name,
                           help="the stage's description, parameters and exit codes")
    runs = sub.add_parser("runs", help="list runs: status (dead processes detected), progress, ETA, metrics")
    runs.add_argument("--stage", choices=sorted(STAGES), help="only runs of this stage")
    runs.add_argument("--status", choices=("pending", "running", "completed", "completed_with_errors",
                                           "failed", "interrupted", "unreadable"),
                      help="only runs with this status")
    runs.add_argument("--root", help="project directory (default: found from the cwd)")
    pipe = sub.add_parser("pipeline", help="run the stages of a pipeline YAML in order")
    pipe.add_argument("-f", "--file", required=True, help="pipeline YAML, e.g. configs/demo.yaml")
    pipe.add_argument("--root", help="project directory (default: found from the cwd)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quantnb`` command; return the process exit code.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        0 on success, non-zero on a refused or failed run.
    """
    args = _build_parser().parse_args(argv)
    if args.command == "runs":  # reads files only: no papermill, no stage imports
        return _runs(args)
    from quantnb.runner._execute import run_stage
    from quantnb.runner._pipeline import run_pipeline

    try:
        if args.command == "run":
            overrides = {name: _parse_value(value) for name, value in args.param}
            outcome = run_stage(args.stage, overrides, params_file=args.params_file,
                                resume_run_id=args.resume, root=args.root,
                                progress=False if args.quiet else None, log_output=args.log_output)
            print(f"[quantnb] {outcome.stage}: {outcome.status} (run {outcome.run_id})")
            print(f"[quantnb] notebook: {outcome.notebook}")
            if outcome.record.get("log"):
                print(f"[quantnb] log: {outcome.record['log']}")
            if outcome.record.get("failure"):
                f = outcome.record["failure"]
                print(f"[quantnb] failed cell {f.get('cell_index')}: {f.get('ename')}: {f.get('evalue')}",
                      file=sys.stderr)
            return outcome.exit_code
        result = run_pipeline(args.file, root=args.root)
        print(f"\nPipeline {result.name}: {'ok' if result.ok else 'STOPPED at the first failure'}\n")
        print(result.table())
        print("\nWhere everything went:\n"
              "  runs/<run_id>/         executed notebook, run.json (status, parameters, outputs), models, bundles\n"
              "  logs/<stage>/          session logs, heartbeat_<day>.log and batches_<day>.log (TSV)\n"
              "  logs/heartbeats/       current status per run; logs/checkpoints/: what resume skips\n"
              "  data/processed/        ETL Parquet; data/labelled/<suffix>/: labels (or their output_dir)\n"
              "  debug_plots/<run_id>/  memory, throughput, confusion matrix, equity curve")
        return 0 if result.ok else 1
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2


def _runs(args: argparse.Namespace) -> int:
    from quantnb._paths import project_root
    from quantnb.runs import format_runs_table, list_runs, runs_dir

    root = project_root(args.root)
    summaries = list_runs(root, stage=args.stage, status=args.status)
    if not summaries:
        print(f"no runs under {runs_dir(root)}" + (" matching the filters" if args.stage or args.status else ""))
        return 0
    print(format_runs_table(summaries, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
