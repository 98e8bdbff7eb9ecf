"""``edgekit convert``: flags -> :class:`~edgekit.convert.flags.ConvertFlags` -> recipe -> manifest table.

The flags are merged over ``--recipe`` in one place (:meth:`ConvertFlags.recipe`); this module only
declares them and prints what the conversion produced. TensorFlow loads inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edgekit.cli.common import MARK, Progress, fmt
from edgekit.errors import RecipeError


@click.command()
@click.argument("model", required=False)
@click.option("--recipe", "recipe_path", type=click.Path(), help="Recipe YAML; flags given here override it.")
@click.option("-t", "--target", "targets", multiple=True, metavar="FMT:PREC[,k=v]",
              help="Artifact to produce, e.g. tflite:fp32, tflite:int8, tflite:int8,io=float. Repeatable.")
@click.option("--calib", help="Calibration data: .npz/.npy, image folder, or 'digits[:split]'.")
@click.option("--eval", "eval", help="Held-out data for validation (same forms as --calib).")
@click.option("--calib-limit", type=int, help="Calibration samples to draw (default 200).")
@click.option("--eval-limit", type=int, help="Validation samples to draw (default 1000).")
@click.option("--max-batch", type=int,
              help="Samples per model call when predicting and validating, and at most per ONNX calibration "
                   "call (default: sized from a 512 MiB memory budget and the model's activation sizes). "
                   "Results do not depend on it.")
@click.option("--seed", type=int, help="Seed for sampling and zoo training (default 0).")
@click.option("--max-accuracy-drop", type=float,
              help="Accuracy budget in points for every precision; int8 targets that miss it keep their most "
                   "sensitive layers in float until they meet it (accuracy-aware int8).")
@click.option("--tol", "tols", multiple=True, metavar="PREC.CHECK=V",
              help="Override one tolerance, e.g. int8.min_snr_db=10 or '*.max_accuracy_drop=1'. Repeatable.")
@click.option("--image-scale", type=float, help="Image folders: multiply pixels (0..255) by this (default 1/255).")
@click.option("--image-mean", help="Image folders: subtract after scaling; one number or comma list per channel.")
@click.option("--image-std", help="Image folders: divide last; one number or comma list per channel.")
@click.option("--allow-unsafe", is_flag=True, help="Allow Keras Lambda layers (runs code from the file).")
@click.option("--train", help="Labelled training data for --prune/--qat (same forms as --calib; zoo models have their own).")
@click.option("--train-limit", type=int, help="Training samples to draw (default: all).")
@click.option("--prune", type=float, metavar="SPARSITY", help="Prune to this fraction of zero weights, e.g. 0.8, then fine-tune.")
@click.option("--prune-epochs", type=int, help="Fine-tuning epochs while pruning (default 2).")
@click.option("--prune-structure", metavar="M:N", help="Structured pruning, e.g. 2:4 (M zeros in every N weights).")
@click.option("--qat", is_flag=True, help="Quantization-aware training before export (then use tflite:int8).")
@click.option("--qat-epochs", type=int, help="QAT fine-tuning epochs (default 1).")
@click.option("--qat-skip", multiple=True, metavar="LAYER", help="Leave this layer out of QAT (it stays float). Repeatable.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi_worker"]),
              help="tf.distribute strategy for fine-tuning (multi_worker reads TF_CONFIG).")
@click.option("-o", "--out", "out_dir", type=click.Path(), help="Output folder (required unless --list-targets).")
@click.option("--list-targets", is_flag=True, help="Print every format x precision and what this machine can do; convert nothing.")
@click.option("--force", is_flag=True, help="Replace a previous edgekit output in the folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def convert(out_dir: str | None, list_targets: bool, force: bool, as_json: bool, quiet: bool, **flags: Any) -> None:
    """Convert MODEL (.keras/.h5 file, SavedModel folder or zoo name) to every --target and validate each.

    \b
    Examples:
      edgekit convert digits-cnn -t tflite:fp32 -t tflite:int8 -o out/
      edgekit convert model.keras --calib calib.npz --eval eval.npz -t tflite:int8 -o out/
      edgekit convert --recipe recipe.yaml -o out/
      edgekit convert --list-targets
      edgekit convert model.keras --train train.npz --calib calib.npz --prune 0.8 --qat -t tflite:int8 -o out/
    """
    if list_targets:
        _print_targets(as_json)
        return
    if not out_dir:
        raise RecipeError("give an output folder with -o/--out, e.g. -o out/ (or --list-targets to see the formats)")
    from edgekit.api import convert as run_convert
    from edgekit.convert.flags import ConvertFlags

    recipe = ConvertFlags.from_options(flags).recipe()
    manifest = run_convert(recipe, out_dir, force=force, progress=Progress(quiet))
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        from edgekit.convert.cluster import non_chief

        worker = non_chief(s.fit.strategy for s in recipe.stages)
        # A non-chief worker's files were in a temporary folder, now gone: its -o holds nothing.
        _print_manifest(manifest, f"{worker.describe()}, not written" if worker else Path(out_dir))
        _print_stages(manifest)
    sys.exit(0 if manifest.ok else 1)


def _print_targets(as_json: bool) -> None:
    from edgekit.cli.table import render
    from edgekit.convert.capabilities import capabilities

    rows = capabilities()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    render(["target", "artifact", "calibration", "options", "convert here", "run / validate here"],
           [[r.target, r.suffix, "needed" if r.needs_calibration else "-", ", ".join(r.options) or "-",
             r.convert_cell, r.run_cell] for r in rows],
           title="edgekit targets (format x precision) on this machine")
    seen = set()
    for r in rows:
        for what, reason in (("convert", r.convert), ("run", r.run)):
            if reason and (r.format, what) not in seen:
                seen.add((r.format, what))
                click.echo(f"  {r.format} ({what}): {reason}")


def _pct(v: float | None) -> float | None:
    return v * 100 if v is not None else None


def _print_stages(manifest: Any) -> None:
    st = getattr(manifest, "stages", None) or {}
    for kind in st.get("order", []):
        rep = st.get(kind, {})
        if kind == "prune":
            sp = rep.get("sparsity", {}).get("total", {}).get("sparsity")
            left = ", ".join(s["layer"] for s in rep.get("skipped", []))
            click.echo(f"  prune: {len(rep.get('pruned', []))} layer(s), kernel sparsity {fmt(_pct(sp), '.1f')}%"
                       + (f"; left dense: {left}" if left else ""))
        elif kind == "qat":
            before = rep.get("sparsity_before", {}).get("total", {}).get("sparsity")
            after = rep.get("sparsity_after", {}).get("total", {}).get("sparsity")
            click.echo(f"  qat: {len(rep.get('quantized', []))} layer(s), {rep.get('scheme')}; kernel sparsity "
                       f"{fmt(_pct(before), '.1f')}% before, {fmt(_pct(after), '.1f')}% after")
    if st:
        for a in manifest.artifacts:
            if a.gzip_bytes and a.sparsity:
                click.echo(f"  {a.target}: {a.sparsity['sparsity'] * 100:.1f}% zero weights, {a.gzip_bytes / 1024:.1f} KiB gzipped")


def _seconds(a: Any) -> float | None:
    """A target's own seconds: its export plus its validation (None when it never got to export)."""
    parts = [x for x in (a.seconds, (a.validation or {}).get("seconds")) if isinstance(x, (int, float))]
    return sum(parts) if parts else None


