#!/usr/bin/env bash
# Issue 14's goal figure: drn-t x4 pruned at 50 % and 70 %, fine-tuned for the same N steps
# plain (DR loss) and distilled (DR loss + L1 to the unpruned model's SR output), 3 seeds,
# against the unpruned drn-t fine-tuned for the same N steps (plain; a ratio-0 cell). The
# arm "features" adds feature distillation at the unit consumers (weight FEATURES, 1).
#
# Usage: [CRITERIA=l1,cp ARMS="plain distilled features" RATIOS=0.5,0.7 FEATURES=1] \
#        bash benchmarks/goal_figure.sh [STEPS] \
#            [DATA_DIR] [WORK_DIR]
# Seed 0 of every arm runs first, then seeds 1 and 2 extend the same grids (resumable: rerun
# the script to finish a stopped run). Reports (not the .srp artifacts) are copied to
# RESULTS-{unpruned,ARMS}/ (RESULTS: benchmarks/results/goal-drn-t-STEPS); the table:
# python benchmarks/goal_report.py benchmarks/results/goal-drn-t-STEPS
set -euo pipefail
steps=${1:-100}
data=${2:-../shared/data/train}
work=${3:-/tmp/goal-drn-t-$steps}
criteria=${CRITERIA:-l1,random,cp,thinet,dcp,dr}
arms=${ARMS:-plain distilled}
srprune=${SRPRUNE:-.venv/bin/srprune}

compare() {  # exit 1 (some cells failed: recorded in the reports) does not stop the script
  "$srprune" compare "$@" || [ $? -eq 1 ]
}

common=(drn-t --scale 4 --data "$data" --eval builtin --preset fast
        --finetune-steps "$steps" --finetune-batch 8 --finetune-patch 24
        --jobs 2 --threads 1 --no-bench)

compare "${common[@]}" --ratios 0 --criteria l1 --seeds 0,1,2 --distill-weight 0 \
  --out "$work-unpruned"
for seeds in 0 0,1,2; do
  for arm in $arms; do
    weight=$([ "$arm" = plain ] && echo 0 || echo 1)
    features=$([ "$arm" = features ] && echo "${FEATURES:-1}" || echo 0)
    compare "${common[@]}" --ratios "${RATIOS:-0.5,0.7}" --criteria "$criteria" \
      --seeds "$seeds" --distill-weight "$weight" --distill-features "$features" \
      --out "$work-$arm"
  done
done
results=${RESULTS:-benchmarks/results/goal-drn-t-$steps}  # where the reports are copied
for arm in unpruned $arms; do
  mkdir -p "$results-$arm"
  cp "$work-$arm"/{results.json,results.csv,table.md} "$results-$arm/"
done
