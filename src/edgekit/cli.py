"""The ``edgekit`` command. Each command imports its heavy half inside the function, so
``edgekit bench`` on a Raspberry Pi never touches TensorFlow.

Exit codes: 0 all good; 1 an artifact failed validation / export (the others are still written);
2 bad input (missing file, bad recipe, unsupported target, data that does not fit the model).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import click

from edgekit import __version__
from edgekit.errors import EdgekitError


def _fail(exc: EdgekitError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _Progress:
    """One line per step on stderr, with elapsed time, so long steps are visibly alive."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def main() -> None:
    """edgekit: convert Keras models for the edge, validate every artifact, bench them on the device."""


# ---------------------------------------------------------------- convert
@main.command()
@click.argument("model", required=False)
@click.option("--recipe", "recipe_path", type=click.Path(), help="Recipe YAML; flags given here override it.")
@click.option("-t", "--target", "targets", multiple=True, metavar="FMT:PREC[,k=v]",
              help="Artifact to produce, e.g. tflite:fp32, tflite:int8, tflite:int8,io=float. Repeatable.")
@click.option("--calib", help="Calibration data: .npz/.npy, image folder, or 'digits[:split]'.")
@click.option("--eval", "eval_", help="Held-out data for validation (same forms as --calib).")
@click.option("--calib-limit", type=int, help="Calibration samples to draw (default 200).")
@click.option("--eval-limit", type=int, help="Validation samples to draw (default 1000).")
@click.option("--seed", type=int, help="Seed for sampling and zoo training (default 0).")
@click.option("--max-accuracy-drop", type=float, help="Tolerance for every precision: accuracy drop in points.")
@click.option("--tol", "tols", multiple=True, metavar="PREC.CHECK=V",
              help="Override one tolerance, e.g. int8.min_snr_db=10 or '*.max_accuracy_drop=1'. Repeatable.")
@click.option("--image-scale", type=float, help="Image folders: multiply pixels (0..255) by this (default 1/255).")
@click.option("--image-mean", help="Image folders: subtract after scaling; one number or comma list per channel.")
@click.option("--image-std", help="Image folders: divide last; one number or comma list per channel.")
@click.option("--allow-unsafe", is_flag=True, help="Allow Keras Lambda layers (runs code from the file).")
@click.option("-o", "--out", "out_dir", type=click.Path(), help="Output folder (required unless --list-targets).")
@click.option("--list-targets", is_flag=True, help="Print every format x precision and what this machine can do; convert nothing.")
@click.option("--force", is_flag=True, help="Replace a previous edgekit output in the folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def convert(model: str | None, recipe_path: str | None, targets: Sequence[str], calib: str | None, eval_: str | None,
            calib_limit: int | None, eval_limit: int | None, seed: int | None, max_accuracy_drop: float | None,
            tols: Sequence[str], image_scale: float | None, image_mean: str | None, image_std: str | None,
            allow_unsafe: bool, out_dir: str | None, list_targets: bool, force: bool, as_json: bool, quiet: bool) -> None:
    """Convert MODEL (.keras/.h5 file, SavedModel folder or zoo name) to every --target and validate each.

    \b
    Examples:
      edgekit convert digits-cnn -t tflite:fp32 -t tflite:int8 -o out/
      edgekit convert model.keras --calib calib.npz --eval eval.npz -t tflite:int8 -o out/
      edgekit convert --recipe recipe.yaml -o out/
      edgekit convert --list-targets
    """
    if list_targets:
        _print_targets(as_json)
        return
    try:
        if not out_dir:
            from edgekit.errors import RecipeError

            raise RecipeError("give an output folder with -o/--out, e.g. -o out/ (or --list-targets to see the formats)")
        recipe = _recipe(model, recipe_path, targets, calib, eval_, calib_limit, eval_limit, seed,
                         max_accuracy_drop, tols, allow_unsafe, (image_scale, image_mean, image_std))
        from edgekit.convert.pipeline import convert as run_convert

        manifest = run_convert(recipe, out_dir, force=force, progress=_Progress(quiet))
    except EdgekitError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        _print_manifest(manifest, Path(out_dir))
    sys.exit(0 if manifest.ok else 1)


