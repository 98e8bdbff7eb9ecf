"""``docs/applications.md`` from the JSON that ``benchmarks/applications.py`` measures: one matrix of
keras.applications families x edge targets, a legend, the reason for every cell that did not pass, and
per family the numbers behind every cell (size, SNR, top-1 agreement, convert seconds, peak RSS).

Symbols and blame categories are :mod:`tools.coverage_report`'s (engine / platform / precision /
converter / edgekit), read off each artifact's status and ``error_kind`` by the benchmark.

Example:
    >>> run = {"families": ["M"], "targets": ["tflite:fp32"], "machine": {}, "settings": {}, "runs": [
    ...     {"family": "M", "cells": [{"family": "M", "target": "tflite:fp32", "status": "passed", "blame": None,
    ...      "snr_db": 80.0, "top1_agreement": 1.0}]}]}
    >>> "| M |" in render(run) and "✅ 80 dB" in render(run)
    True
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from edgekit.manifest import ERROR, FAILED, NOT_VALIDATED, PASSED
from tools.coverage_report import LEGEND, SYMBOLS

BLAMES = ("engine", "platform", "precision", "converter", "edgekit", "setup")
MIB = 1 << 20

NOTES = (
    "**Untrained weights.** No pretrained weights can be downloaded here, so every network is `weights=None`: "
    "random kernels, BatchNorm moving statistics set from one batch of 16 natural-image crops (one `training=True` "
    "forward with `momentum=0`, Dropout off), and the classifier (last Dense, or MobileNetV3's 1×1 `logits` conv) "
    "centred per class over that batch and scaled so the mean top probability is 0.6, a trained classifier's "
    "ballpark. Without the centring an untrained head's logits are dominated by a per-class offset every image "
    "shares (pooled ReLU features have a large common mean): one class wins every image with probability 1.0 and "
    "there is nothing to compare; without the scaling the ~1e-3 logits give a near-uniform softmax that an int8 "
    "output (scale 1/256) rounds to zero. This gives activations and outputs of a realistic *scale*, not a trained "
    "network's *robustness*.",
    "**Why an untrained network's reduced-precision numbers are not a trained one's.** A deep network with "
    "BatchNorm at random initialisation amplifies small perturbations exponentially with depth (the gradient "
    "explosion of BatchNorm networks at initialisation: Yang et al., *A Mean Field Theory of Batch Normalization*, "
    "ICLR 2019); a trained network is far less sensitive. The *fp16 input* column of the Families table measures "
    "it on the Keras model itself, in fp32, with no converter involved: every element of the eval crops is "
    "perturbed by a relative error of at most 2⁻¹¹ (uniform, seeded: fp16's rounding error; rounding to fp16 "
    "itself would leave the 0..255 integer pixels some families take exact), and the output is compared with the "
    "unperturbed one the way edgekit compares an artifact. Every fp16/dynamic/int8 artifact rounds at that "
    "precision or coarser in every layer (every weight; for onnx:fp16 every activation too; for int8, 8-bit "
    "weights and activations), not only the input once. The fp16 artifacts land within a few dB of that column "
    "(either side): where it is below 30 dB (MobileNetV2, ResNet50) no converter can be expected to meet the fp16 "
    "tolerance, and where it is just above, fp16 cells fail by one or two flipped eval crops (top-1 96-98 %) or "
    "by onnx:fp16's fp16 activations (a few dB lower). Those ❌ cells are the untrained network's sensitivity, "
    "blamed *precision*, not a conversion defect. Trained MobileNet/EfficientNet/ResNet models typically lose "
    "about a point of ImageNet top-1 or less in fp16 and in int8 post-training quantization; the numbers below "
    "are a lower bound for a trained model. The fp32 cells (the same maths re-implemented) show each converter "
    "is exact up to float rounding; where an fp32 cell misses the fp32 tolerance's max abs err (1e-4) at 70+ dB "
    "SNR and 100 % top-1 agreement, the *fp32 input* column shows one float32 rounding of the input already moves "
    "this untrained network's output by about as much: re-ordered float sums in the converted graph do the same.",
    "**Calibration** uses 32 samples to keep the run short (edgekit warns below 100; TFLite's guidance is "
    "100-500). More would not rescue int8 here: `tflite:dynamic`, which quantizes only the weights and needs no "
    "calibration at all, misses its tolerance on the same families, so the loss comes from rounding weights of an "
    "untrained network, not from activation ranges.",
    "**Top-1 agreement** is the fraction of eval crops whose arg-max class is the same as the Keras model's (the data "
    "has no labels, so there is no accuracy column). SNR is the worst output's, on the softmax probabilities.",
    "**Peak RSS** is `VmHWM` of the convert child process (a fresh process per family, never the benchmark's own), "
    "reset through `/proc/self/clear_refs` when each target starts and read when the next one starts: a target's "
    "figure is the process's peak *during that target* (export, calibration, validation), which includes what "
    "loading the model, the reference outputs and earlier targets left resident. `load+ref` is the phase before the "
    "first target (import, load the `.keras` file, read the data, predict the reference outputs). The family's "
    "figure is the largest of its phases. The build (model construction, statistics) runs in a process of its own "
    "and is not counted.",
    "**Convert seconds** are each artifact's export time from the manifest (`artifact.seconds`: conversion, "
    "calibration and quantization; validation not included). The family's wall time is the whole `convert` child "
    "(load, reference outputs, every target's export and validation). The machine is shared (2 cores, other jobs "
    "running), so times are indicative.",
    "**Not validated** (⚪): CoreML packages are written and checked by coremltools, but run only on macOS; the "
    "number is the package size.",
)


def symbol(cell: dict[str, Any]) -> str:
    """The table symbol of a cell: ✅ ❌ ⚪ ⛔ or, for errors, 🛑 (converter) / 🐞 (edgekit)."""
    status, blame = cell.get("status"), cell.get("blame")
    if status == ERROR:
        if blame == "setup":
            return "🧰"
        if blame == "engine":
            return SYMBOLS["unsupported"]
        return SYMBOLS["converter" if blame == "converter" else "edgekit"]
    if status == NOT_VALIDATED and cell.get("bytes") is None:
        return SYMBOLS["edgekit"]
    return SYMBOLS.get(status, SYMBOLS["edgekit"])


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    return f"{nbytes / 1024:.0f} KiB" if nbytes < MIB else f"{nbytes / MIB:.1f} MiB"


def _mib(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / MIB:,.0f}"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _top1(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def cell_text(cell: dict[str, Any], note: int | None) -> str:
    """``✅ 52 dB · 100 %``, ``⚪ 6.8 MiB``, ``🛑 [2]``: symbol, SNR and top-1 (or size), reason number.

    Example:
        >>> cell_text({"status": "passed", "snr_db": 51.6, "top1_agreement": 1.0}, None)
        '✅ 52 dB · 100 %'
    """
    key = ""
    if cell.get("status") in (PASSED, FAILED) and cell.get("snr_db") is not None:
        key = f" {cell['snr_db']:.0f} dB"
        if cell.get("top1_agreement") is not None:
            key += f" · {_top1(cell['top1_agreement'])}"
    elif cell.get("status") == NOT_VALIDATED:
        key = f" {_size(cell.get('bytes'))}"
    ref = f" [{note}]" if note is not None else ""
    return f"{symbol(cell)}{key}{ref}"


def _cells(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for r in run["runs"] for c in r.get("cells", [])]


def _cell(run: dict[str, Any], family: str, target: str) -> dict[str, Any] | None:
    return next((c for c in _cells(run) if c["family"] == family and c["target"] == target), None)


def counts(run: dict[str, Any]) -> dict[str, int]:
    """Cells per outcome: ``passed`` and one key per blame.

    Example:
        >>> counts({"runs": [{"cells": [{"status": "passed"}, {"status": "error", "blame": "converter"}]}]})["converter"]
        1
    """
    out = {"passed": 0, **{b: 0 for b in BLAMES}}
    for c in _cells(run):
        out["passed" if c.get("status") == PASSED else (c.get("blame") or "edgekit")] += 1
    return out


def _notes(run: dict[str, Any]) -> tuple[dict[tuple[str, str], int], list[tuple[int, str, list[dict[str, Any]]]]]:
    """Number each distinct reason once (CoreML's 'not validated' is in the legend, not a note)."""
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in _cells(run):
        if c.get("reason") and c["status"] != PASSED and not (c["status"] == NOT_VALIDATED and c.get("blame") == "platform"):
            by_reason[_short(c)].append(c)
    targets = run["targets"]
    ordered = sorted(by_reason.items(), key=lambda kv: (
        targets.index(kv[1][0]["target"]) if kv[1][0]["target"] in targets else len(targets), kv[0]))
    numbers, notes = {}, []
    for i, (reason, cells) in enumerate(ordered, 1):
        for c in cells:
            numbers[(c["family"], c["target"])] = i
        notes.append((i, reason, cells))
    return numbers, notes


def _short(cell: dict[str, Any]) -> str:
    """The key a reason is numbered by: the reason as one line, or for a precision verdict (whose
    numbers differ per family) the target's tolerance, with each family's verdict listed in the note."""
    if cell.get("blame") == "precision":
        return f"precision:{cell['target']}"
    return " ".join(str(cell["reason"]).split())


def _tolerance_text(target: str) -> str:
    from edgekit.convert.recipe import DEFAULT_TOLERANCES

    precision = target.split(":", 1)[1].split(",")[0] if ":" in target else target
    tol = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["int8"])
    parts = []
    if tol.get("max_abs_err") is not None:
        parts.append(f"max abs err ≤ {tol['max_abs_err']:g} (relative)")
    if tol.get("min_snr_db") is not None:
        parts.append(f"SNR ≥ {tol['min_snr_db']:g} dB")
    if tol.get("min_top1_agreement") is not None:
        parts.append(f"top-1 agreement ≥ {tol['min_top1_agreement']:g}")
    return f"outside the default {precision} tolerance ({', '.join(parts)})"


