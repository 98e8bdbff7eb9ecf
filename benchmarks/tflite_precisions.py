"""TFLite precisions on this machine, measured in one run: size, accuracy and latency ratios vs fp32,
and edgekit's Session overhead against the raw LiteRT invoke loop on the same file.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/tflite_precisions.py [--runs N] [--threads T]``).
Ratios, not absolute times, are the result: these machines are shared and noisy, so every number
in one table comes from the same process and the same minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def raw_loop(path: Path, x: np.ndarray, runs: int, threads: int) -> float:
    """Median ms of the bare interpreter loop: set_tensor, invoke, get_tensor."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] != x.dtype:
        scale, zp = inp["quantization"]
        x = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"])
    for _ in range(20):
        it.set_tensor(inp["index"], x)
        it.invoke()
        it.get_tensor(out["index"])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        it.set_tensor(inp["index"], x)
        it.invoke()
        it.get_tensor(out["index"])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def session_loop(path: Path, x: np.ndarray, runs: int, threads: int) -> float:
    """Median ms of edgekit's ``Session.run`` (checks, (de)quantization, dict out) on the same file."""
    from edgekit.runtime import load

    s = load(path, num_threads=threads)
    for _ in range(20):
        s.run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    args = ap.parse_args()

    from edgekit.api import convert
    from edgekit.runtime.backends.litert import default_threads
    from edgekit.runtime.bench import BenchConfig, bench_path

    threads = args.threads or default_threads()
    out = Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    m = convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]}, out)
    results = {r.target: r for r in bench_path(out, BenchConfig(warmup=50, runs=args.runs, batch_size=args.batch, num_threads=threads))}
    x = np.random.default_rng(0).random((args.batch, 8, 8, 1), dtype=np.float32)
    fp32 = m.artifact("tflite:fp32")
    rows = []
    for a in m.artifacts:
        r = results[a.target]
        raw = raw_loop(out / a.path, x, args.runs, threads)
        ses = session_loop(out / a.path, x, args.runs, threads)
        rows.append({
            "target": a.target,
            "size_ratio": round(a.bytes / fp32.bytes, 3),
            "accuracy": a.validation.get("accuracy"),
            "accuracy_drop": a.validation.get("accuracy_drop"),
            "p50_ms": r.latency_ms["p50"],
            "p50_vs_fp32": round(r.latency_ms["p50"] / results["tflite:fp32"].latency_ms["p50"], 3),
            "raw_ms": round(raw, 4),
            "session_ms": round(ses, 4),
            "session_overhead_us": round((ses - raw) * 1e3, 2),
        })
    print(f"# {platform.processor() or platform.machine()}, {threads} threads, batch {args.batch}, {args.runs} runs, python {sys.version.split()[0]}")
    cols = list(rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    if args.json:
        args.json.write_text(json.dumps({"threads": threads, "batch": args.batch, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
