"""Every keras.applications family at 224² to every edge target: docs/applications.md (issue #11 point 3).

Run: ``.venv/bin/python benchmarks/applications.py [--families MobileNetV2,ResNet50,...]
[--targets tflite:fp32,onnx:int8] [--calib 32] [--eval 48] [--quick] [-o docs/applications.md]
[--json docs/applications.json]``; ``--render`` re-writes the markdown from the JSON without converting.

Per family, two fresh subprocesses (one family's memory or crash never touches the next, and each
peak RSS is that process's own):

1. **build**: ``keras.applications.<Family>(input_shape=(224, 224, 3), weights=None, classes=1000)``.
   No pretrained weights can be downloaded here, so BatchNorm moving statistics are set from one
   batch of 16 images (random weights alone give ~1e-15 outputs no quantizer can represent): one
   forward with ``training=True``, every BatchNormalization at ``momentum=0`` (its moving statistics
   become that batch's) and every Dropout at rate 0 (EfficientNet's stochastic depth would
   otherwise drop whole blocks). In training mode each BN normalises with the statistics of its own
   input, the layers before it already normalised, so the one pass gives what a per-layer pass
   does, in one forward instead of one per BN layer. Then the classifier (the last Dense) is scaled
   so its logits have a trained model's spread (std 4): an untrained head spreads ~1/1000 over every
   class, which an int8 softmax output (scale 1/256) rounds to zero. The model is saved as
   ``.keras``; calibration and eval data as ``.npz``.
2. **convert**: :func:`edgekit.api.convert` on that ``.keras`` file with every target in one recipe
   (as ``edgekit convert model.keras --calib calib.npz --eval eval.npz -t ...`` runs it). Before each
   target (the ``[i/N] target: converting`` progress line) the child resets its peak RSS
   (``/proc/self/clear_refs`` ← 5) and reads ``VmHWM`` from ``/proc/self/status`` when the next
   target starts: each target's peak RSS is the process's peak *during that target* (export,
   calibration, validation), which includes what the load and earlier targets left resident.

Images: random crops (35-100 % of the short side), flips and rescales to 224² of scikit-learn's two
bundled photos (``load_sample_images``: china, flower) — natural-image statistics, no downloads —
in 0..255, then the family's own ``keras.applications.<module>.preprocess_input`` (MobileNetV2
[-1, 1], ResNet50 caffe BGR mean subtraction; MobileNetV3 / EfficientNet / ConvNeXt / RegNet
rescale inside the model and take 0..255 unchanged). BN statistics, calibration and eval crops use
different seeds. The data carries no labels (the networks are untrained): cells are judged by SNR
and top-1 agreement against the Keras model, with edgekit's default tolerances.

Blame per cell is read off each artifact's status and ``error_kind`` (``tools.coverage.blame_for``),
never parsed from messages: engine / platform / precision / converter / edgekit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAMILIES = ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0", "ResNet50")
TARGETS = ("tflite:fp32", "tflite:fp16", "tflite:dynamic", "tflite:int8", "onnx:fp32", "onnx:fp16", "onnx:int8",
           "coreml:fp16")
SIZE = 224
STATS_SAMPLES = 16
HEAD_CONFIDENCE = 0.6  # mean top-1 probability the head is scaled to (a trained ImageNet classifier's ballpark)
SEEDS = {"stats": 0, "calib": 1, "eval": 2}


# ---------------------------------------------------------------------------------------------- data


def crops(n: int, size: int, seed: int):
    """``n`` random crops/flips/rescales of sklearn's two sample photos, RGB float32 in 0..255, NHWC.

    Example:
        >>> crops(2, 32, 0).shape
        (2, 32, 32, 3)
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427x640 RGB uint8 photos shipped in the wheel
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        img = photos[int(rng.integers(len(photos)))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        a = np.asarray(crop, np.float32)
        out[i] = a[:, ::-1] if rng.random() < 0.5 else a
    return out


def family_module(family: str):
    """The module that defines ``keras.applications.<family>`` (its ``preprocess_input`` is the family's)."""
    import importlib

    import keras

    fn = getattr(keras.applications, family, None)
    if fn is None:
        import difflib

        known = [x for x in dir(keras.applications) if x[:1].isupper()]
        near = difflib.get_close_matches(family, known, n=4, cutoff=0.5)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise SystemExit(f"keras {keras.__version__} has no keras.applications.{family}{hint}; it has {len(known)} families: "
                         f"python -c 'import keras; print(dir(keras.applications))' lists them")
    mod = importlib.import_module(fn.__module__)
    if not hasattr(mod, "preprocess_input"):
        raise SystemExit(f"{fn.__module__} has no preprocess_input for {family}")
    return mod


# ---------------------------------------------------------------------------------------------- children


def _vm(field: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of this process in bytes (from /proc/self/status), or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _gain_for_confidence(z, target: float) -> float:
    """The factor ``t`` such that softmax(``t * z``) has mean top probability ``target`` (bisection on log t)."""
    import numpy as np

    def conf(t: float) -> float:
        a = t * z
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return float((e.max(axis=1) / e.sum(axis=1)).mean())

    lo, hi = 1e-3, 1e3
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if conf(mid) < target else (lo, mid)
    return (lo * hi) ** 0.5


def input_noise_baseline(model, evald, probs=None) -> dict[str, Any]:
    """The untrained network's own sensitivity, in Keras fp32, no converter involved.

    Every eval input element is perturbed by a relative error of at most 2^-11 (``fp16``: fp16's
    rounding error; plain fp16 rounding would leave 0..255 integer pixels exact) or 2^-24 (``fp32``:
    one float32 rounding), uniform and seeded, and the outputs are compared as edgekit compares an
    artifact's. Every reduced-precision artifact rounds at least this much in every layer, and every
    fp32 artifact re-orders float sums, so these numbers are about what such an artifact of this
    untrained network can reach; a trained network is far less sensitive.
    """
    import numpy as np

    from edgekit.convert.validate import snr_db

    if probs is None:
        probs = np.asarray(model.predict(evald, batch_size=8, verbose=0))
    rng = np.random.default_rng(SEEDS["eval"])
    u = rng.uniform(-1.0, 1.0, evald.shape)
    result = {}
    for name, bits in (("fp16", 11), ("fp32", 24)):
        noisy = (evald * (1.0 + 2.0 ** -bits * u)).astype(np.float32)
        out = np.asarray(model.predict(noisy, batch_size=8, verbose=0))
        diff = np.abs(out.astype(np.float64) - probs)
        result[name] = {"method": f"input x (1 + U(-2^-{bits}, 2^-{bits}))", "snr_db": float(snr_db(probs, out)),
                        "max_abs_err": float(diff.max()),
                        "top1_agreement": float(np.mean(out.argmax(axis=1) == probs.argmax(axis=1)))}
    return result


def child_baseline(work: Path) -> int:
    """Recompute :func:`input_noise_baseline` for an already built family (work/model.keras, eval.npz)."""
    import numpy as np
    import keras

    model = keras.saving.load_model(work / "model.keras")
    with np.load(work / "eval.npz") as npz:
        evald = npz["x"]
    (work / "baseline.json").write_text(json.dumps(input_noise_baseline(model, evald), indent=2))
    return 0


def child_build(family: str, work: Path, calib_n: int, eval_n: int) -> int:
    """Build ``family`` with BN statistics and a scaled head; save model.keras, calib.npz, eval.npz, build.json."""
    t0 = time.perf_counter()
    import numpy as np
    import keras

    keras.utils.set_random_seed(0)
    mod = family_module(family)
    model = getattr(mod, family)(input_shape=(SIZE, SIZE, 3), weights=None, classes=1000)

    def data(n: int, seed: int):
        return np.asarray(mod.preprocess_input(crops(n, SIZE, seed).copy()), np.float32)

    stats, calib, evald = data(STATS_SAMPLES, SEEDS["stats"]), data(calib_n, SEEDS["calib"]), data(eval_n, SEEDS["eval"])
    t_data = time.perf_counter()

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    saved = [(b, b.momentum) for b in bns] + [(d, d.rate) for d in drops]
    for b in bns:
        b.momentum = 0.0
    for d in drops:
        d.rate = 0.0
    model(stats, training=True)  # every BN's moving statistics := its input's batch statistics
    for layer, value in saved:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = value
        else:
            layer.rate = value
    t_bn = time.perf_counter()

    # The classifier: the last Dense (most families) or 1x1 Conv2D (MobileNetV3's "logits") layer.
    # Untrained, its logits are ~1e-3 and dominated by a per-class offset shared by every image
    # (pooled ReLU features have a large common mean): scaled as they are, one class wins every
    # image with probability 1.0 and the output is a one-hot no precision can be judged on. So the
    # logits are centred per class over the statistics batch (the bias) and scaled so the mean top
    # probability is a trained classifier's (HEAD_CONFIDENCE): input-dependent, not saturated.
    heads = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
             and getattr(layer, "kernel", None) is not None]
    head_note, logit_std = "no Dense/Conv2D head", None
    if heads:
        head = heads[-1]
        kernel, *rest = head.get_weights()
        bias = rest[0] if rest else np.zeros(kernel.shape[-1], np.float32)
        # The logits before the layer's own activation (the Dense "predictions" layer applies softmax).
        feats = np.asarray(keras.Model(model.input, head.input)(stats, training=False))
        raw = feats.reshape(len(feats), -1) @ kernel.reshape(-1, kernel.shape[-1])  # Dense, or a 1x1 conv on 1x1
        mu = raw.mean(axis=0)
        centred = raw - mu if rest else raw
        logit_std = float(centred.std())
        gain = _gain_for_confidence(centred / max(logit_std, 1e-30), HEAD_CONFIDENCE) / max(logit_std, 1e-30)
        new = [kernel * gain] + ([(-mu * gain).astype(bias.dtype).reshape(rest[0].shape)] if rest else [])
        head.set_weights(new)
        head_note = (f"{head.name} ({type(head).__name__}): logits centred per class, std {logit_std:.3g} -> "
                     f"{logit_std * gain:.3g} (mean top probability {HEAD_CONFIDENCE} on the statistics batch)")
    probs = np.asarray(model.predict(evald, batch_size=8, verbose=0))
    top = probs.argmax(axis=1)
    baseline = input_noise_baseline(model, evald, probs)
    work.mkdir(parents=True, exist_ok=True)
    model.save(work / "model.keras")
    np.savez(work / "calib.npz", x=calib)
    np.savez(work / "eval.npz", x=evald)
    info = {
        "family": family, "module": mod.__name__.rsplit(".", 1)[-1], "params": int(model.count_params()),
        "layers": len(model.layers), "bn_layers": len(bns), "dropout_layers": len(drops), "head": head_note,
        "untrained_logit_std": logit_std,
        "input_range": [float(calib.min()), float(calib.max())],
        "eval_top1_distinct": int(len(set(top.tolist()))), "eval_top_prob_mean": float(probs.max(axis=1).mean()),
        "input_fp16_baseline": baseline["fp16"], "input_fp32_baseline": baseline["fp32"],
        "model_bytes": (work / "model.keras").stat().st_size,
        "data_seconds": round(t_data - t0, 1), "bn_seconds": round(t_bn - t_data, 1),
        "build_seconds": round(time.perf_counter() - t0, 1), "peak_rss": _vm("VmHWM"),
    }
    (work / "build.json").write_text(json.dumps(info, indent=2))
    return 0


def child_convert(work: Path, targets: list[str], calib_n: int, eval_n: int) -> int:
    """Convert work/model.keras to ``targets`` with edgekit; write convert.json (manifest + RSS per phase)."""
    t0 = time.perf_counter()
    phases: dict[str, int | None] = {}
    current = ["load+reference"]
    log = open(work / "convert.log", "a", buffering=1)

    def close_phase() -> None:
        phases[current[0]] = _vm("VmHWM")

    def progress(line: str) -> None:
        log.write(f"{time.perf_counter() - t0:8.1f}s {line}\n")
        if line.startswith("[") and line.endswith(": converting"):
            close_phase()
            current[0] = line.split("] ", 1)[1].rsplit(": converting", 1)[0]
            _reset_peak()

    _reset_peak()
    from edgekit.api import convert

    recipe = {"model": str(work / "model.keras"), "targets": targets, "calib": str(work / "calib.npz"),
              "eval": str(work / "eval.npz"), "calib_limit": calib_n, "eval_limit": eval_n, "seed": 0}
    manifest = convert(recipe, work / "out", force=True, progress=progress)
    close_phase()
    result = {"manifest": manifest.to_dict(), "phase_peak_rss": phases, "wall_seconds": round(time.perf_counter() - t0, 1),
              "peak_rss_resets": _reset_peak()}
    (work / "convert.json").write_text(json.dumps(result, indent=2, default=str))
    log.close()
    return 0


# ---------------------------------------------------------------------------------------------- parent


def _child(args: list[str], timeout: float, log: Path) -> tuple[int, float, str]:
    """Run this script as a child; return (rc, seconds, the last line of its output: the error, if it failed)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        try:
            rc = subprocess.run([sys.executable, __file__, *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -9
    lines = [x for x in log.read_text(errors="replace").strip().splitlines() if x.strip()]
    return rc, round(time.perf_counter() - t0, 1), (lines[-1] if lines else "no output")[:500]


def _last_target(log: Path) -> str | None:
    if not log.is_file():
        return None
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.rstrip().endswith(": converting")]
    return lines[-1].split("] ", 1)[1].rsplit(": converting", 1)[0] if lines else None


def cells_for(family: str, targets: list[str], conv: dict[str, Any] | None, why: str | None) -> list[dict[str, Any]]:
    """One dict per target: status, blame (from status + error_kind), reason, numbers, peak RSS of its phase."""
    from edgekit.manifest import ERROR, PASSED, Artifact
    from tools.coverage import blame_for, converter_name

    if conv is None:
        return [{"family": family, "target": t, "status": ERROR, "blame": "edgekit", "reason": why} for t in targets]
    phases = conv.get("phase_peak_rss", {})
    out = []
    for a in (Artifact.from_dict(d) for d in conv["manifest"]["artifacts"]):
        v = a.validation or {}
        out.append({
            "family": family, "target": a.target, "status": a.status, "blame": blame_for(a.status, a.error_kind),
            "reason": None if a.status == PASSED else (a.error or a.status), "error_kind": a.error_kind,
            "tool": converter_name(a.error_kind, a.error_tool), "bytes": a.bytes, "snr_db": v.get("snr_db"),
            "top1_agreement": v.get("top1_agreement"), "max_abs_err": v.get("max_abs_err"),
            "samples": v.get("samples"), "seconds": a.seconds, "peak_rss": phases.get(a.target),
            "notes": list(a.notes),
        })
    return out


def machine() -> dict[str, str]:
    from tools.coverage import machine as coverage_machine

    m = coverage_machine()
    m["cpus"] = str(os.cpu_count())
    try:
        mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        m["memory"] = f"{int(mem.split()[1]) / (1 << 20):.0f} GiB"
    except (OSError, StopIteration):
        pass
    return m


def run_family(family: str, targets: list[str], root: Path, calib_n: int, eval_n: int, timeout: float,
               say) -> dict[str, Any]:
    work = root / family
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("build.json", "convert.json", "convert.log", "child.log"):
        (work / stale).unlink(missing_ok=True)
    log = work / "child.log"
    say(f"{family}: building (BN statistics, head scaling)")
    rc, build_s, tail = _child(["--_build", family, "--_work", str(work), "--calib", str(calib_n),
                                "--eval", str(eval_n)], timeout, log)
    entry: dict[str, Any] = {"family": family, "build_wall_seconds": build_s}
    if rc != 0 or not (work / "build.json").is_file():
        why = f"model could not be built (benchmark set-up, not a conversion): child rc {rc}: {tail}"
        entry.update(build=None, convert=None, cells=cells_for(family, targets, None, why))
        entry["cells"] = [dict(c, blame="setup") for c in entry["cells"]]
        say(f"{family}: build failed rc {rc}: {tail}")
        return entry
    entry["build"] = json.loads((work / "build.json").read_text())
    say(f"{family}: built in {build_s:.0f}s ({entry['build']['params'] / 1e6:.1f} M params); converting "
        f"{len(targets)} targets")
    rc, conv_s, tail = _child(["--_convert", str(work), "--targets", ",".join(targets), "--calib", str(calib_n),
                               "--eval", str(eval_n)], timeout, log)
    entry["convert_wall_seconds"] = conv_s
    if rc != 0 or not (work / "convert.json").is_file():
        at = _last_target(work / "convert.log")
        why = (f"edgekit convert died (child rc {rc}{', timed out' if rc == -9 else ''})"
               f"{f' during {at}' if at else ''}: {tail}")
        entry.update(convert=None, cells=cells_for(family, targets, None, why))
        say(f"{family}: convert failed: {why}")
        return entry
    conv = json.loads((work / "convert.json").read_text())
    entry["convert"] = {"wall_seconds": conv["wall_seconds"], "phase_peak_rss": conv["phase_peak_rss"],
                        "peak_rss": max((v for v in conv["phase_peak_rss"].values() if v), default=None),
                        "peak_rss_resets": conv["peak_rss_resets"], "eval_data": conv["manifest"].get("eval_data")}
    entry["cells"] = cells_for(family, targets, conv, None)
    ok = sum(c["status"] == "passed" for c in entry["cells"])
    say(f"{family}: converted in {conv_s:.0f}s: {ok}/{len(targets)} passed, peak RSS "
        f"{(entry['convert']['peak_rss'] or 0) / (1 << 20):.0f} MiB")
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=str(REPO / "docs/applications.md"), help="Markdown file to write.")
    ap.add_argument("--json", dest="json_path", default=str(REPO / "docs/applications.json"),
                    help="The measured data as JSON (written after every family).")
    ap.add_argument("--families", help=f"Comma list of keras.applications names (default: {','.join(FAMILIES)}).")
    ap.add_argument("--targets", help=f"Comma list of format:precision (default: {','.join(TARGETS)}).")
    ap.add_argument("--calib", type=int, default=32, help="Calibration samples (default 32).")
    ap.add_argument("--eval", type=int, default=48, help="Eval samples (default 48).")
    ap.add_argument("--quick", action="store_true",
                    help="Smoke run: MobileNetV3Small only (unless --families), 8 calib / 8 eval samples, "
                         "written to /tmp/edgekit-applications-quick.{md,json} unless -o / --json are given.")
    ap.add_argument("--work", default="/tmp/edgekit-applications", help="Models, data and artifacts (kept).")
    ap.add_argument("--timeout", type=float, default=1800, help="Seconds per child (build, convert).")
    ap.add_argument("--render", action="store_true", help="Only re-write the markdown from --json.")
    ap.add_argument("--rebaseline", action="store_true",
                    help="Only recompute every family's Keras input-noise baseline (from --work) into --json.")
    ap.add_argument("--force-baseline", action="store_true", help="With --rebaseline: recompute every family's.")
    ap.add_argument("--_build", help=argparse.SUPPRESS)
    ap.add_argument("--_baseline", help=argparse.SUPPRESS)
    ap.add_argument("--_convert", help=argparse.SUPPRESS)
    ap.add_argument("--_work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    targets = [t.strip() for t in (args.targets or ",".join(TARGETS)).split(",") if t.strip()]

    if args._build:
        return child_build(args._build, Path(args._work), args.calib, args.eval)
    if args._baseline:
        return child_baseline(Path(args._baseline))
    if args._convert:
        return child_convert(Path(args._convert), targets, args.calib, args.eval)

    from tools.applications_report import render

    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = ".venv/bin/python benchmarks/applications.py" + (f" {argv_text}" if argv_text else "")
    if args.quick:
        args.calib, args.eval = min(args.calib, 8), min(args.eval, 8)
        if not any(a.startswith(("-o", "--out")) for a in (sys.argv if argv is None else argv)):
            args.out = "/tmp/edgekit-applications-quick.md"
        if not any(a.startswith("--json") for a in (sys.argv if argv is None else argv)):
            args.json_path = "/tmp/edgekit-applications-quick.json"
    if args.render:
        data = json.loads(Path(args.json_path).read_text())
        Path(args.out).write_text(render(data))
        print(f"wrote {args.out}")
        return 0
    if args.rebaseline:
        data = json.loads(Path(args.json_path).read_text())
        for r in data["runs"]:
            work = Path(args.work) / r["family"]
            if r.get("build") is None or not (work / "model.keras").is_file():
                continue
            if r["build"].get("input_fp32_baseline") and not args.force_baseline:
                continue  # already measured by this version's build
            rc, secs, tail = _child(["--_baseline", str(work)], args.timeout, work / "child.log")
            if rc == 0:
                b = json.loads((work / "baseline.json").read_text())
                r["build"]["input_fp16_baseline"], r["build"]["input_fp32_baseline"] = b["fp16"], b["fp32"]
            print(f"{r['family']}: baseline rc {rc} ({secs:.0f}s) {r['build'].get('input_fp16_baseline')} "
                  f"{r['build'].get('input_fp32_baseline')}", flush=True)
            Path(args.json_path).write_text(json.dumps(data, indent=2))
        Path(args.json_path).write_text(json.dumps(data, indent=2))
        Path(args.out).write_text(render(data))
        return 0
    families = [f.strip() for f in (args.families or ("MobileNetV3Small" if args.quick else ",".join(FAMILIES))).split(",")
                if f.strip()]

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    root = Path(args.work)
    data: dict[str, Any] = {
        "families": families, "targets": targets, "machine": machine(), "command": command,
        "settings": {"size": SIZE, "calib": args.calib, "eval": args.eval, "stats_samples": STATS_SAMPLES,
                     "head_confidence": HEAD_CONFIDENCE, "seeds": SEEDS, "load_avg_start": os.getloadavg()[0]},
        "runs": [], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    t0 = time.perf_counter()
    for family in families:
        data["runs"].append(run_family(family, targets, root, args.calib, args.eval, args.timeout, say))
        data["wall_seconds"] = round(time.perf_counter() - t0, 1)
        data["settings"]["load_avg_end"] = os.getloadavg()[0]
        Path(args.json_path).write_text(json.dumps(data, indent=2))
        Path(args.out).write_text(render(data))
    say(f"wrote {args.out} and {args.json_path} ({data['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
