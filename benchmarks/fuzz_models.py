"""Fuzz model loading and running at scale: ``--n`` cases per digits artifact (.tflite and .onnx), each
loaded and run in its own subprocess with a timeout and a memory account. The cases go round-robin
over the structure-aware mutators (flatbuffer / protobuf fields), the input-shape mutators (hostile
feeds to the clean model) and the byte mutators (``--mutators`` picks groups).

Then ``--manifests`` hostile ``manifest.json`` copies of the folder (loaded with the runtime and its
eval data, each in a child) and ``--payloads`` mutated HTTP requests against an ``edgekit serve``
subprocess (see ``tools/fuzz_manifest.py``, ``tools/fuzz_http.py``).

Prints, per artifact and per mutator: ok / clean error / reached invoke / crash / hang / uncaught /
memory, then the first failures. Exits 1 on any crash, hang, uncaught exception or memory finding
(manifests: also multi-line errors and models loaded from outside the folder; payloads: 5xx and
connections dropped without a reply).

Run: ``.venv/bin/python benchmarks/fuzz_models.py [--n 1000] [--out DIR] [--mutators structure,feeds,bytes]
[--manifests 200] [--payloads 400]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# tools/ (the fuzz harness) sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="cases per artifact")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--mutators", default="structure,feeds,bytes", help="groups: structure, feeds, bytes, all")
    ap.add_argument("--mem-factor", type=float, default=4.0, help="a case growing RSS by more than this x the clean load is a finding")
    ap.add_argument("--targets", default="", help="comma list of artifact targets to fuzz (default: every .tflite/.onnx)")
    ap.add_argument("--manifests", type=int, default=200, help="hostile manifest cases (0: none)")
    ap.add_argument("--payloads", type=int, default=400, help="mutated HTTP requests (0: none)")
    ap.add_argument("--out", type=Path, help="an existing edgekit output folder (default: convert digits-cnn)")
    args = ap.parse_args()
    from edgekit.manifest import Manifest
    from tools.fuzz import fuzz, structure_mutations

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
    wanted = {t for t in args.targets.split(",") if t}
    bad = 0
    for a in Manifest.load(out).artifacts:
        if not a.path or not a.path.endswith((".tflite", ".onnx")) or (wanted and a.target not in wanted):
            continue  # single-file formats; folder artifacts (CoreML, TensorRT) are not mutated here
        r = fuzz(out / a.path, n=args.n, seed=args.seed, workers=args.workers, timeout=args.timeout,
                 mutators=args.mutators, mem_factor=args.mem_factor)
        bad += r.bad
        structure = [k for k in r.by_mutation if k in structure_mutations(out / a.path)]
        print(f"{a.target}: {r.total} cases in {r.seconds:.1f}s: " + ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
              + f"; reached invoke {sum(r.reached_invoke.values())} ({r.invoke_share():.0%}; structure-aware "
              f"{r.invoke_share(structure):.0%}); clean load +{r.clean_peak / 2**20:.1f} MiB, memory limit "
              f"{r.mem_limit >> 20} MiB, largest case +{r.max_peak / 2**20:.0f} MiB")
        print("\n".join(r.table()))
        for f in r.failures[:20]:
            print(f"  FAILURE {f['mutation']}: {f['result']} at {f.get('stage', '?')}: {f.get('what')} "
                  f"{f.get('feed') or ''} -> {f.get('message', '')}")
    from tools.fuzz_http import PAYLOAD_BAD, fuzz_payloads, payload_table
    from tools.fuzz_manifest import MANIFEST_BAD, fuzz_manifests, manifest_table

    if args.manifests:
        r = fuzz_manifests(out, n=args.manifests, seed=args.seed, workers=args.workers, timeout=args.timeout,
                           mem_factor=args.mem_factor)
        found = sum(r.counts[k] for k in MANIFEST_BAD)
        bad += found
        print(f"manifests: {r.total} cases in {r.seconds:.1f}s: " + ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
              + f"; clean load +{r.clean_peak / 2**20:.1f} MiB, largest case +{r.max_peak / 2**20:.0f} MiB")
        print("\n".join(manifest_table(r)))
        for f in r.failures[:20]:
            print(f"  FAILURE {f['mutation']}: {f['result']} at {f.get('stage', '?')}: {f['what']} -> {f.get('message', '')}")
    if args.payloads:
        r = fuzz_payloads(out, n=args.payloads, seed=args.seed, mem_factor=args.mem_factor)
        bad += sum(r.counts[k] for k in PAYLOAD_BAD)
        print(f"payloads: {r.total} requests in {r.seconds:.1f}s: " + ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
              + f"; largest request +{r.max_peak / 2**20:.0f} MiB of server RSS")
        print("\n".join(payload_table(r)))
        for f in r.failures[:20]:
            print(f"  FAILURE {f['mutation']}: {f['result']}: {f['what']} {f['path']} -> {f['message']} {f['server']}")
    print(f"findings (crash, hang, uncaught, memory; manifests: multiline, escaped; payloads: 5xx, no reply): {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
