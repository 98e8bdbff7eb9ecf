"""ONNX int8 with and without ``reduce_range``, measured in one run on this CPU.

onnxruntime's u8s8 int8 kernels saturate their int16 intermediates on x86 CPUs without VNNI (AVX2,
plain AVX-512); 7-bit weights (``reduce_range=true``) avoid it. This converts the format matrix's
two-input, two-output test model (untrained, seeded; random inputs) to ``onnx:int8`` both ways and
prints each output's SNR against Keras, plus the CPU flags that decide which kernels ran.

    python benchmarks/onnx_reduce_range.py

Measured on a 2-core AVX2 AMD EPYC (no VNNI): int8 11.9 dB worst output, reduce_range 30.3 dB.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ (repository harnesses)
from tools.models import multi_io  # noqa: E402


def main() -> None:
    from edgekit.calibration import from_arrays
    from edgekit.convert.pipeline import convert
    from edgekit.runtime.device import cpu_flags

    model = multi_io()
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-reduce-range-"))
    for name, seed in (("calib", 10), ("eval", 11)):
        rng = np.random.default_rng(seed)
        from_arrays([rng.random((48, 8, 8, 1), dtype=np.float32), rng.random((48, 3), dtype=np.float32)]).to_npz(tmp / f"{name}.npz")
    recipe = {"model": "multi_io", "targets": ["onnx:fp32", "onnx:int8", "onnx:int8,reduce_range=true"],
              "calib": str(tmp / "calib.npz"), "eval": str(tmp / "eval.npz")}
    manifest = convert(recipe, tmp / "out", model=model, progress=None)
    rows = {a.target: {"status": a.status, "snr_db": a.validation.get("snr_db")} for a in manifest.artifacts}
    flags = [f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimddp")]
    print(json.dumps({"cpu_flags": flags, "artifacts": rows}, indent=2))


if __name__ == "__main__":
    main()
