#!/usr/bin/env python3
"""Compares two edge-fer JSON-lines outputs of the same input: the x86_64 build's and the aarch64
build's. Frames, face boxes, landmarks, labels and `looking` must be equal; every probability
within TOL; head-pose angles (printed to 0.1 degree) within 0.1 degree.
Prints one line per difference and exits 1 if there is any (2 on unreadable input).

usage: compare.py HOST.jsonl ARM.jsonl [--tol 1e-4]
Standard library only: it runs where the check runs, never on the device.
"""
import json
import sys


def load(path):
    frames = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                frames.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"compare: {path} line {n} is not JSON: {e}")
    return frames


def diff_face(where, a, b, tol):
    out = []
    if a.get("box") != b.get("box"):
        out.append(f"{where}: box {a.get('box')} vs {b.get('box')}")
    if a.get("landmarks") != b.get("landmarks"):
        out.append(f"{where}: landmarks differ")
    if a.get("label") != b.get("label"):
        out.append(f"{where}: label {a.get('label')} vs {b.get('label')}")
    if a.get("looking") != b.get("looking"):
        out.append(f"{where}: looking {a.get('looking')} vs {b.get('looking')}")
    qa, qb = a.get("pose") or {}, b.get("pose") or {}
    if set(qa) != set(qb) or any(abs(qa[k] - qb[k]) > 0.1 + 1e-9 for k in qa):
        out.append(f"{where}: pose {qa} vs {qb}")
    pa, pb = a.get("probs", {}), b.get("probs", {})
    if list(pa) != list(pb):
        out.append(f"{where}: labels {list(pa)} vs {list(pb)}")
        return out
    for label in pa:
        if abs(pa[label] - pb[label]) > tol:
            out.append(f"{where}: p({label}) {pa[label]:.7f} vs {pb[label]:.7f}")
    return out


def main(argv):
    tol = 1e-4
    args = list(argv)
    if "--tol" in args:
        i = args.index("--tol")
        tol = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    host, arm = load(args[0]), load(args[1])
    problems = []
    if len(host) != len(arm):
        problems.append(f"{len(host)} frames vs {len(arm)} frames")
    faces = worst = 0
    for fa, fb in zip(host, arm):
        where = f"{fa.get('source')} frame {fa.get('frame')}"
        for key in ("source", "frame", "width", "height", "error"):
            if fa.get(key) != fb.get(key):
                problems.append(f"{where}: {key} {fa.get(key)!r} vs {fb.get(key)!r}")
        ka, kb = fa.get("faces", []), fb.get("faces", [])
        if len(ka) != len(kb):
            problems.append(f"{where}: {len(ka)} faces vs {len(kb)}")
        for i, (a, b) in enumerate(zip(ka, kb)):
            faces += 1
            problems += diff_face(f"{where} face {i}", a, b, tol)
            for label, p in a.get("probs", {}).items():
                worst = max(worst, abs(p - b.get("probs", {}).get(label, float("inf"))))
    for p in problems:
        print(p)
    print(
        f"compare: {len(host)} frames, {faces} faces, largest probability difference {worst:.2e} "
        f"(tolerance {tol:g}): {'DIFFERENT' if problems else 'same'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
