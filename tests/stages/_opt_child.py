"""python _opt_child.py ROOT LABELLED_DIR N_TRIALS [resume] [NAME=VALUE ...]: one optimization worker process.

NAME=VALUE pairs override parameters (``storage=postgresql+psycopg://...``, ``study_name=s``); the
values are read as YAML. The parameters not overridden are the small study of ``SMALL_STUDY``.
"""

import sys

import yaml

from quantnb.stages.optimization import OptimizationParams, run_optimization

SMALL_STUDY = dict(epochs_per_trial=1, tcn_channels=[4, 8], lstm_hidden=[8], seq_len=[8, 16], batch_size=[512],
                   pruner_startup_trials=1, num_threads=1)

if __name__ == "__main__":
    root, labelled, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rest = sys.argv[4:]
    resume = bool(rest) and rest[0] == "resume"
    overrides = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in rest[resume:])}
    params = OptimizationParams(project_dir=root, labelled_dir=labelled, n_trials=n_trials, console_level=None,
                                resume=resume, **{**SMALL_STUDY, **overrides})
    run_optimization(params)
