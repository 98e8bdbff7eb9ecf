"""Fuzz model loading at scale: >= 1,000 mutated copies of each digits artifact (.tflite and .onnx), each loaded and run in
its own subprocess with a timeout. Prints outcome counts per mutation; exits 1 on any crash, hang or
uncaught exception.

Run: ``.venv/bin/python benchmarks/fuzz_models.py [--n 1000] [--out DIR]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# tools/ (the fuzz harness) sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000, help="mutated files per artifact")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="an existing edgekit output folder (default: convert digits-cnn)")
    args = ap.parse_args()
    from edgekit.manifest import Manifest
    from tools.fuzz import fuzz

    out = args.out
    if out is None:
        from edgekit.api import convert

        out = Path(tempfile.mkdtemp(prefix="edgekit-fuzz-"))
        targets = ["tflite:fp32", "tflite:int8"]
        try:
            import onnxruntime  # noqa: F401

            targets += ["onnx:fp32", "onnx:int8"]
        except ImportError:
            pass
        convert({"model": "digits-cnn", "targets": targets}, out)
    bad = 0
    for a in Manifest.load(out).artifacts:
        if not a.path or not a.path.endswith((".tflite", ".onnx")):
            continue  # single-file formats; folder artifacts (CoreML, TensorRT) are not mutated here
        r = fuzz(out / a.path, n=args.n, seed=args.seed, workers=args.workers)
        bad += r.bad
        print(f"{a.target}: {r.total} files in {r.seconds:.1f}s: " + ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())))
        for kind, c in sorted(r.by_mutation.items()):
            print(f"  {kind:16s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
        for f in r.failures[:20]:
            print(f"  FAILURE {f}")
    print(f"crashes + hangs + uncaught: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