def _reason_text(key: str, cells: list[dict[str, Any]]) -> str:
    if key.startswith("precision:"):
        verdicts = "; ".join(f"{c['family']}: {' '.join(str(c['reason']).split())}" for c in cells)
        return f"{_tolerance_text(cells[0]['target'])}, an untrained network's sensitivity (see Notes) — {verdicts}"
    return key


def _where(cells: list[dict[str, Any]], run: dict[str, Any]) -> str:
    by_family: dict[str, list[str]] = defaultdict(list)
    for c in cells:
        by_family[c["family"]].append(c["target"])
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for family, targets in by_family.items():
        groups[tuple(targets)].append(family)
    parts = []
    for targets, families in groups.items():
        who = "all families" if len(families) == len(run["families"]) > 1 else ", ".join(families)
        parts.append(f"{who}: {', '.join(targets)}")
    return "; ".join(parts)


def summary(run: dict[str, Any]) -> list[str]:
    n = counts(run)
    cells = _cells(run)
    tools: dict[str, int] = defaultdict(int)
    for c in cells:
        if c.get("blame") == "converter":
            tools[c.get("tool") or "converter"] += 1
    by_tool = ", ".join(f"{k} {v}" for k, v in sorted(tools.items())) or "none"
    lines = [
        f"- **{len(cells)} cells** ({len(run['families'])} families × {len(run['targets'])} targets)",
        f"- ✅ passed: **{n['passed']}**",
        f"- ⚪ not validated (converted; CoreML runs only on macOS): **{n['platform']}**",
        f"- ⛔ unsupported by the engine/machine here: **{n['engine']}**",
        f"- ❌ outside tolerance (precision: quantization of an untrained network, see Notes): **{n['precision']}**",
        f"- 🛑 errors in the converter/quantizer: **{n['converter']}** ({by_tool})",
        f"- 🐞 errors attributable to edgekit (our bugs): **{n['edgekit']}**",
    ]
    if n["setup"]:
        lines.append(f"- 🧰 family could not be built by the benchmark (not a conversion): **{n['setup']}**")
    return lines


