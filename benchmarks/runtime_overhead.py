"""edgekit ``Session.run`` against the raw LiteRT invoke loop on the same file, measured in one run.

Noisy shared machines make two back-to-back timings incomparable, so calls are interleaved: each
round times a block of raw calls and a block of Session calls, the ratio is taken per round, and
the median ratio is reported. Also reports int8 vs fp32 latency and, when ONNX artifacts exist,
ONNX Runtime vs LiteRT on the same model.

Run: ``.venv/bin/python benchmarks/runtime_overhead.py [--rounds 200] [--block 500] [--threads N]``
(converts the zoo digits model into a temp folder first; ``--out DIR`` reuses a converted folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _raw_caller(path: Path, x: np.ndarray, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    if i["dtype"] != x.dtype:  # int8 I/O: hand the raw loop pre-quantized data, as its user would
        scale, zp = i["quantization"]
        x = np.clip(np.round(x / scale) + zp, -128, 127).astype(i["dtype"])
    idx_in, idx_out = i["index"], o["index"]

    def call():
        it.set_tensor(idx_in, x)
        it.invoke()
        return it.get_tensor(idx_out)

    return call, x


def _block(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def overhead(path: Path, threads: int, rounds: int, block: int, batch: int = 1, quantize_io: bool = False) -> dict[str, float]:
    """Median per-round ratio Session.run / raw loop, and the median latencies in us.

    With ``quantize_io=False`` both sides get the same engine-dtype array and return raw outputs:
    the difference is edgekit's own cost. With ``True`` the Session is fed float32 and dequantizes
    int8 outputs, work the raw loop does not do (reported separately, it is not overhead).
    """
    from edgekit.runtime import load

    x = np.random.default_rng(0).random((batch, 8, 8, 1), dtype=np.float32)
    raw, xq = _raw_caller(path, x, threads)
    session = load(path, num_threads=threads, quantize_io=quantize_io)
    feed = x if quantize_io else xq

    def ses():
        return session.run(feed)

    for fn in (raw, ses):
        _block(fn, block)  # warm-up
    ratios, raws, sess = [], [], []
    for r in range(rounds):
        # Alternate the order so neither side always runs first in a round.
        if r % 2:
            s, w = _block(ses, block), _block(raw, block)
        else:
            w, s = _block(raw, block), _block(ses, block)
        ratios.append(s / w)
        raws.append(w)
        sess.append(s)
    return {"raw_us": float(np.median(raws) * 1e6), "session_us": float(np.median(sess) * 1e6),
            "overhead_pct": float((np.median(ratios) - 1) * 100)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, help="an existing edgekit output folder with tflite:fp32 and tflite:int8")
    args = ap.parse_args()

    from edgekit.runtime.backends.litert import default_threads

    threads = args.threads or default_threads()
    out = args.out
    if out is None:
        from edgekit.api import convert

        out = Path(tempfile.mkdtemp(prefix="edgekit-overhead-"))
        targets = ["tflite:fp32", "tflite:int8"]
        try:
            import onnxruntime  # noqa: F401

            from edgekit.formats import FORMATS

            if "onnx" in FORMATS:
                targets += ["onnx:fp32", "onnx:int8"]
        except ImportError:
            pass
        convert({"model": "digits-cnn", "targets": targets}, out)
    from edgekit.manifest import Manifest

    m = Manifest.load(out)
    print(f"# digits-cnn, batch 1, {threads} threads, {args.rounds} rounds x {args.block} calls, interleaved")
    print("artifact | raw loop us | Session.run us | overhead %")
    rows = {}
    for a in m.artifacts:
        if a.format != "tflite" or not a.ok:
            continue
        r = overhead(out / a.path, threads, args.rounds, args.block)
        rows[a.target] = r
        print(f"{a.target} | {r['raw_us']:.2f} | {r['session_us']:.2f} | {r['overhead_pct']:+.2f}")
        if any(t.quantized for t in a.inputs + a.outputs):
            q = overhead(out / a.path, threads, args.rounds, args.block, quantize_io=True)
            print(f"{a.target} + float I/O (quantize/dequantize for you) | {q['raw_us']:.2f} | {q['session_us']:.2f} | "
                  f"{q['overhead_pct']:+.2f}")
    if "tflite:fp32" in rows and "tflite:int8" in rows:
        print(f"int8 / fp32 latency (Session.run): {rows['tflite:int8']['session_us'] / rows['tflite:fp32']['session_us']:.2f}x")
    onnx = [a for a in m.artifacts if a.format == "onnx" and a.ok]
    if onnx:
        from edgekit.runtime import load

        x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
        for a in onnx:
            tfl = next((b for b in m.artifacts if b.format == "tflite" and b.precision == a.precision and b.ok), None)
            if tfl is None:
                continue
            so, st = load(out / a.path, num_threads=threads), load(out / tfl.path, num_threads=threads)
            ratios = []
            for _ in range(max(20, args.rounds // 5)):
                ratios.append(_block(lambda: so.run(x), args.block) / _block(lambda: st.run(x), args.block))
            print(f"ONNX Runtime / LiteRT latency, {a.precision}: {np.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
