"""The Python side of the side-by-side figures (benches/peers/run):

1. onnxruntime on the same ONNX files edge-fer runs with tract, same input shape and batch,
   median latency (1 thread, as tract runs, and 2 threads);
2. the `fer` package (FER(mtcnn=False): OpenCV Haar cascade + the same mini-Xception in
   TensorFlow), end to end on the fixture photos fitted into 640x480 frames, frames/s and peak RSS.

usage: peers.py ONNX:SHAPE [ONNX:SHAPE ...] -- FRAME.jpg ...   (SHAPE like 1x3x224x224)
"""
import resource
import sys
import time

import numpy as np


def ort_latency(path, shape, threads, runs=200):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    for _ in range(10):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], ort.__version__


def fer_pipeline(frames, rounds=5):
    import cv2
    from fer import FER

    detector = FER(mtcnn=False)
    images = [cv2.imread(p) for p in frames]
    for img in images:  # warm-up (TensorFlow builds its graph on the first call)
        detector.detect_emotions(img)
    faces = 0
    t = time.perf_counter()
    for _ in range(rounds):
        for img in images:
            faces += len(detector.detect_emotions(img))
    elapsed = time.perf_counter() - t
    n = rounds * len(images)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import fer as fer_pkg
    import tensorflow as tf

    return n / elapsed, faces / rounds, rss_mib, fer_pkg.__version__ if hasattr(fer_pkg, "__version__") else "22.5.1", tf.__version__


def main(argv):
    cut = argv.index("--")
    models, frames = argv[:cut], argv[cut + 1:]
    for spec in models:
        path, shape = spec.rsplit(":", 1)
        dims = [int(d) for d in shape.split("x")]
        for threads in (1, 2):
            median, version = ort_latency(path, dims, threads)
            print(f"onnxruntime {version}: {path} {shape}, {threads} thread(s): median {median * 1e3:.3f} ms")
    if frames:
        fps, faces, rss, fer_version, tf_version = fer_pipeline(frames)
        print(f"fer {fer_version} (TensorFlow {tf_version}, FER(mtcnn=False)): {fps:.1f} frames/s "
              f"end to end on {len(frames)} frames at 640x480, {faces:.0f} faces per round, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