def _baseline(build: dict[str, Any], key: str = "input_fp16_baseline") -> str:
    b = build.get(key)
    if not b:
        return "-"
    if key == "input_fp32_baseline":
        return f"{b['snr_db']:.0f} dB · {b['max_abs_err']:.2g}"
    return f"{b['snr_db']:.0f} dB · {_top1(b.get('top1_agreement'))}"


def _family_row(r: dict[str, Any]) -> str:
    b, cv = r.get("build") or {}, r.get("convert") or {}
    params = f"{b['params'] / 1e6:.1f} M" if b.get("params") else "-"
    rng = b.get("input_range")
    rng_text = f"{rng[0]:.0f}..{rng[1]:.0f}" if rng else "-"
    return (f"| {r['family']} | {b.get('module', '-')} | {params} | {_size(b.get('model_bytes'))} | {rng_text} | "
            f"{b.get('bn_layers', '-')} | {_baseline(b, 'input_fp32_baseline')} | {_baseline(b)} | "
            f"{_num(b.get('build_seconds'), '.0f')} | "
            f"{_num(cv.get('wall_seconds'), '.0f')} | "
            f"{_mib((cv.get('phase_peak_rss') or {}).get('load+reference'))} | {_mib(cv.get('peak_rss'))} |")


def render(run: dict[str, Any], *, title: str = "keras.applications at 224² on every edge target") -> str:
    """The whole markdown document for the benchmark's JSON ``run``."""
    numbers, notes = _notes(run)
    s, targets = run.get("settings", {}), run["targets"]
    command = run.get("command", ".venv/bin/python benchmarks/applications.py")
    lines = [f"# {title}", "",
             "Each `keras.applications` family built at 224×224×3 with 1000 classes (`weights=None`, BatchNorm "
             "statistics from one batch, see Notes), saved as `.keras` and converted by `edgekit convert` to every "
             "target below in a fresh process per family; each artifact validated against the Keras model. "
             f"Generated by `{command}` (issue #11 point 3); do not edit by hand.", ""]
    lines.append(f"Calibration samples: {s.get('calib')} · eval samples: {s.get('eval')} · BN-statistics samples: "
                 f"{s.get('stats_samples')} (natural-image crops of scikit-learn's two sample photos, each family's "
                 "own `preprocess_input`) · default tolerances (`edgekit.convert.recipe.DEFAULT_TOLERANCES`).")
    if run.get("machine"):
        lines.append("Machine: " + " · ".join(f"{k} {v}" for k, v in run["machine"].items()) + ".")
    if run.get("wall_seconds") is not None:
        la = f"; load average {s.get('load_avg_start', 0):.1f} at start, {s.get('load_avg_end', 0):.1f} at end" \
            if s.get("load_avg_start") is not None else ""
        lines.append(f"Whole run: {run['wall_seconds'] / 60:.1f} min wall (started {run.get('started', '?')}{la}).")
    lines += ["", "## Summary", "", *summary(run), "", "## Matrix", ""]
    lines.append("Rows: families. Columns: targets. A validated cell shows the worst output's SNR against the Keras "
                 "model and the top-1 agreement on the eval crops; CoreML cells show the package size.")
    lines += ["", "| family | " + " | ".join(f"`{t}`" for t in targets) + " |", "|---|" + "---|" * len(targets)]
    for fam in run["families"]:
        row = []
        for t in targets:
            c = _cell(run, fam, t)
            row.append("…" if c is None else cell_text(c, numbers.get((fam, t))))
        lines.append(f"| {fam} | " + " | ".join(row) + " |")
    lines += ["", "## Families", "",
              "Params and `.keras` size of the built model; input range = the preprocessed data the model is fed; "
              "build = building the model and setting its statistics (own process); convert = the whole `edgekit "
              "convert` child; RSS in MiB. fp32 / fp16 input (Keras) = the Keras model's own output, in fp32 with no "
              "converter involved, when its eval input only gets one float32 rounding's (2⁻²⁴ relative: SNR · max abs "
              "err) or fp16's (2⁻¹¹ relative: SNR · top-1 agreement) worth of noise (see Notes): about what an fp32 / "
              "reduced-precision artifact of this untrained network can reach.", "",
              "| family | module | params | .keras | input range | BN layers | fp32 input (Keras) | fp16 input (Keras) | "
              "build s | convert s | RSS load+ref | peak RSS |", "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_family_row(r) for r in run["runs"]]
    legend = [("✅", "passed: converted, run on this machine and within the precision's tolerance (SNR and top-1 "
                      "agreement against the Keras model)"),
              ("❌", "failed: converted and run, but outside the precision's tolerance (the reason gives the numbers "
                      "and the limit)")] + [(sym, text) for sym, text in LEGEND if sym not in ("✅", "❌")]
    lines += ["", "## Legend", ""] + [f"- {sym} {text}" for sym, text in legend]
    if counts(run)["setup"]:
        lines.append("- 🧰 the benchmark could not build this family (a keras.applications or set-up problem, "
                     "before edgekit is called)")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    lines += ["", "## Reasons", ""]
    if not notes:
        lines.append("Every cell passed or is not validated on this platform.")
    for i, reason, cells in notes:
        blame = cells[0].get("blame") or "-"
        tool = f", {cells[0]['tool']}" if cells[0].get("tool") else ""
        lines.append(f"{i}. **{blame}{tool}** ({_where(cells, run)}): {_reason_text(reason, cells)}")
    lines += ["", "## Numbers", "",
              "Per cell: status, artifact size, SNR (dB) and top-1 agreement against the Keras model, max abs error, "
              "export seconds (manifest), peak RSS of the convert process during that target (MiB).", ""]
    for r in run["runs"]:
        fam = r["family"]
        cv = r.get("convert") or {}
        lines += [f"<details><summary>{fam}</summary>", "",
                  "| target | status | size | SNR dB | top-1 | max abs err | convert s | peak RSS MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|",
                  f"| (load+ref) | | | | | | | {_mib((cv.get('phase_peak_rss') or {}).get('load+reference'))} |"]
        for t in targets:
            c = _cell(run, fam, t)
            if c is None:
                continue
            lines.append(f"| `{t}` | {symbol(c)} {c['status']} | {_size(c.get('bytes'))} | {_num(c.get('snr_db'), '.1f')} | "
                         f"{_top1(c.get('top1_agreement'))} | {_num(c.get('max_abs_err'), '.3g')} | "
                         f"{_num(c.get('seconds'), '.1f')} | {_mib(c.get('peak_rss'))} |")
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
