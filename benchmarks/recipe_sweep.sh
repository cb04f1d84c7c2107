#!/usr/bin/env bash
# Optional GPU check used once to choose the CPU training recipe of drn-t (see RESULTS.md):
# runs several recipes with the CPU run's exact step counts side by side on one GPU.
# Usage: bash benchmarks/recipe_sweep.sh DATA_DIR OUT_DIR
set -u
data=$1; out=$2; mkdir -p "$out"
run() {  # name, then train_reference.py arguments
  name=$1; shift
  python3 benchmarks/train_reference.py --data "$data" --device cuda --threads 2 \
    --out "$out/$name.pt" --log "$out/$name.json" --force "$@" > "$out/$name.txt" 2>&1 &
}
run lr1e-3        --steps 5000 --lr 1e-3
run lr2e-3        --steps 5000 --lr 2e-3
run lr5e-4        --steps 5000 --lr 5e-4
run p48b8         --steps 5000 --lr 1e-3 --patch 48 --batch 8
run lr1e-3-long   --steps 8000 --lr 1e-3
run lr1e-3-nodual --steps 5000 --lr 1e-3 --dual-weight 0
wait
grep -H "gain" "$out"/*.txt | sed 's/.*\///' | awk -F: '{print $1": "$2}' | sort | tail -n 60
