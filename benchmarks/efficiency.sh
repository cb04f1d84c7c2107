#!/usr/bin/env bash
# Issue 16, item 2: do pruned DRN-S models keep the unpruned model's roofline efficiency?
# DRN-S x4 (random weights: latency does not depend on them) pruned with l1 by the uniform
# strategy (scope internal; scope all; scope all with widths in multiples of 4, the widths
# ORT's NCHWc convs accept here) at 30/50/70 % of the parameters, and by the latency strategy
# (scope all, widths aligned automatically) at 1.43x / 2x / 3.33x (30/50/70 % less latency),
# widths only and with whole residual blocks (depth=true); the authors' drn-s30/50/70 beside
# them. One interleaved `srprune bench --roofline` run.
#
# Usage: bash benchmarks/efficiency.sh [WORK_DIR] [OUT_JSON]
# Environment: SPEEDUPS ("1.43 2 3.33"), NONCONV ("profile": the latency strategy's non-conv
# cost model; "fixed profile" makes both, named latency[-depth]-fixed-S.srp and
# latency[-depth]-S.srp), UNIFORM (1; 0 skips the uniform and authors' models), RUNS (10).
set -euo pipefail
work=${1:-/tmp/efficiency}
out=${2:-benchmarks/results/efficiency-drn-s.json}
srprune=${SRPRUNE:-.venv/bin/srprune}
mkdir -p "$work"
common=(drn-s --scale 4 --data builtin --preset fast --criterion l1 --force)
models=()
speedups=${SPEEDUPS:-1.43 2 3.33}
nonconv=${NONCONV:-profile}
runs=${RUNS:-10}
baselines=(drn-s)
[ "${UNIFORM:-1}" = 1 ] && baselines+=(drn-s30 drn-s50 drn-s70)
for r in 0.3 0.5 0.7; do
  [ "${UNIFORM:-1}" = 1 ] || break
  "$srprune" compress "${common[@]}" --ratio $r --scope internal --out "$work/u$r-internal.srp"
  "$srprune" compress "${common[@]}" --ratio $r --scope all --out "$work/u$r-all.srp"
  "$srprune" compress "${common[@]}" --ratio $r --scope all --round-to 4 \
    --out "$work/u$r-all-round4.srp"
  models+=("$work/u$r-internal.srp" "$work/u$r-all.srp" "$work/u$r-all-round4.srp")
done
for s in $speedups; do
  for nc in $nonconv; do
    tag=$([ "$nc" = profile ] && echo "" || echo "-$nc")
    latency=("${common[@]}" --strategy latency --speedup $s --scope all --threads 1
             --input-size 96 96 --strategy-opt nonconv=$nc)
    # random weights: measured sensitivity would rank noise, so L1 mass ranks the units
    "$srprune" compress "${latency[@]}" --strategy-opt quality=l1-mass \
      --out "$work/latency$tag-$s.srp"
    # depth: a block's quality loss is measured (noise on random weights: this run is about
    # speed and efficiency, not about which blocks go)
    "$srprune" compress "${latency[@]}" --strategy-opt depth=true \
      --out "$work/latency-depth$tag-$s.srp"
    models+=("$work/latency$tag-$s.srp" "$work/latency-depth$tag-$s.srp")
  done
done
"$srprune" bench "${baselines[@]}" "${models[@]}" --scale 4 --threads 1 \
  --input-size 96 96 --runs "$runs" --warmup 2 --roofline --json > "$out"
