"""edgekit ``Session.run`` against the raw engine loop on the same file, measured in one run.

Noisy shared machines make two back-to-back timings incomparable, so calls are interleaved: each
round times a block of raw calls and a block of Session calls, the ratio is taken per round, and
the median ratio is reported. Also reports int8 vs fp32 latency and, when ONNX artifacts exist,
ONNX Runtime vs LiteRT on the same model.

Run: ``.venv/bin/python benchmarks/runtime_overhead.py [--rounds 200] [--block 500] [--threads N]``
(converts the zoo digits model into a temp folder first; ``--out DIR`` reuses a converted folder).

``--mobilenet DIR`` times a MobileNetV2 224² folder from ``benchmarks/mobilenet_folder.py`` instead:
every TFLite precision and ONNX fp32/int8, the Session fed **float32** images (an int8-I/O model
quantizes them for you, and dequantizes its output) against the raw loop fed what the engine takes
(pre-quantized int8 for int8 I/O). For int8 I/O it adds the fair comparison for a float-image user
(the raw loop quantizing with numpy itself), uint8 pixels (``uint8_divisor=255``), and the
quantize step alone, old formula vs the Session's. ``tflite:int8,io=float`` quantizes inside the
engine, so both sides are fed float32 there. Last, the floor of any float feed on this device, from
raw loops alone: the int8 loop that also reads the float image, and the ``io=float`` model's loop fed
float32, each against the int8 loop fed int8. Timing only: an artifact that failed validation
(random-weight MobileNet) is timed all the same and marked.
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


# Wall time by default; ``--clock cpu`` (process CPU time, all threads) is far less sensitive to
# other processes on a shared machine, which do not run on this process's clock.
CLOCK = time.perf_counter


def _block(fn, n: int) -> float:
    clock = CLOCK
    t = clock()
    for _ in range(n):
        fn()
    return (clock() - t) / n


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

    r = interleaved(raw, lambda: session.run(feed), rounds, block)
    return {"raw_us": r["raw_ms"] * 1e3, "session_us": r["session_ms"] * 1e3, "overhead_pct": (r["ratio"] - 1) * 100}


def interleaved(raw, ses, rounds: int, block: int, between=None) -> dict[str, float]:
    """Median per-round ratio ``ses / raw`` over interleaved blocks, and both median latencies (ms).

    ``between`` (untimed) runs before every block: :func:`~edgekit.runtime.bench.timing.settle` for
    onnxruntime, whose two sessions (raw and edgekit's) each keep a thread pool that spins after a
    run and takes the cores from the other's next block (per-round ratios 0.6-1.6 without it).
    """
    for fn in (raw, ses):
        _block(fn, block)  # warm-up (allocations, first-shape resize)

    def timed(fn) -> float:
        if between is not None:
            between()
        return _block(fn, block)

    ratios, raws, sess = [], [], []
    for r in range(rounds):
        # Alternate the order so neither side always runs first in a round.
        if r % 2:
            s, w = timed(ses), timed(raw)
        else:
            w, s = timed(raw), timed(ses)
        ratios.append(s / w)
        raws.append(w)
        sess.append(s)
    q1, q3 = np.percentile(ratios, [25, 75])
    return {"raw_ms": float(np.median(raws) * 1e3), "session_ms": float(np.median(sess) * 1e3),
            "ratio": float(np.median(ratios)), "iqr": f"{q1:.3f}-{q3:.3f}"}


def _numpy_quantize(x: np.ndarray, scale: float, zp: int, dtype) -> np.ndarray:
    """What a user quantizing float images by hand writes (the runtime's reference formula)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / np.float32(scale)) + zp, info.min, info.max).astype(dtype)


def _raw_tflite(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    idx_in, idx_out = i["index"], o["index"]

    def call(x):
        it.set_tensor(idx_in, x)
        it.invoke()
        return it.get_tensor(idx_out)

    return call, (lambda x: it.set_tensor(idx_in, x))


def _raw_onnx(path: Path, threads: int):
    import onnxruntime as ort

    # The settings edgekit's ONNX backend uses, so the loop differs from the Session only in edgekit.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return (lambda x: sess.run([out], {name: x})[0]), None


def _us(fn, n: int = 50) -> float:
    """Median of 5 blocks of ``n`` calls, microseconds."""
    fn()
    return float(np.median([_block(fn, n) for _ in range(5)]) * 1e6)


def mobilenet(folder: Path, threads: int, rounds: int, block: int) -> int:
    """The MobileNetV2 table: every ratio Session.run (float32 feed) / raw loop, one run."""
    from edgekit.manifest import Manifest
    from edgekit.runtime import load, quantize
    from edgekit.runtime.bench.timing import settle

    m = Manifest.load(folder)
    order = ["tflite:fp32", "tflite:fp16", "tflite:int8", "tflite:int8,io=float", "tflite:dynamic", "onnx:fp32", "onnx:int8"]

    def rank(a) -> int:
        for key in (a.target, f"{a.format}:{a.precision}"):
            if key in order:
                return order.index(key)
        return len(order)

    arts = sorted((a for a in m.artifacts if a.path and (folder / a.path).exists() and a.format in ("tflite", "onnx")),
                  key=rank)
    shape = (1, *arts[0].inputs[0].shape[1:])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)  # float image in [0, 1]
    u8 = np.round(x * 255).astype(np.uint8)
    clock = "process CPU time" if CLOCK is time.process_time else "wall time"
    print(f"# {Path((m.source or {}).get('name', folder.name)).stem} {shape}, batch 1, {threads} threads, "
          f"{rounds} rounds x {block} calls, interleaved, {clock}; ratio = median per-round Session / raw")
    print("artifact | feed | raw loop ms | Session.run ms | ratio | per-round IQR")
    worst = 0.0
    for a in arts:
        path, mark = folder / a.path, "" if a.ok else f" ({a.status}: timing only)"
        raw, set_tensor = (_raw_tflite if a.format == "tflite" else _raw_onnx)(path, threads)
        session = load(path, num_threads=threads)
        spec = session.inputs[0]
        feed = quantize(x, spec) if spec.quantized else x  # what the raw loop's user hands the engine
        ses_out = session.run(x)[session.output_names[0]]
        raw_out = raw(feed)
        if session.outputs[0].quantized:
            from edgekit.runtime import dequantize

            raw_out = dequantize(raw_out, session.outputs[0])
        assert np.array_equal(ses_out, raw_out), f"{a.target}: Session and raw loop disagree"
        r = interleaved(lambda: raw(feed), lambda: session.run(x), rounds, block,
                        between=settle if a.format == "onnx" else None)
        worst = max(worst, r["ratio"])
        print(f"{a.target}{mark} | float32 | {r['raw_ms']:.3f} | {r['session_ms']:.3f} | {r['ratio']:.3f} | {r['iqr']}")
        if not spec.quantized:
            continue
        # The fair comparison for a float-image user: the raw loop quantizes with numpy itself.
        scale, zp, dt = spec.scale, spec.zero_point, np.dtype(spec.dtype)
        f = interleaved(lambda: raw(_numpy_quantize(x, scale, zp, dt)), lambda: session.run(x), rounds, block)
        print(f"{a.target}{mark} | float32 vs raw + user's numpy quantize | {f['raw_ms']:.3f} | {f['session_ms']:.3f} | "
              f"{f['ratio']:.3f} | {f['iqr']}")
        session.uint8_divisor = 255
        assert np.array_equal(session.run(u8)[session.output_names[0]], session.run(u8.astype(np.float32) / 255)[session.output_names[0]])
        p = interleaved(lambda: raw(feed), lambda: session.run(u8), rounds, block)
        print(f"{a.target}{mark} | uint8 pixels (uint8_divisor=255) | {p['raw_ms']:.3f} | {p['session_ms']:.3f} | "
              f"{p['ratio']:.3f} | {p['iqr']}")
        # The quantize step alone (an internal of Session, timed by itself): the old numpy formula
        # vs the Session's passes into a buffer; the raw loop's SetTensor copy for scale.
        from edgekit.runtime.quantize import Quantizer, Scratch

        q, out = Quantizer(spec, Scratch()), np.empty(shape, dt)
        old_us = _us(lambda: _numpy_quantize(x, scale, zp, dt))
        new_us = _us(lambda: q.store(out, q.prepare(x)))
        print(f"#   {a.target}: quantize {x.size:,} floats alone: numpy formula {old_us:.0f} us, Session {new_us:.0f} us "
              f"({new_us / (r['raw_ms'] * 10):.1f} % of the raw call); SetTensor of the int8 feed {_us(lambda: set_tensor(feed)):.0f} us")
    print(f"worst float32-feed ratio: {worst:.3f}")
    _float_feed_floor(folder, arts, x, threads, rounds, block)
    return 0


def _float_feed_floor(folder: Path, arts: list, x: np.ndarray, threads: int, rounds: int, block: int) -> None:
    """What any float feed to the int8 model costs on this device before edgekit does anything.

    Two raw-loop pairs, interleaved like the table: the int8 loop that also reads the float image
    once (``x.max()``: the least work a float feed implies), and the converter's own float-input
    int8 model (``io=float``: its QUANTIZE op multiplies by 1/scale, so not numpy's numbers) fed
    float32 against the int8-I/O model fed int8. The Session's float-feed ratio cannot go below these.
    """
    int8 = next((a for a in arts if a.format == "tflite" and a.inputs and a.inputs[0].quantized), None)  # int8 I/O
    io_float = next((a for a in arts if a.target == "tflite:int8,io=float"), None)
    if int8 is None:
        return
    raw, _ = _raw_tflite(folder / int8.path, threads)
    spec = int8.inputs[0]
    feed = _numpy_quantize(x, spec.scale, spec.zero_point, np.dtype(spec.dtype))
    print("# floor of a float feed (raw loops only, same run): pair | int8 raw ms | other ms | ratio | per-round IQR")
    r = interleaved(lambda: raw(feed), lambda: (x.max(), raw(feed)), rounds, block)
    print(f"# {int8.target} raw loop + reading the float image once (x.max()) | {r['raw_ms']:.3f} | {r['session_ms']:.3f} | "
          f"{r['ratio']:.3f} | {r['iqr']}")
    if io_float is not None:
        raw_f, _ = _raw_tflite(folder / io_float.path, threads)
        r = interleaved(lambda: raw(feed), lambda: raw_f(x), rounds, block)
        print(f"# {io_float.target} raw loop fed float32 (the engine quantizes) | {r['raw_ms']:.3f} | {r['session_ms']:.3f} | "
              f"{r['ratio']:.3f} | {r['iqr']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=None, help="default 200 (digits), 100 (--mobilenet)")
    ap.add_argument("--block", type=int, default=None, help="calls per block; default 500 (digits), 2 (--mobilenet)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, help="an existing edgekit output folder with tflite:fp32 and tflite:int8")
    ap.add_argument("--mobilenet", type=Path, metavar="DIR",
                    help="time a MobileNetV2 folder from benchmarks/mobilenet_folder.py (defaults: --rounds 100 --block 2)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default) or this process's CPU time (steadier on a loaded machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    from edgekit.runtime.backends.litert import default_threads

    threads = args.threads or default_threads()
    if args.mobilenet is not None:
        return mobilenet(args.mobilenet, threads, args.rounds or 100, args.block or 2)
    args.rounds, args.block = args.rounds or 200, args.block or 500
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
