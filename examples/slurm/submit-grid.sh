#!/bin/bash
# Submit a whole study: the dense networks first (the after-training methods pun-at,
# magnitude-at and imp start from them), then the method x seed grid, then the evaluation, each
# waiting for the previous jobs to succeed.
#
#   METHODS="pun random pun-at" SEEDS="0 1 2" examples/slurm/submit-grid.sh configs/full.yaml runs/full
set -euo pipefail
config=${1:?usage: submit-grid.sh CONFIG RUN_DIR [key=value ...]}
run_dir=${2:?usage: submit-grid.sh CONFIG RUN_DIR [key=value ...]}
shift 2
here=$(dirname "$0")
read -r -a seeds <<< "${SEEDS:?set SEEDS, e.g. SEEDS=\"0 1 2\"}"
read -r -a methods <<< "${METHODS:?set METHODS (besides dense), e.g. METHODS=\"pun random\"}"
mkdir -p logs

last=$(( ${#seeds[@]} - 1 ))
dense=$(METHODS=dense sbatch --parsable --export=ALL --array="0-$last" \
    "$here/grid-array.sbatch" "$config" "$run_dir" "$@")
last=$(( ${#methods[@]} * ${#seeds[@]} - 1 ))
grid=$(sbatch --parsable --export=ALL --dependency="afterok:$dense" --array="0-$last" \
    "$here/grid-array.sbatch" "$config" "$run_dir" "$@")
report=$(sbatch --parsable --export=ALL --dependency="afterok:$grid" \
    "$here/evaluate.sbatch" "$config" "$run_dir" "$@")
echo "dense: job $dense, grid: job $grid, evaluation: job $report (logs in logs/)"