def _print_targets(as_json: bool) -> None:
    from edgekit._table import render
    from edgekit.convert.capabilities import capabilities, short

    rows = capabilities()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    render(["target", "artifact", "calibration", "options", "convert here", "run / validate here"],
           [[r.target, r.suffix, "needed" if r.needs_calibration else "-", ", ".join(r.options) or "-",
             short(r.convert), short(r.run)] for r in rows],
           title="edgekit targets (format x precision) on this machine")
    seen = set()
    for r in rows:
        for what, reason in (("convert", r.convert), ("run", r.run)):
            if reason and (r.format, what) not in seen:
                seen.add((r.format, what))
                click.echo(f"  {r.format} ({what}): {reason}")


def _recipe(model, recipe_path, targets, calib, eval_, calib_limit, eval_limit, seed, max_drop, tols, allow_unsafe,
            image=(None, None, None)):
    from edgekit.convert.recipe import Recipe, Target
    from edgekit.errors import RecipeError

    base: dict[str, Any] = {}
    if recipe_path:
        base = Recipe.from_yaml(recipe_path).to_dict()
    elif not model:
        raise RecipeError("give a MODEL (file, SavedModel folder or zoo name) or --recipe recipe.yaml")
    if model:
        base["model"] = model
    if targets:
        base["targets"] = [Target.parse(t).to_value() for t in targets]
    elif not base.get("targets"):
        base["targets"] = ["tflite:fp32"]
    for key, value in (("calib", calib), ("eval", eval_), ("calib_limit", calib_limit), ("eval_limit", eval_limit),
                       ("seed", seed)):
        if value is not None:
            base[key] = value
    if allow_unsafe:
        base["allow_unsafe"] = True
    tolerances: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (base.get("tolerances") or {}).items()}
    if max_drop is not None:
        tolerances.setdefault("*", {})["max_accuracy_drop"] = max_drop
    for item in tols:
        key, eq, value = item.partition("=")
        precision, dot, check = key.partition(".")
        if not eq or not dot:
            raise RecipeError(f"--tol {item!r} is not PRECISION.CHECK=VALUE, e.g. int8.max_accuracy_drop=1.0")
        try:
            number: Any = None if value.lower() in ("none", "null", "off") else float(value)
        except ValueError:
            raise RecipeError(f"--tol {item!r}: {value!r} is not a number") from None
        tolerances.setdefault(precision, {})[check] = number
    base["tolerances"] = tolerances
    images = dict(base.get("images") or {})
    for key, value in zip(("scale", "mean", "std"), image):
        if value is not None:
            images[key] = value if key == "scale" else _numbers(value, f"--image-{key}")
    base["images"] = images
    return Recipe.from_dict(base)


def _numbers(text: str, flag: str) -> float | list[float]:
    from edgekit.errors import RecipeError

    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise RecipeError(f"{flag} {text!r} must be a number or a comma list, e.g. 0.485,0.456,0.406") from None
    return vals[0] if len(vals) == 1 else vals


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


_MARK = {"passed": "✅ passed", "failed": "❎ failed", "error": "❌ error", "unsupported": "⛔ unsupported",
         "not_validated": "⚠ not validated"}


def _print_manifest(manifest: Any, out: Path) -> None:
    from edgekit._table import render

    fp32 = next((a.bytes for a in manifest.artifacts if a.precision == "fp32" and a.bytes), None)
    rows = []
    for a in manifest.artifacts:
        v = a.validation or {}
        rows.append([
            a.target,
            _MARK.get(a.status, a.status),
            _fmt(a.bytes / 1024 if a.bytes else None, ".1f"),
            _fmt(a.bytes / fp32 if a.bytes and fp32 else None, ".2f"),
            _fmt(v.get("accuracy"), ".2f"),
            _fmt(v.get("accuracy_drop"), "+.2f"),
            _fmt(v.get("top1_agreement") * 100 if v.get("top1_agreement") is not None else None, ".1f"),
            _fmt(v.get("max_abs_err"), ".2e"),
            _fmt(v.get("snr_db"), ".1f"),
        ])
    ref = next((a.validation.get("reference_accuracy") for a in manifest.artifacts if a.validation), None)
    title = f"edgekit convert → {out}  (reference accuracy {ref:.2f}%)" if ref is not None else f"edgekit convert → {out}"
    render(["target", "status", "KiB", "×fp32", "acc %", "Δacc", "top-1 %", "max abs err", "SNR dB"], rows, title=title)
    for a in manifest.artifacts:
        if a.error:
            click.echo(f"  {a.target}: {a.error}")


