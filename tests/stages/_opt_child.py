"""python _opt_child.py ROOT LABELLED_DIR N_TRIALS [resume]: one optimization worker process."""

import sys

from quantnb.stages.optimization import OptimizationParams, run_optimization

root, labelled, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
params = OptimizationParams(project_dir=root, labelled_dir=labelled, n_trials=n_trials, epochs_per_trial=1,
                            tcn_channels=[4, 8], lstm_hidden=[8], seq_len=[8, 16], batch_size=[512],
                            pruner_startup_trials=1, console_level=None, num_threads=1,
                            resume=len(sys.argv) > 4)
run_optimization(params)
