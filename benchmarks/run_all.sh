#!/bin/sh
# Regenerate every section of docs/BENCHMARKS.md (hours on a 2-core CPU; each step resumes).
set -e
cd "$(dirname "$0")"
PY=${PY:-../.venv/bin/python}
$PY foundation.py
$PY demo_pun.py
$PY pun_search.py \
    --setting "prune.pun_allocation=global,lr=0.01,beta=0.01,init_prob=0.14500000000000002" \
    --setting "lr=0.01,beta=0.01,init_prob=0.145" \
    --setting "lr=0.05,beta=0.01,init_prob=0.14500000000000002" \
    --setting "lr=0.05,beta=1,init_prob=0.14500000000000002" \
    --setting "prune.pun_allocation=global" \
    --setting "prune.pun_allocation=erk" \
    --setting ""
$PY pruning.py prune.imp_rounds=2 data.max_test_slices=12 "evaluate.suites=[{name: id}]" \
    --steps 200 --methods dense pun-uniform pun-at random snip imp
$PY pruning.py data.max_test_slices=12 "evaluate.suites=[{name: id}]" \
    --steps 200 --methods dense synflow --section pruning-synflow --out runs/bench-pruning-synflow
$PY data_pipeline.py
$PY compute.py
$PY structured.py
$PY fastmri_synth.py
$PY overfit.py --jobs 2
# reads the masks of the results grid (python benchmarks/results.py --jobs 2, ~6.5 h): skipped without them
if [ -d ../runs/results ]; then $PY search_objective.py; fi
