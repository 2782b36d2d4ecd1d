#!/usr/bin/env bash
# Three runs of train/RESULTS.md's settings at seed 0 (CE and LA-Net at 30 % symmetric noise,
# SCL+UERM+ARM at 30 % asymmetric), each evaluated, and the last one exported and run over its
# clean test crops by edge-fer: what a refactor of the trainer must leave unchanged to the last
# printed digit. Run it with the binaries from before and after a change and compare the folders
# with `diff -r` (metrics.jsonl, eval.json, the ONNX file's sha256 and the runtime's output).
# About 6 minutes on 2 CPU cores.
#
#   train/scripts/same-numbers.sh OUT [TRAIN_BIN] [EDGE_FER_BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: same-numbers.sh OUT [TRAIN_BIN] [EDGE_FER_BIN]}
target=${CARGO_TARGET_DIR:-$HOME/.cache/edge-fer/target}
if [ -z "${2:-}" ] || [ -z "${3:-}" ]; then
  CARGO_TARGET_DIR=$target cargo build --release --locked -p train -p edge-fer >&2
fi
bin=${2:-$target/release/train}
edge=${3:-$target/release/edge-fer}
mkdir -p "$out"
# The budget of experiment.sh and second-method.sh.
common=(--train-faces 1400 --test-faces 700 --size 64 --width 8 --blocks 1 --batch 64
        --epochs 15 --lr 1e-3 --queue 1024 --seed 0 --noise-rate 0.3)
run() {
  local name=$1; shift
  rm -rf "${out:?}/$name"
  "$bin" fit --out "$out/$name" "${common[@]}" "$@" >"$out/$name.log" 2>&1
  "$bin" eval --run "$out/$name" | grep -v '"checkpoint"' >"$out/$name.eval.json"
  cp "$out/$name/metrics.jsonl" "$out/$name.metrics.jsonl"
  echo "$name: $(grep -m1 '"accuracy"' "$out/$name.eval.json" | tr -dc '0-9.')" >&2
}
run ce-symmetric --method ce --noise symmetric &
run lanet-symmetric --method lanet --noise symmetric &
wait
run scl-uerm-arm-asymmetric --method ce --noise asymmetric --scl-weight 0.5 --scl-temperature 0.1 \
  --relabel-fraction 0.3 --relabel-margin 0.2 --relabel-from 5 --uncertainty-window 3 --arm
last=$out/scl-uerm-arm-asymmetric
rm -rf "$out/export" "$out/crops"
"$bin" export --run "$last" --out "$out/export" --name same-numbers >/dev/null
"$bin" crops --run "$last" --out "$out/crops" >/dev/null
sha256sum <"$out/export/model.onnx" >"$out/model.onnx.sha256"
# The exported model through the runtime: every crop's probabilities, in file order.
find "$out/crops" -name '*.png' | sort >"$out/crops.txt"
# Only the faces: the source path and the read time differ between two runs of the script.
xargs "$edge" --model "$out/export/model.json" --aligned --image <"$out/crops.txt" \
  | python3 -c 'import json, sys
for line in sys.stdin:
    print(json.dumps(json.loads(line)["faces"]))' >"$out/runtime.jsonl"
echo "wrote $out: *.metrics.jsonl, *.eval.json, model.onnx.sha256, runtime.jsonl" >&2
