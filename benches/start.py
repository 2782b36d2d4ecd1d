#!/usr/bin/env python3
"""Start-up and memory of the edge-fer binary itself (a benchmark, not a test).

usage: start.py EDGE_FER FRAMES_DIR

- time from process start to the first JSON line for one fixture photo, median of 5 runs, with
  each detector (the sha256 checks run as always);
- peak RSS of one run over FRAMES_DIR (the 640x480 fixture frames), with each detector: the
  child's ru_maxrss from wait4, the figure `/usr/bin/time -v` prints as "Maximum resident set
  size", without needing GNU time installed.
Standard library only.
"""
import os
import statistics
import subprocess
import sys
import time

binary, frames = sys.argv[1], sys.argv[2]
photo = "tests/fixtures/astronaut.png"
for detector in ["hog", "blazeface"]:
    times = []
    for _ in range(5):
        start = time.monotonic()
        proc = subprocess.Popen([binary, "--detector", detector, "--image", photo],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = proc.stdout.readline()
        first = time.monotonic() - start
        proc.wait()
        if proc.returncode != 0 or not line.startswith(b"{"):
            sys.exit(f"start.py: {detector}: exit {proc.returncode}, first line {line[:80]!r}")
        times.append(first)
    print(f"first JSON line, --detector {detector} --image {photo}: median "
          f"{statistics.median(times):.3f} s of 5 ({', '.join(f'{t:.3f}' for t in times)})")
for detector in ["hog", "blazeface"]:
    proc = subprocess.Popen([binary, "--detector", detector, "--frames", frames],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"start.py: {detector} over {frames}: wait status {status}")
    kib = usage.ru_maxrss  # KiB on Linux
    print(f"peak RSS, --detector {detector} --frames (the 640x480 fixture frames): {kib / 1024:.1f} MiB")
