"""Build a MobileNetV2 α1.0 224² edgekit output folder (TFLite fp32/fp16/int8, ONNX fp32/int8) for the
runtime benchmarks (``runtime_overhead.py``, ``edgekit pick``).

No pretrained weights can be downloaded here, so the model is ``keras.applications.MobileNetV2(
weights=None)`` with BatchNorm statistics set from one batch of the calibration images (random weights
alone give ~1e-15 outputs no quantizer can represent), and the classifier scaled to a trained model's
logit spread. Calibration/eval images are smooth random
fields in [0, 1] (seeded), not noise, so activations have image-like ranges.

Run: ``.venv/bin/python benchmarks/mobilenet_folder.py -o /tmp/mnv2-out [--size 224] [--alpha 1.0]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# An untrained network amplifies quantization noise layer after layer (measured here: int8 SNR 4.5 dB,
# top-1 agreement 62 %; dynamic 9.3 dB / 78 %), where a trained MobileNetV2 loses ~1 point. The
# folder feeds *timing* benchmarks, so the int8 tolerances are relaxed to let those artifacts pass;
# the manifest records the relaxed tolerances. Accuracy at real size is issue #11's, not this.
TIMING_TOLERANCES = ("int8.min_snr_db=2", "int8.min_top1_agreement=0.4", "dynamic.min_snr_db=5",
                     "dynamic.min_top1_agreement=0.6")
# tflite:int8,io=float quantizes its input inside the engine: the float-image user's alternative to
# the Session quantizing for an int8-I/O model (runtime_overhead.py times both).
TARGETS = ("tflite:fp32", "tflite:fp16", "tflite:int8", "tflite:int8,io=float", "tflite:dynamic", "onnx:fp32",
           "onnx:int8,reduce_range=true")


def images(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` smooth random RGB images in [0, 1]: low-resolution noise upsampled (image-like statistics)."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, size // 16 + 1, size // 16 + 1, 3), dtype=np.float32)
    up = np.repeat(np.repeat(low, 16, axis=1), 16, axis=2)[:, :size, :size]
    return np.clip(up + 0.05 * rng.standard_normal(up.shape, dtype=np.float32), 0, 1).astype(np.float32)


def build_model(size: int, alpha: float, calib: np.ndarray):
    """MobileNetV2 (weights=None) whose BatchNorm moving statistics come from ``calib``."""
    import tensorflow as tf

    keras = tf.keras
    tf.keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=1000)
    x = tf.constant(calib[:16] * 2.0 - 1.0)  # MobileNetV2 expects [-1, 1]
    # One pass per BN layer in order: each layer's statistics are set from the activations that
    # reach it with the layers before it already normalised.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            sub = keras.Model(model.input, layer.input)
            a = sub(x, training=False).numpy()
            axes = tuple(range(a.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(axis=axes), a.var(axis=axes) + 1e-3])
    # A trained classifier is confident; an untrained one spreads ~1/1000 over every class, which an
    # int8 softmax output (scale 1/256) rounds to zero. Scale the head so logits have a trained
    # model's spread (std ~4: the top class takes most of the probability).
    head = model.get_layer("predictions")
    feats = keras.Model(model.input, head.input)(x, training=False).numpy()
    kernel, bias = head.get_weights()
    logits = feats @ kernel + bias
    head.set_weights([kernel * (4.0 / float(logits.std())), bias])
    inp = keras.Input((size, size, 3), name="image")
    out = model(inp * 2.0 - 1.0)
    return keras.Model(inp, out, name=f"mobilenetv2_{alpha}_{size}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--calib", type=int, default=100)
    ap.add_argument("--eval", type=int, default=64)
    ap.add_argument("-t", "--target", action="append", help="override the targets")
    args = ap.parse_args()
    calib = images(args.calib, args.size, 1)
    ev = images(args.eval, args.size, 2)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args.size, args.alpha, calib)
        path = Path(tmp) / "mobilenetv2.keras"
        model.save(path)
        np.savez(Path(tmp) / "calib.npz", image=calib)
        np.savez(Path(tmp) / "eval.npz", image=ev)
        cmd = [sys.executable, "-m", "edgekit.cli", "convert", str(path), "--calib", str(Path(tmp) / "calib.npz"),
               "--eval", str(Path(tmp) / "eval.npz"), "-o", str(args.out), "--force"]
        for t in args.target or TARGETS:
            cmd += ["-t", t]
        for tol in TIMING_TOLERANCES:
            cmd += ["--tol", tol]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
