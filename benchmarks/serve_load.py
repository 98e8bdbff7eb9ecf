"""Load test for ``edgekit serve`` on loopback: requests, concurrency, errors, p50/p99 latency, req/s.

Starts ``edgekit serve MODEL --port 0`` in a child process (so client and server do not share a
GIL) unless ``--url`` points at a running one, then runs ``--concurrency`` client threads, each on
one keep-alive connection, until ``--requests`` are done or ``--max-seconds`` pass (both bounded).
Every response is checked: a non-200 status or logits that differ from a local Session count as
errors. Only 127.0.0.1 / localhost / ::1 URLs are accepted: this is not a tool for other people's
servers.

Run: ``.venv/bin/python benchmarks/serve_load.py [MODEL] [--requests 2000] [--concurrency 8]
[--payload json|npy] [--batch 1] [--max-seconds 60] [--json]`` (MODEL defaults to the committed
``tests/data/digits-int8``).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _bodies(model: Path, payload: str, batch: int) -> tuple[list[bytes], list[np.ndarray], str]:
    """Request bodies from the model folder's eval.npz and the logits a local Session gives for each."""
    import edgekit.runtime as rt

    with np.load(model / "eval.npz") as d:
        x = d["x"][: 64 * batch]
    session = rt.load(model, num_threads=1)
    bodies, want = [], []
    for i in range(0, len(x) - batch + 1, batch):
        chunk = x[i : i + batch]
        if payload == "npy":
            buf = io.BytesIO()
            np.save(buf, chunk)
            bodies.append(buf.getvalue())
        else:
            bodies.append(json.dumps({"inputs": {session.input_names[0]: chunk.tolist()}}).encode())
        want.append(session.run(chunk)[session.output_names[0]])
    return bodies, want, "application/x-npy" if payload == "npy" else "application/json"


def _start_server(model: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "edgekit.cli", "serve", str(model), "--port", "0"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"edgekit serve did not start: {line!r}")
    return proc, m.group(1)


def run_load(url: str, bodies: list[bytes], want: list[np.ndarray], ctype: str, requests: int, concurrency: int,
             max_seconds: float) -> dict[str, object]:
    """Fire ``requests`` POST /predict from ``concurrency`` threads; latency per request in ms."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"refusing {url}: serve_load only targets loopback ({', '.join(LOOPBACK)})")
    lock = threading.Lock()
    counter = {"next": 0, "errors": 0}
    latencies: list[float] = []  # bounded by --requests
    error_samples: list[str] = []
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        errors = 0
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = counter["next"]
                    if i >= requests:
                        break
                    counter["next"] += 1
                k = i % len(bodies)
                t = time.perf_counter()
                try:
                    conn.request("POST", "/predict", body=bodies[k], headers={"Content-Type": ctype})
                    resp = conn.getresponse()
                    raw = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors += 1
                    error_samples.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                    continue
                mine.append((time.perf_counter() - t) * 1e3)
                if resp.status != 200:
                    errors += 1
                    error_samples.append(f"{resp.status}: {raw[:200]!r}")
                    continue
                got = np.asarray(next(iter(json.loads(raw)["outputs"].values())), np.float32)
                if got.shape != want[k].shape or not np.allclose(got, want[k], rtol=0, atol=1e-5):
                    errors += 1
                    error_samples.append(f"wrong logits for body {k}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)
                counter["errors"] += errors

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max_seconds + 60)
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "errors": counter["errors"],
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p90_ms": round(float(np.percentile(lat, 90)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "max_ms": round(float(lat.max()), 3),
        "req_per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2),
        "error_samples": error_samples[:5],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Load test edgekit serve on loopback.")
    p.add_argument("model", nargs="?", type=Path, default=REPO / "tests" / "data" / "digits-int8")
    p.add_argument("--url", help="an already running server (loopback only); default: start one")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--payload", choices=("json", "npy"), default="json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, help="server engine threads")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.batch < 1 or args.max_seconds <= 0:
        p.error("--requests, --concurrency, --batch and --max-seconds must be positive")
    bodies, want, ctype = _bodies(args.model, args.payload, args.batch)
    proc = None
    url = args.url
    if url is None:
        proc, url = _start_server(args.model, args.threads)
    try:
        result = run_load(url, bodies, want, ctype, args.requests, args.concurrency, args.max_seconds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
    result.update(payload=args.payload, batch=args.batch, model=args.model.name, cpus=os.cpu_count())
    if args.json:
        print(json.dumps(result))
    else:
        print(f"edgekit serve load test: {args.model.name}, {args.payload} payload, batch {args.batch}, {os.cpu_count()} CPUs")
        print(f"  requests     {result['requests']}")
        print(f"  concurrency  {result['concurrency']}")
        print(f"  errors       {result['errors']}")
        print(f"  latency      p50 {result['p50_ms']} ms · p90 {result['p90_ms']} ms · p99 {result['p99_ms']} ms · max {result['max_ms']} ms")
        print(f"  throughput   {result['req_per_s']} req/s ({result['wall_s']} s)")
        for e in result["error_samples"]:
            print(f"  error: {e}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
