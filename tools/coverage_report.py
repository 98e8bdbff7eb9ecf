"""``docs/coverage.md`` from a :class:`~tools.coverage.CoverageRun`: one table, a legend,
the reason for every cell that did not pass, and the numbers behind every cell.

Example:
    >>> from tools.coverage import Cell, CoverageRun
    >>> run = CoverageRun(["m"], ["tflite:fp32"], [Cell("m", "tflite:fp32", "passed", accuracy=97.5)])
    >>> "| m |" in render(run)
    True
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from edgekit.manifest import ERROR, FAILED, NOT_VALIDATED, PASSED, UNSUPPORTED
from tools.coverage import Cell, CoverageRun

# One symbol per outcome; errors split by who is to blame (see tools.coverage).
SYMBOLS = {
    PASSED: "✅",
    FAILED: "❌",
    NOT_VALIDATED: "⚪",
    UNSUPPORTED: "⛔",
    "converter": "🛑",
    "edgekit": "🐞",
}
LEGEND = (
    ("✅", "passed: converted, run on this machine and within the precision's tolerance; the number is the "
           "artifact's accuracy (%) on the model's eval data"),
    ("❌", "failed: converted and run, but outside tolerance (accuracy drop, top-1 agreement or SNR); "
           "number = its accuracy"),
    ("⚪", "not validated: converted, but its engine does not run here (CoreML runs only on macOS); "
           "number = artifact size"),
    ("⛔", "unsupported here: the converter or engine is not available on this machine (TF-TRT needs a TensorRT "
           "build of TensorFlow, TensorRT an NVIDIA GPU)"),
    ("🛑", "error in a third-party converter or quantizer (TFLite converter, tf2onnx, coremltools, "
           "onnxruntime.quantization); the reason says which and what to change"),
    ("🐞", "error in edgekit itself: a bug of ours"),
)

# What a reader needs to read the table right (how the zoo sidesteps known converter breakages).
NOTES = (
    "Data: every model trains and validates on scikit-learn's bundled digits (`edgekit zoo list` says in "
    "which form); MNIST and CIFAR-10 are not bundled, so their tutorial models see the digits upscaled to 28x28 "
    "and 32x32 RGB.",
    "text-lstm / text-gru are built with `unroll=True` (64 steps). With a `while` loop (`unroll=False`) the "
    "TFLite converter needs static TensorList shapes and fails with a message that says so; "
    "`tflite:fp32,select_tf_ops=true` converts it with Select TF ops (recorded in the manifest), but such a file "
    "runs only where the Flex delegate is linked in (not ai-edge-litert), and int8 calibration cannot run it. "
    "tf2onnx and coremltools convert either form.",
    "multitask-subclassed is a subclassed `keras.Model`: edgekit wraps it in a functional model from the zoo's "
    "input spec (or the build shape saved in a `.keras` file) before converting.",
)


def symbol(cell: Cell) -> str:
    """The table symbol of a cell (errors by blame: converter or edgekit)."""
    if cell.status == ERROR:
        return SYMBOLS["converter" if cell.blame == "converter" else "edgekit"]
    if cell.status == NOT_VALIDATED and cell.bytes is None:
        return SYMBOLS["edgekit"]
    return SYMBOLS.get(cell.status, SYMBOLS["edgekit"])


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    return f"{nbytes / 1024:.0f} KiB" if nbytes < 1 << 20 else f"{nbytes / (1 << 20):.1f} MiB"


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def cell_text(cell: Cell, note: int | None) -> str:
    """``✅ 97.5``, ``⚪ 612 KiB``, ``⛔ [3]``: the symbol, the key number, the reason's note number.

    Example:
        >>> cell_text(Cell("m", "t", "passed", accuracy=97.49), None)
        '✅ 97.5'
    """
    key = ""
    if cell.status in (PASSED, FAILED) and cell.accuracy is not None:
        key = f" {cell.accuracy:.1f}"
    elif cell.status in (PASSED, FAILED) and cell.snr_db is not None:
        key = f" {cell.snr_db:.0f} dB"
    elif cell.status == NOT_VALIDATED:
        key = f" {_size(cell.bytes)}"
    ref = f" [{note}]" if note is not None else ""
    return f"{symbol(cell)}{key}{ref}"


def _notes(run: CoverageRun) -> tuple[dict[tuple[str, str], int], list[tuple[int, str, list[Cell]]]]:
    """Number each distinct reason once; CoreML's 'not validated' is in the legend, not a note."""
    by_reason: dict[str, list[Cell]] = defaultdict(list)
    for c in run.cells:
        if c.reason and c.status != PASSED and not (c.status == NOT_VALIDATED and c.blame == "platform"):
            by_reason[c.reason].append(c)
    ordered = sorted(by_reason.items(), key=lambda kv: (run.targets.index(kv[1][0].target), kv[0]))
    numbers: dict[tuple[str, str], int] = {}
    notes = []
    for i, (reason, cells) in enumerate(ordered, 1):
        for c in cells:
            numbers[(c.model, c.target)] = i
        notes.append((i, reason, cells))
    return numbers, notes


