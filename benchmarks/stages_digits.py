"""Training-time stages on the zoo digits model: what pruning and QAT buy, measured in one run.

For each seed it converts digits-cnn four ways to ``tflite:int8`` (post-training only; pruned to
80 %; QAT; pruned then QAT) and prints size, gzip size, zero weights and accuracy, then checks the
numbers issue 3 asks for: pruned gzip <= 0.5x the unpruned int8's, pruned accuracy within 2 points
of the float model, QAT accuracy >= post-training int8 accuracy - 0.5 points.

Run: ``.venv/bin/python benchmarks/stages_digits.py [--seeds 0 1 2] [--prune-epochs 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

RUNS = {
    "ptq int8": [],
    "prune 80% int8": [{"prune": {"sparsity": 0.8}}],
    "qat int8": ["qat"],
    "prune 80% + qat int8": [{"prune": {"sparsity": 0.8}}, "qat"],
}


def measure(seed: int, prune_epochs: int, out: Path) -> dict[str, dict]:
    from edgekit.api import convert

    rows = {}
    for name, stages in RUNS.items():
        stages = [{"prune": {**s["prune"], "fit": {"epochs": prune_epochs}}} if isinstance(s, dict) and "prune" in s
                  else s for s in stages]
        m = convert({"model": "digits-cnn", "seed": seed, "targets": ["tflite:int8"], "stages": stages},
                    out / f"{seed}-{name.replace(' ', '_').replace('%', '')}", force=True)
        a = m.artifacts[0]
        rows[name] = {"status": a.status, "bytes": a.bytes, "gzip_bytes": a.gzip_bytes,
                      "zeros": a.sparsity["sparsity"] if a.sparsity else None,
                      "accuracy": a.validation["accuracy"], "float_accuracy": a.validation["reference_accuracy"]}
    return rows


def checks(r: dict[str, dict]) -> dict[str, bool]:
    ptq, pruned, qat = r["ptq int8"], r["prune 80% int8"], r["qat int8"]
    return {
        "pruned gzip <= 0.5x unpruned": pruned["gzip_bytes"] <= 0.5 * ptq["gzip_bytes"],
        "pruned within 2 points of float": pruned["float_accuracy"] - pruned["accuracy"] <= 2.0,
        "qat >= ptq - 0.5 points": qat["accuracy"] >= ptq["accuracy"] - 0.5,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--prune-epochs", type=int, default=5)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    results, ok = {}, True
    with tempfile.TemporaryDirectory(prefix="edgekit-stages-") as tmp:
        for seed in args.seeds:
            rows = measure(seed, args.prune_epochs, Path(tmp))
            verdict = checks(rows)
            results[seed] = {"rows": rows, "checks": verdict}
            ok &= all(verdict.values())
            base = rows["ptq int8"]["gzip_bytes"]
            print(f"seed {seed}: float accuracy {rows['ptq int8']['float_accuracy']:.2f}%")
            print(f"  {'artifact':22} {'KiB':>7} {'gzip KiB':>9} {'gzip x':>7} {'zeros':>6} {'acc %':>7}")
            for name, r in rows.items():
                print(f"  {name:22} {r['bytes'] / 1024:7.1f} {r['gzip_bytes'] / 1024:9.1f} {r['gzip_bytes'] / base:7.2f} "
                      f"{r['zeros'] * 100:5.1f}% {r['accuracy']:7.2f}  {r['status']}")
            for what, good in verdict.items():
                print(f"  {'PASS' if good else 'FAIL'}  {what}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
