#!/usr/bin/env bash
# Reproduces model.onnx, reference-input.png, reference.json and mediapipe-detections.json here from the PyPI
# package `mediapipe` 0.10.14 (the last release whose wheel ships the BlazeFace .tflite files).
#
# Build-time only, in throw-away venvs:
# 1. tf2onnx (with tensorflow-cpu) converts mediapipe/modules/face_detection/
#    face_detection_short_range.tflite (BlazeFace, Apache-2.0) to ONNX.
# 2. onnxruntime runs the ONNX on one 128x128 input (reference-input.png) and records the raw
#    outputs, which tests/blazeface.rs checks tract reproduces.
# 3. mediapipe itself runs its face-detection solution on the fixture photos and records its
#    detections (boxes, six key points, scores), which the Rust decoding and non-maximum
#    suppression are checked against. mediapipe needs its own venv: it pins a newer protobuf than
#    tensorflow 2.15 takes.
# Nothing here is needed at run time; the outputs are committed.
#
# Usage: models/blazeface-short-range/convert.sh   (needs python3 with venv + pip, ~1.8 GB of disk)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../../tests/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/convert"
"$work/convert/bin/pip" install --quiet --upgrade pip
# Pinned: the versions the committed model.onnx was made with.
"$work/convert/bin/pip" install --quiet "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2" \
    "protobuf<4" "onnxruntime==1.18.1" "pillow<11"
"$work/convert/bin/pip" download --quiet --no-deps -d "$work/dl" "mediapipe==0.10.14"

"$work/convert/bin/python" - "$work" "$here" <<'PY'
import hashlib, sys, zipfile, pathlib

work, here = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next((work / "dl").glob("mediapipe-0.10.14-*.whl"))
with zipfile.ZipFile(wheel) as z:
    tflite = z.read("mediapipe/modules/face_detection/face_detection_short_range.tflite")
    (work / "face_detection_short_range.tflite").write_bytes(tflite)
    (here / "LICENSE.mediapipe").write_bytes(z.read("mediapipe-0.10.14.dist-info/LICENSE"))
print("wheel", wheel.name, "sha256", hashlib.sha256(wheel.read_bytes()).hexdigest())
print("tflite sha256", hashlib.sha256(tflite).hexdigest())
PY

# From inside $work with a relative name: tf2onnx writes the input's path into the model's doc
# string, and a temporary folder's name would change the sha256 from one run to the next.
(cd "$work" && "$work/convert/bin/python" -m tf2onnx.convert \
    --tflite face_detection_short_range.tflite --opset 13 --output "$here/model.onnx")

# One input for the tract/onnxruntime parity check: Grace Hopper's portrait (square, so no
# letterbox) resized to 128x128, stored as PNG so the test reads the very same pixels.
"$work/convert/bin/python" - "$here" "$fixtures" <<'PY'
import hashlib, json, sys, pathlib
import numpy as np
import onnxruntime as ort
from PIL import Image

here, fixtures = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
img = Image.open(fixtures / "grace_hopper_512x512.jpg").convert("RGB").resize((128, 128), Image.BILINEAR)
img.save(here / "reference-input.png")
x = (np.asarray(img, dtype=np.float32) / 127.5 - 1.0)[None]  # NHWC, values in [-1, 1]
sess = ort.InferenceSession(str(here / "model.onnx"), providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
regressors, scores = sess.run(["regressors", "classificators"], {"input": x})
scores = scores.reshape(-1)
# All 896 score logits, and the 16 box + key-point values of the eight best anchors.
top = [int(i) for i in np.argsort(-scores)[:8]]
ref = {
    "provenance": "onnxruntime %s on model.onnx, written by convert.sh" % ort.__version__,
    "input": "reference-input.png, values x / 127.5 - 1, NHWC",
    "outputs": names,
    "scores": [round(float(v), 5) for v in scores],
    "top_anchors": top,
    "top_regressors": [[round(float(v), 5) for v in regressors[0, i]] for i in top],
}
(here / "reference.json").write_text(json.dumps(ref) + "\n")
print("model.onnx sha256", hashlib.sha256((here / "model.onnx").read_bytes()).hexdigest())
PY

# mediapipe's own detections on the fixture photos: the decoding's reference.
python3 -m venv "$work/mediapipe"
"$work/mediapipe/bin/pip" install --quiet --upgrade pip
"$work/mediapipe/bin/pip" install --quiet "$work"/dl/mediapipe-0.10.14-*.whl "numpy<2" "pillow<11"
"$work/mediapipe/bin/python" - "$here" "$fixtures" <<'PY'
import json, sys, pathlib
import numpy as np
import mediapipe as mp
from PIL import Image

here, fixtures = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
photos = {}
with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as fd:
    for name in ["astronaut.png", "grace_hopper_512x512.jpg", "biden.jpg",
                 "640px-IceBlockNearJoekullsarlon.jpg"]:
        img = np.asarray(Image.open(fixtures / name).convert("RGB"))
        found = fd.process(img).detections or []
        photos[name] = [{
            "score": round(float(d.score[0]), 4),
            # Relative to the photo's width and height, as mediapipe reports them.
            "box": [round(v, 5) for v in (d.location_data.relative_bounding_box.xmin,
                                          d.location_data.relative_bounding_box.ymin,
                                          d.location_data.relative_bounding_box.width,
                                          d.location_data.relative_bounding_box.height)],
            "keypoints": [[round(k.x, 5), round(k.y, 5)] for k in d.location_data.relative_keypoints],
        } for d in found]
        print(name, photos[name])
(here / "mediapipe-detections.json").write_text(json.dumps({
    "provenance": "mediapipe %s, solutions.face_detection model_selection=0 (short range), "
                  "min_detection_confidence 0.5, written by convert.sh" % mp.__version__,
    "photos": photos}, indent=1) + "\n")
PY
