"""The GPU checks of the formats issue, in one short run: TensorRT engines (fp32/fp16/int8) built from
the digits model, ONNX Runtime on the CUDA / TensorRT execution providers, and a rebuild from the
``.trt`` folder's ONNX as another device would do it.

Run on a machine with an NVIDIA GPU and ``tensorrt``, ``cuda-python`` and ``onnxruntime-gpu``
installed: ``.venv/bin/python benchmarks/gpu_formats.py [--out DIR]``. Prints one JSON document;
exits 1 if any target that this GPU should run did not pass. Without a GPU it prints why and exits 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

TARGETS = ["onnx:fp32", "onnx:fp16", "onnx:int8", "tensorrt:fp32", "tensorrt:fp16", "tensorrt:int8", "tftrt:fp16"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a temp folder)")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()

    from edgekit.convert.exporters import get_exporter

    why = get_exporter("tensorrt").unavailable_reason()
    if why:
        print(json.dumps({"error": why}))
        return 2
    import onnxruntime as ort

    from edgekit.api import convert
    from edgekit.runtime import load
    from edgekit.runtime.backends import trt_support
    from edgekit.runtime.bench import BenchConfig, bench_path, time_session

    out = args.out or Path(tempfile.mkdtemp(prefix="edgekit-gpu-"))
    m = convert({"model": "digits-cnn", "targets": TARGETS}, out, force=True)
    doc = {"key": trt_support.cache_key(), "providers": ort.get_available_providers(), "artifacts": {}, "bench": {}}
    for a in m.artifacts:
        v = a.validation or {}
        doc["artifacts"][a.target] = {"status": a.status, "bytes": a.bytes, "max_abs_err": v.get("max_abs_err"),
                                      "accuracy_drop": v.get("accuracy_drop"), "error": a.error}
    cfg = BenchConfig(runs=args.runs, batch_size=1)
    for r in bench_path(out, cfg):
        doc["bench"][r.target] = {"status": r.status, "engine": r.engine, "p50_ms": (r.latency_ms or {}).get("p50"),
                                  "accuracy": r.accuracy, "error": r.error}
    onnx_file = out / m.artifact("onnx:fp32").path
    for prov in ("cuda", "tensorrt"):
        try:
            s = load(onnx_file, providers=f"{prov},cpu")
            doc["bench"][f"onnx:fp32@{prov}"] = {"providers": s.info["providers"],
                                                 "p50_ms": time_session(s, cfg)["latency_ms"]["p50"]}
        except Exception as exc:  # noqa: BLE001 - report, keep going
            doc["bench"][f"onnx:fp32@{prov}"] = {"error": str(exc)}
    # Rebuild as a new device would: copy the folder, drop the shipped engine, load it.
    trt_dir = out / m.artifact("tensorrt:fp16").path
    moved = Path(tempfile.mkdtemp()) / trt_dir.name
    shutil.copytree(trt_dir, moved)
    shutil.rmtree(moved / "engines")
    (moved / "engines").mkdir()
    doc["rebuild_source"] = load(moved).info.get("engine_source")
    print(json.dumps(doc, indent=2))
    must_pass = [t for t in TARGETS if not t.startswith("tftrt")]
    return 0 if all(doc["artifacts"][t]["status"] == "passed" for t in must_pass) else 1


if __name__ == "__main__":
    sys.exit(main())
