#!/usr/bin/env python3
"""Writes points.json here: the 3-D positions of ten dlib landmarks on MediaPipe's canonical face.

The canonical face model (mediapipe/modules/face_geometry/data/canonical_face_model.obj,
Apache-2.0, 468 vertices in centimetres, x to the image's right, y up, z towards the camera) is
the mean face MediaPipe's face-geometry module fits. edge-fer's head pose (src/pose.rs) needs only
the few points dlib's 68 also mark, and the stablest of them under expressions: the eye corners,
the top and tip of the nose, the base of the nose, the mouth corners and the chin.

Usage: extract.py PATH/TO/canonical_face_model.obj
(from a checkout of github.com/google-ai-edge/mediapipe; the file is checked by sha256: the
version last changed in commit a908d668c730da128dfa8d9f6bd25d519d006692).
Build-time only: the output is committed and compiled into edge-fer.
"""
import hashlib
import json
import pathlib
import sys

OBJ_SHA256 = "8bac80443397e113f41a8b565ea72c59390bc031d9defab289dba7bc0c54e618"

# dlib 68-point index (iBUG 300-W, from 0) -> canonical-mesh vertex (from 0), with what it marks.
# The subject's right is the image's left: dlib 36 is the right eye's outer corner.
PAIRS = [
    (27, 168, "nasion, top of the nose bridge"),
    (30, 1, "nose tip"),
    (33, 2, "subnasale, base of the nose"),
    (36, 33, "right eye, outer corner"),
    (39, 133, "right eye, inner corner"),
    (42, 362, "left eye, inner corner"),
    (45, 263, "left eye, outer corner"),
    (48, 61, "mouth, right corner"),
    (54, 291, "mouth, left corner"),
    (8, 152, "chin"),
]


def main():
    obj = pathlib.Path(sys.argv[1]).read_bytes()
    digest = hashlib.sha256(obj).hexdigest()
    if digest != OBJ_SHA256:
        sys.exit(f"{sys.argv[1]}: sha256 {digest}, expected {OBJ_SHA256}")
    vertices = [
        [float(v) for v in line.split()[1:4]]
        for line in obj.decode().splitlines()
        if line.startswith("v ")
    ]
    if len(vertices) != 468:
        sys.exit(f"{sys.argv[1]}: {len(vertices)} vertices, expected 468")
    points = [
        {"dlib": d, "mesh": m, "what": what, "xyz_cm": vertices[m]} for d, m, what in PAIRS
    ]
    out = pathlib.Path(__file__).with_name("points.json")
    out.write_text(
        json.dumps(
            {
                "source": "mediapipe/modules/face_geometry/data/canonical_face_model.obj",
                "source_sha256": OBJ_SHA256,
                "axes": "centimetres; x to the image's right, y up, z towards the camera",
                "points": points,
            },
            indent=1,
        )
        + "\n"
    )
    print(out, hashlib.sha256(out.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