def _where(cells: list[Cell], run: CoverageRun) -> str:
    """Which cells share a reason, compactly: 'all models: tensorrt:fp32, ...' or 'text-gru: tflite:int16x8'."""
    targets_by_model: dict[str, list[str]] = defaultdict(list)
    for c in cells:
        targets_by_model[c.model].append(c.target)
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for model, targets in targets_by_model.items():
        groups[tuple(targets)].append(model)
    parts = []
    for targets, models in groups.items():
        who = "all models" if len(models) == len(run.models) and len(run.models) > 1 else ", ".join(models)
        parts.append(f"{who}: {', '.join(targets)}")
    return "; ".join(parts)


def summary(run: CoverageRun) -> list[str]:
    """The counts as markdown bullet lines (passed, not validated, unsupported, failed, errors by blame)."""
    n = run.counts()
    total = len(run.cells)
    tools: dict[str, int] = defaultdict(int)
    for c in run.cells:
        if c.blame == "converter":
            tools[c.tool or "converter"] += 1
    by_tool = ", ".join(f"{k} {v}" for k, v in sorted(tools.items())) or "none"
    return [
        f"- **{total} cells** ({len(run.models)} models × {len(run.targets)} targets)",
        f"- ✅ passed: **{n['passed']}**",
        f"- ⚪ not validated (converted; CoreML runs only on macOS): **{n['platform']}**",
        f"- ⛔ unsupported by the engine/machine here (TF-TRT, TensorRT, Flex ops in LiteRT): **{n['engine']}**",
        f"- ❌ outside tolerance (precision loss in the converter's quantization): **{n['precision']}**",
        f"- 🛑 errors in the converter/quantizer: **{n['converter']}** ({by_tool})",
        f"- 🐞 errors attributable to edgekit (our bugs): **{n['edgekit']}**",
    ]


def _reference(run: CoverageRun, model: str) -> str:
    refs = [c.reference_accuracy for c in run.cells if c.model == model and c.reference_accuracy is not None]
    return f"{refs[0]:.1f}" if refs else "-"


def render(run: CoverageRun, *, title: str = "edgekit zoo coverage", command: str = "make coverage") -> str:
    """The whole markdown document for ``run``.

    Example:
        >>> from tools.coverage import Cell, CoverageRun
        >>> doc = render(CoverageRun(["m"], ["x:fp32"], [Cell("m", "x:fp32", "unsupported", "engine", "no x here")]))
        >>> "⛔ [1]" in doc and "no x here" in doc
        True
    """
    numbers, notes = _notes(run)
    lines = [f"# {title}", "",
             f"Every zoo model (`edgekit zoo list`) converted to every registered target (`edgekit convert "
             f"--list-targets`) and validated against the Keras model on its held-out data. Generated by "
             f"`{command}`; do not edit by hand.", ""]
    s = run.settings
    lines.append(f"Eval samples per model: {s.get('eval_limit')} · calibration samples: {s.get('calib_limit')} · "
                 f"seed {s.get('seed')} · default tolerances (`edgekit.convert.recipe.DEFAULT_TOLERANCES`).")
    lines.append("Machine: " + " · ".join(f"{k} {v}" for k, v in run.machine.items()) + ".")
    lines += ["", "## Summary", "", *summary(run), "", "## Matrix", ""]
    lines.append("Rows: zoo models (ref = the Keras model's accuracy %, the number each cell is compared with). "
                 "Columns: targets.")
    lines.append("")
    lines.append("| model | ref | " + " | ".join(f"`{t}`" for t in run.targets) + " |")
    lines.append("|---|---:|" + "---|" * len(run.targets))
    for model in run.models:
        row = [cell_text(run.cell(model, t), numbers.get((model, t))) for t in run.targets]
        lines.append(f"| {model} | {_reference(run, model)} | " + " | ".join(row) + " |")
    lines += ["", "## Legend", ""] + [f"- {sym} {text}" for sym, text in LEGEND]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in NOTES]
    lines += ["", "## Reasons", ""]
    if not notes:
        lines.append("Every cell passed or is not validated on this platform.")
    for i, reason, cells in notes:
        blame = cells[0].blame or "-"
        lines.append(f"{i}. **{blame}** ({_where(cells, run)}): {reason}")
    # No timings here: regenerated on one machine, the document changes only where results do (and by
    # the odd KiB of tf2onnx node naming), so its diff is a review of what changed.
    lines += ["", "## Numbers", "",
              "Per cell: accuracy (%), SNR (dB) and max abs error against the Keras model, and artifact size.", ""]
    for model in run.models:
        lines += [f"<details><summary>{model}</summary>", "",
                  "| target | status | accuracy | SNR dB | max abs err | size |",
                  "|---|---|---:|---:|---:|---:|"]
        for t in run.targets:
            c = run.cell(model, t)
            lines.append(f"| `{t}` | {symbol(c)} {c.status} | {_num(c.accuracy, '.2f')} | {_num(c.snr_db, '.1f')} | "
                         f"{_num(c.max_abs_err, '.3g')} | {_size(c.bytes)} |")
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
