#!/usr/bin/env bash
# The RESULTS.md comparison grids, run with `srprune compare` and copied (without the .srp
# artifacts) into benchmarks/results/compare-<model>/.
#
# Usage: bash benchmarks/compare_grid.sh drn-t [DATA_DIR] [WORK_DIR]
#        bash benchmarks/compare_grid.sh zoo ARCH [WORK_DIR]
#
# drn-t: the shipped x4 weights; 6 criteria x 3 ratios x 3 seeds with the uniform strategy,
#   then dr-search for the dr criterion at seed 0 only (a second run into the same grid
#   folder adds its cells); the latency run times every artifact at the end of that run.
# zoo ARCH: a zoo architecture at x4 with random (seeded) weights, no fine-tuning, so only
#   params, MACs, latency and the PSNR right after pruning of an untrained net are compared.
# One job with one torch thread: on a shared 2-core machine more threads made fine-tuning
# ten times slower (the threads wait for each other on busy cores).
set -euo pipefail
what=${1:?usage: compare_grid.sh drn-t [DATA_DIR] [WORK_DIR] | zoo ARCH [WORK_DIR]}
srprune=${SRPRUNE:-.venv/bin/srprune}

compare() {  # exit 1 (some cells failed: recorded in the reports) does not stop the script
  "$srprune" compare "$@" || [ $? -eq 1 ]
}

copy_reports() {  # grid folder -> benchmarks/results/<name>/ (reports only)
  mkdir -p "benchmarks/results/$2"
  cp "$1"/{results.json,results.csv,table.md,report.html,psnr_vs_latency.png} \
     "$1"/{psnr_vs_macs.png,widths.png} "benchmarks/results/$2/"
}

if [ "$what" = drn-t ]; then
  data=${2:-../shared/data/train}
  work=${3:-/tmp/compare-drn-t}
  # --distill-weight 0: the fine-tuning recipe the 54 uniform cells of RESULTS.md ran with
  # (output distillation became the default while they ran)
  common=(drn-t --scale 4 --data "$data" --eval builtin --preset fast --finetune-steps 10
          --finetune-batch 8 --finetune-patch 24 --distill-weight 0 --ratios 0.3,0.5,0.7
          --jobs 1 --threads 1 --out "$work")
  compare "${common[@]}" --criteria l1,random,cp,thinet,dcp,dr --seeds 0,1,2 --no-bench
  compare "${common[@]}" --criteria dr --strategies dr-search --seeds 0
  copy_reports "$work" compare-drn-t
elif [ "$what" = zoo ]; then
  arch=${2:?give the architecture, e.g. fsrcnn}
  work=${3:-/tmp/compare-$arch}
  compare "$arch" --scale 4 --criteria l1,random,cp,thinet --ratios 0.3,0.5 \
    --seeds 0,1 --data builtin --eval builtin --preset fast --finetune-steps 0 \
    --jobs 1 --threads 1 --out "$work"
  copy_reports "$work" "compare-$arch"
else
  echo "unknown grid '$what' (drn-t or zoo)" >&2
  exit 2
fi
