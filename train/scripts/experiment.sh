#!/usr/bin/env bash
# The synthetic noisy-label experiment of train/RESULTS.md: CE vs LA-Net, 3 seeds, at 0 %,
# 30 % symmetric and 30 % asymmetric noise, same budget for every run. Builds the release binary,
# then trains and evaluates each run under OUT (default target-independent /tmp folder) and prints
# the per-run accuracies and a mean +- std table. About 25 minutes on 2 CPU cores.
#
#   train/scripts/experiment.sh [OUT] [EXTRA FIT OPTIONS FOR LA-NET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/edge-fer-experiment}
shift || true
extra=("$@")
target=${CARGO_TARGET_DIR:-$HOME/.cache/edge-fer/target}
CARGO_TARGET_DIR=$target cargo build --release --locked -p train >&2
bin=$target/release/train
mkdir -p "$out"
results=$out/results.tsv
: >"$results"
# The shared budget: a small-width ResNet (width 8, one block per stage) on 64x64 crops,
# 1400 training and 700 clean test faces, 15 epochs of batch 64, Adam 1e-3 decayed to 0.
common=(--train-faces 1400 --test-faces 700 --size 64 --width 8 --blocks 1 --batch 64
        --epochs 15 --lr 1e-3 --queue 1024)
for seed in 0 1 2; do
  for noise in none symmetric asymmetric; do
    for method in ce lanet; do
      run=$out/$method-$noise-$seed
      args=("${common[@]}" --seed "$seed" --method "$method" --out "$run")
      [ "$noise" = none ] || args+=(--noise "$noise" --noise-rate 0.3)
      [ "$method" = lanet ] && args+=("${extra[@]}")
      start=$(date +%s)
      "$bin" fit "${args[@]}" >"$run.log" 2>&1 || { echo "run $run failed: see $run.log" >&2; exit 1; }
      "$bin" eval --run "$run" >"$run.eval.json"
      acc=$(grep -m1 '"accuracy"' "$run.eval.json" | tr -dc '0-9.')
      printf '%s\t%s\t%s\t%s\t%s\n' "$method" "$noise" "$seed" "$acc" "$(( $(date +%s) - start ))" | tee -a "$results"
    done
  done
done
echo
echo "clean test accuracy, mean +- std over 3 seeds (sample std)"
for noise in none symmetric asymmetric; do
  for method in ce lanet; do
    awk -F'\t' -v m="$method" -v n="$noise" '$1==m && $2==n {s+=$4; q+=$4*$4; c++}
      END {mean=s/c; sd=(c>1)?sqrt((q-c*mean*mean)/(c-1)):0; printf "%-6s %-11s %.3f +- %.3f (n=%d)\n", m, n, mean, sd, c}' "$results"
  done
done
