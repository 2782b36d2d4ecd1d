#!/usr/bin/env bash
# Writes frontal_face_detector.dat: dlib's built-in HOG frontal face detector
# (dlib::get_frontal_face_detector, compiled from the system's dlib headers, Debian libdlib-dev
# 19.24) in dlib's own serialisation, uncompressed. edge-fer compiles the file in and loads it with
# dlib's deserialize (src/hog.rs), skipping the decompression dlib does at every start.
# Reproducible: the same dlib gives the same bytes (sha256 in README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edge-fer/target}"
cargo run --release --locked --example export_hog -- models/dlib-hog-frontal/frontal_face_detector.dat
