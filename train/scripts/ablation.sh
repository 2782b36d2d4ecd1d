#!/usr/bin/env bash
# Why LA-Net trails CE on the synthetic benchmark (train/RESULTS.md): one seed, 30 % symmetric
# noise, the experiment's budget, with one LA-Net ingredient changed at a time, plus both methods
# at twice the epochs. About 12 minutes on 2 CPU cores.
#
#   train/scripts/ablation.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/edge-fer-ablation}
target=${CARGO_TARGET_DIR:-$HOME/.cache/edge-fer/target}
CARGO_TARGET_DIR=$target cargo build --release --locked -p train >&2
bin=$target/release/train
mkdir -p "$out"
common=(--train-faces 1400 --test-faces 700 --size 64 --width 8 --blocks 1 --batch 64 --lr 1e-3
        --queue 1024 --seed 0 --noise symmetric --noise-rate 0.3)
run() {
  local name=$1; shift
  local start; start=$(date +%s)
  "$bin" fit "${common[@]}" --out "$out/$name" "$@" >"$out/$name.log" 2>&1
  "$bin" eval --run "$out/$name" >"$out/$name.eval.json"
  local acc; acc=$(grep -m1 '"accuracy"' "$out/$name.eval.json" | tr -dc '0-9.')
  local rec; rec=$(grep -m1 '"recovered"' "$out/$name.eval.json" | tr -dc '0-9' || true)
  printf '%-16s %-60s accuracy %.3f  recovered flips %s  (%s s)\n' "$name" "$*" "$acc" "${rec:--}" "$(( $(date +%s) - start ))"
}
run lanet            --epochs 15
run no-contrastive   --epochs 15 --contrastive-weight 0
run kl-only          --epochs 15 --contrastive-weight 0 --landmark-weight 0
run landmark-0.1     --epochs 15 --landmark-weight 0.1
run history-0.5      --epochs 15 --history-momentum 0.5
run ce-30-epochs     --epochs 30 --method ce
run lanet-30-epochs  --epochs 30