def _print_manifest(manifest: Any, out: "Path | str") -> None:
    from edgekit.cli.table import render

    fp32: dict[str, int] = {}  # per format: an .mlpackage is compared with CoreML fp32, not with ONNX
    for a in manifest.artifacts:
        if a.precision == "fp32" and a.bytes:
            fp32.setdefault(a.format, a.bytes)
    rows = []
    for a in manifest.artifacts:
        v = a.validation or {}
        rows.append([
            a.target,
            MARK.get(a.status, a.status),
            fmt(a.bytes / 1024 if a.bytes else None, ".1f"),
            fmt(a.bytes / fp32[a.format] if a.bytes and fp32.get(a.format) else None, ".2f"),
            fmt(v.get("accuracy"), ".2f"),
            fmt(v.get("accuracy_drop"), "+.2f"),
            fmt(_pct(v.get("top1_agreement")), ".1f"),
            fmt(v.get("max_abs_err"), ".2e"),
            fmt(v.get("snr_db"), ".1f"),
            fmt(_seconds(a), ".1f"),
        ])
    ref = next((a.validation.get("reference_accuracy") for a in manifest.artifacts if a.validation), None)
    title = f"edgekit convert → {out}  (reference accuracy {ref:.2f}%)" if ref is not None else f"edgekit convert → {out}"
    render(["target", "status", "KiB", "×fp32", "acc %", "Δacc", "top-1 %", "max abs err", "SNR dB", "s"], rows,
           title=title)
    for a in manifest.artifacts:
        if a.error:
            click.echo(f"  {a.target}: {a.error}")
