"""Cuts single operators out of an ONNX model and times each in onnxruntime (benches/peers/tract_gap).

usage: tract_gap.py MODEL.onnx OUT_DIR NODE_NAME...

For each node: OUT_DIR/<n>.onnx holding that node alone (onnx.utils.extract_model, the weights
kept), its input shape at batch 1 (from shape inference with the model's input fixed to batch 1),
and onnxruntime's median latency, one thread (peers.py's loop: random input, 200 runs after 10). Writes
OUT_DIR/list ("file shape name" per line) for tract's side and prints onnxruntime's figures.
"""
import os
import sys

import onnx
import onnx.utils
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import ort_latency  # noqa: E402  (the same timing loop as benches/peers/run's)


def ort_median(path, shape):
    return ort_latency(path, shape, threads=1, runs=200)[0]


def main(model_path, out, names):
    model = onnx.load(model_path)
    for d in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        d.ClearField("dim_param")
        d.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    fixed = f"{out}/model-batch1.onnx"
    onnx.save(inferred, fixed)
    nodes = {n.name: n for n in model.graph.node}
    lines = []
    whole_shape = shapes[model.graph.input[0].name]
    print(f"onnxruntime {ort.__version__}, one thread")
    t = ort_median(model_path, whole_shape)
    print(f"  whole model {'x'.join(map(str, whole_shape))}: median {t * 1e3:.4f} ms")
    lines.append(f"{model_path} {'x'.join(map(str, whole_shape))} whole-model")
    for i, name in enumerate(names):
        node = nodes[name]
        path = f"{out}/{i}.onnx"
        onnx.utils.extract_model(fixed, path, [node.input[0]], [node.output[0]])
        shape = shapes[node.input[0]]
        t = ort_median(path, shape)
        dims = "x".join(map(str, shape))
        print(f"  {name} ({node.op_type}) {dims}: median {t * 1e3:.4f} ms")
        lines.append(f"{path} {dims} {name}")
    with open(f"{out}/list", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