# ---------------------------------------------------------------- bench
@main.command()
@click.argument("path", type=click.Path())
@click.option("--target", help="Only this artifact of a folder (format:precision, a format or a precision).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs after the first inference.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed runs.")
@click.option("--max-seconds", type=float, help="Stop each timed loop after this many seconds.")
@click.option("--batch", "batch_size", type=int, default=1, show_default=True, help="Samples per call.")
@click.option("--threads", "num_threads", type=int, help="Engine threads (default: all cores).")
@click.option("--eval", "eval_path", type=click.Path(), help="Labelled .npz for accuracy (folders use their eval.npz).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("--json", "json_path", type=click.Path(allow_dash=True), help="Write results as JSON ('-' for stdout).")
@click.option("--csv", "csv_path", type=click.Path(allow_dash=True), help="Write results as CSV ('-' for stdout).")
def bench(path: str, target: str | None, warmup: int, runs: int, max_seconds: float | None, batch_size: int,
          num_threads: int | None, eval_path: str | None, no_verify: bool, json_path: str | None, csv_path: str | None) -> None:
    """Time PATH (a .tflite file, or every artifact of an edgekit output folder) side by side.

    \b
    Examples:
      edgekit bench out/
      edgekit bench model.tflite --threads 4 --runs 500
      edgekit bench out/ --json results.json
    """
    from edgekit.runtime.bench import BenchConfig, bench_path, report

    try:
        config = BenchConfig(warmup=warmup, runs=runs, max_seconds=max_seconds, batch_size=batch_size, num_threads=num_threads)
        results = bench_path(path, config, target=target, eval_path=eval_path, verify=not no_verify)
    except EdgekitError as exc:
        _fail(exc)
        return
    doc = report(results, config)
    if json_path:
        _write(json_path, json.dumps(doc, indent=2) + "\n")
    if csv_path:
        _write(csv_path, _csv(results))
    if json_path != "-" and csv_path != "-":
        _print_bench(results, doc)
    sys.exit(0 if all(r.status in ("ok", "skipped") for r in results) else 1)


def _write(path: str, text: str) -> None:
    if path == "-":
        click.echo(text, nl=False)
    else:
        from edgekit.manifest import atomic_write_bytes

        atomic_write_bytes(path, text.encode())


def _csv(results: Sequence[Any]) -> str:
    import csv
    import io

    rows = [r.flat() for r in results]
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _print_bench(results: Sequence[Any], doc: dict[str, Any]) -> None:
    from edgekit._table import render

    ok = [r for r in results if r.status == "ok"]
    fp32 = {r.format: r for r in ok if r.precision == "fp32"}
    fp32_size = {r.format: r.size_bytes for r in ok if r.precision == "fp32"}
    rows = []
    for r in results:
        lat = r.latency_ms or {}
        ref = fp32.get(r.format)
        rows.append([
            r.target,
            f"{r.engine} {r.engine_version}".strip() or "-",
            _MARK.get(r.validation or "", r.validation or "-") if r.status == "ok" else
            f"⏭ skipped ({_MARK.get(r.validation or '', r.validation or '-')})" if r.status == "skipped" else f"❌ {r.status}",
            _fmt(r.size_bytes / 1024 if r.size_bytes else None, ".1f"),
            _fmt(r.size_bytes / fp32_size[r.format] if r.size_bytes and fp32_size.get(r.format) else None, ".2f"),
            _fmt(r.accuracy, ".2f"),
            _fmt(r.load_ms, ".1f"),
            _fmt(r.first_ms, ".3f"),
            _fmt(lat.get("p50"), ".3f"),
            _fmt(lat.get("p90"), ".3f"),
            _fmt(lat.get("p99"), ".3f"),
            f"{lat['mean']:.3f}±{lat['std']:.3f}" if lat else "",
            _fmt(lat["p50"] / ref.latency_ms["p50"] if lat and ref else None, ".2f"),
            _fmt(r.throughput, ".0f"),
            _fmt(r.peak_rss_mb, ".1f"),
        ])
    dev = doc["device"]
    threads = sorted({r.num_threads for r in ok if r.num_threads})
    title = (f"edgekit bench — {dev['cpu']} ({dev['cores']} cores), batch {doc['config']['batch_size']}, "
             f"{'/'.join(map(str, threads)) or '?'} threads")
    render(["target", "engine", "validation", "KiB", "×fp32", "acc %", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "mean±std ms", "p50 ×fp32", "inf/s", "peak RSS MB"], rows, title=title)
    for r in results:
        if r.error:
            click.echo(f"  {r.target}: {r.error}")
        for w in r.warnings:
            click.echo(f"  {r.target}: warning: {w}")
    for n in doc["notes"]:
        click.echo(f"  note: {n}")


if __name__ == "__main__":  # pragma: no cover
    main()
