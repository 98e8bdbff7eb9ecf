"""Throughput mode: does K streams x 1 thread beat 1 stream x K threads on this device? One run.

Benches an edgekit output folder's artifacts at ``concurrency=1, threads=cores`` and
``concurrency=cores, threads=1`` (on 2 cores: 1x2 vs 2x1), the same time budget each, repeated in
alternating order (A B A B ...) so drift from other load on the machine hits both alike, and prints
the median aggregate inf/s of each and their ratio, with per-call p50/p99.

    .venv/bin/python benchmarks/bench_concurrency.py /tmp/mnv2-out --target tflite:int8 --seconds 8 --repeats 3

Without a folder it uses the committed digits folder (tests/data/digits-int8). The MobileNetV2 224²
folder comes from ``benchmarks/mobilenet_folder.py -o /tmp/mnv2-out``.

Measured on our 2-core AMD EPYC build machine (shared; load average 2-4 during the run), MobileNetV2
224², 8 s x 3 repeats: fp32 1x2 68.5 inf/s vs 2x1 67.0 (ratio 0.98), int8 70.6 vs 70.8 (1.00). Same
aggregate throughput, but one stream on both cores halves the per-call p50 (14.9 vs 26.5 ms). Under
heavy load from other processes (load average 5-8) the same run gave 0.70 and 0.47: two single-thread
streams lose more to other load than one two-thread stream does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "tests" / "data" / "digits-int8"


def main(argv: list[str] | None = None) -> int:
    from edgekit.manifest import Manifest
    from edgekit.runtime.bench import BenchConfig, bench_file
    from edgekit.runtime.device import device_info
    from edgekit.runtime.artifacts import artifact_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DIGITS), help="edgekit output folder (default: the digits folder)")
    ap.add_argument("--target", action="append", help="artifact(s) to bench (default: every tflite artifact)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time budget of each timed phase")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of each setting")
    ap.add_argument("--streams", type=int, default=None, help="K (default: the cores): 1xK vs Kx1")
    args = ap.parse_args(argv)

    dev = device_info()
    k = args.streams or dev["cores"]
    if k < 2:
        print(f"only {k} core here: nothing to compare", file=sys.stderr)
        return 2
    folder = Path(args.folder)
    manifest = Manifest.load(folder)
    targets = args.target or [a.target for a in manifest.artifacts if a.format == "tflite" and a.path]
    settings = {f"1x{k}": (1, k), f"{k}x1": (k, 1)}
    print(f"{dev['cpu']} ({dev['cores']} cores), {folder}, {args.seconds:g} s per phase, {args.repeats} repeats")
    summary = []
    for target in targets:
        artifact = manifest.artifact(target)
        file = artifact_path(folder, artifact)
        got: dict[str, list] = {name: [] for name in settings}
        for rep in range(args.repeats):
            order = list(settings) if rep % 2 == 0 else list(settings)[::-1]
            for name in order:
                streams, threads = settings[name]
                cfg = BenchConfig(warmup=5, runs=10**9, max_seconds=args.seconds, concurrency=streams,
                                  num_threads=threads)
                # bench_file without eval data: accuracy is not what this compares, and on a 224² model
                # the eval pass would cost more than the timed phase.
                r = bench_file(file, cfg, artifact=artifact, verify=rep == 0)
                if r.status != "ok":
                    print(f"{target} {name}: {r.error}", file=sys.stderr)
                    return 1
                got[name].append(r)
        print(f"\n{target}")
        print(f"  {'setting':8} {'inf/s (median)':>15} {'runs':>24} {'p50 ms':>8} {'p99 ms':>8}  all inf/s")
        med = {}
        for name, rs in got.items():
            med[name] = statistics.median(r.throughput for r in rs)
            best = min(rs, key=lambda r: abs(r.throughput - med[name]))
            print(f"  {name:8} {med[name]:15.1f} {str(best.stream_runs):>24} {best.latency_ms['p50']:8.3f} "
                  f"{best.latency_ms['p99']:8.3f}  {', '.join(f'{r.throughput:.1f}' for r in rs)}")
            for w in {w for r in rs for w in r.warnings}:
                print(f"    warning: {w}")
        ratio = med[f"{k}x1"] / med[f"1x{k}"]
        summary.append((target, ratio))
        print(f"  {k} streams x 1 thread / 1 stream x {k} threads = {ratio:.2f} (aggregate inf/s)")
    print("\nratio " + ", ".join(f"{t}: {r:.2f}" for t, r in summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
