"""The ``edgekit`` command. Each command imports its heavy half inside the function, so
``edgekit bench`` on a Raspberry Pi never touches TensorFlow.

Exit codes: 0 all good; 1 an artifact failed validation / export (the others are still written);
2 bad input (missing file, bad recipe, unsupported target, data that does not fit the model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from edgekit import __version__
from edgekit._cli_util import Progress as _Progress
from edgekit._cli_util import fail as _fail
from edgekit.errors import EdgekitError


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
def convert(model: str | None, recipe_path: str | None, targets: Sequence[str], calib: str | None, eval_: str | None,
            calib_limit: int | None, eval_limit: int | None, seed: int | None, max_accuracy_drop: float | None,
            tols: Sequence[str], image_scale: float | None, image_mean: str | None, image_std: str | None,
            allow_unsafe: bool, out_dir: str | None, list_targets: bool, force: bool, as_json: bool, quiet: bool,
            **stage_flags: Any) -> None:
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
    try:
        if not out_dir:
            from edgekit.errors import RecipeError

            raise RecipeError("give an output folder with -o/--out, e.g. -o out/ (or --list-targets to see the formats)")
        recipe = _recipe(model, recipe_path, targets, calib, eval_, calib_limit, eval_limit, seed,
                         max_accuracy_drop, tols, allow_unsafe, (image_scale, image_mean, image_std), stage_flags)
        from edgekit.convert.pipeline import convert as run_convert

        manifest = run_convert(recipe, out_dir, force=force, progress=_Progress(quiet))
    except EdgekitError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        _print_manifest(manifest, Path(out_dir))
        _print_stages(manifest)
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
            image=(None, None, None), stage_flags=None):
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
        base["accuracy_aware"] = True  # a budget means: meet it, keeping sensitive layers in float
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
    _stage_flags(base, stage_flags or {})
    return Recipe.from_dict(base)


def _stage_flags(base: dict[str, Any], flags: dict[str, Any]) -> None:
    """--train/--prune/--qat/... merged into the recipe dict (flags win over the recipe file)."""
    from edgekit.convert.stages.flags import cli_stages

    for key in ("train", "train_limit"):
        if flags.get(key) is not None:
            base[key] = flags[key]
    names = ("prune", "prune_epochs", "prune_structure", "qat", "qat_epochs", "qat_skip", "strategy")
    given = {k: flags.get(k) for k in names}
    if any(v not in (None, False, ()) for v in given.values()):
        given["qat"] = bool(given["qat"])
        given["qat_skip"] = tuple(given["qat_skip"] or ())
        base["stages"] = cli_stages(base.get("stages") or [], **given)


def _print_stages(manifest: Any) -> None:
    st = getattr(manifest, "stages", None) or {}
    for kind in st.get("order", []):
        rep = st.get(kind, {})
        if kind == "prune":
            sp = rep.get("sparsity", {}).get("total", {}).get("sparsity")
            left = ", ".join(s["layer"] for s in rep.get("skipped", []))
            click.echo(f"  prune: {len(rep.get('pruned', []))} layer(s), kernel sparsity {_fmt(sp * 100 if sp is not None else None, '.1f')}%"
                       + (f"; left dense: {left}" if left else ""))
        elif kind == "qat":
            before = rep.get("sparsity_before", {}).get("total", {}).get("sparsity")
            after = rep.get("sparsity_after", {}).get("total", {}).get("sparsity")
            click.echo(f"  qat: {len(rep.get('quantized', []))} layer(s), {rep.get('scheme')}; kernel sparsity "
                       f"{_fmt(before * 100 if before is not None else None, '.1f')}% before, "
                       f"{_fmt(after * 100 if after is not None else None, '.1f')}% after")
    if st:
        for a in manifest.artifacts:
            if a.gzip_bytes and a.sparsity:
                click.echo(f"  {a.target}: {a.sparsity['sparsity'] * 100:.1f}% zero weights, {a.gzip_bytes / 1024:.1f} KiB gzipped")


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

    fp32: dict[str, int] = {}  # per format: an .mlpackage is compared with CoreML fp32, not with ONNX
    for a in manifest.artifacts:
        if a.precision == "fp32" and a.bytes:
            fp32.setdefault(a.format, a.bytes)
    rows = []
    for a in manifest.artifacts:
        v = a.validation or {}
        rows.append([
            a.target,
            _MARK.get(a.status, a.status),
            _fmt(a.bytes / 1024 if a.bytes else None, ".1f"),
            _fmt(a.bytes / fp32[a.format] if a.bytes and fp32.get(a.format) else None, ".2f"),
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
def _int_list(text: str | None, flag: str) -> list[int | None]:
    from edgekit.errors import InputError

    if not text:
        return [None]
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r} must be an integer or a comma list, e.g. 1,2,4") from None


@main.command()
@click.argument("path", type=click.Path())
@click.option("--target", help="Only this artifact of a folder (format:precision, a format or a precision).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs after the first inference.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed runs.")
@click.option("--max-seconds", type=float, help="Stop each timed loop after this many seconds.")
@click.option("--batch", "batch_sizes", default="1", show_default=True, help="Samples per call; a comma list sweeps (1,8,32).")
@click.option("--threads", "threads", help="Engine threads (default: all cores); a comma list sweeps (1,2,4).")
@click.option("--cold-start/--no-cold-start", default=True, show_default=True,
              help="Also time a fresh process from start to first result.")
@click.option("--eval", "eval_path", type=click.Path(), help="Labelled .npz for accuracy (folders use their eval.npz).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("--json", "json_path", type=click.Path(allow_dash=True), help="Write results as JSON ('-' for stdout).")
@click.option("--csv", "csv_path", type=click.Path(allow_dash=True), help="Write results as CSV ('-' for stdout).")
@click.option("--report", "report_path", type=click.Path(), help="Write an HTML report with charts.")
@click.option("--baseline", type=click.Path(), help="A previous --json result to compare with (see --fail-on).")
@click.option("--fail-on", "fail_on", default="p50+10%,accuracy-1", show_default=True,
              help="Regression rules against --baseline, e.g. 'p50+10%,accuracy-1,size+5%'.")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Append results to the local results store ($EDGEKIT_RESULTS or ~/.local/share/edgekit/results.sqlite).")
@click.option("--history", is_flag=True, help="Show this model's stored results across runs and devices (no benching).")
def bench(path: str, target: str | None, warmup: int, runs: int, max_seconds: float | None, batch_sizes: str,
          threads: str | None, cold_start: bool, eval_path: str | None, no_verify: bool, json_path: str | None,
          csv_path: str | None, report_path: str | None, baseline: str | None, fail_on: str, store: bool, history: bool) -> None:
    """Time PATH (a model file, or every artifact of an edgekit output folder) side by side.

    \b
    Examples:
      edgekit bench out/
      edgekit bench model.tflite --threads 1,2,4 --batch 1,8 --runs 500
      edgekit bench out/ --json new.json --baseline old.json --fail-on 'p50+10%,accuracy-1'
      edgekit bench out/ --report report.html
      edgekit bench out/ --history
    """
    from edgekit.runtime.bench import BenchConfig, bench_path, report

    try:
        if history:
            _print_history(path)
            return
        rules = None
        if baseline:
            from edgekit.runtime.gate import load_baseline, parse_rules

            rules, base = parse_rules(fail_on), load_baseline(baseline)
        configs = [BenchConfig(warmup=warmup, runs=runs, max_seconds=max_seconds, batch_size=b, num_threads=t,
                               cold_start=cold_start)
                   for t in _int_list(threads, "--threads") for b in _int_list(batch_sizes, "--batch")]
        results = bench_path(path, configs, target=target, eval_path=eval_path, verify=not no_verify)
        doc = report(results, configs[0])
        doc["config"]["sweep"] = [{"num_threads": c.num_threads, "batch_size": c.batch_size} for c in configs]
        if store:
            from edgekit.runtime.history import ResultStore, model_key_for

            name, key = model_key_for(path)
            ResultStore().append(doc["results"], device=doc["device"], model=name, model_key=key, created=doc["created"])
        if report_path:
            from edgekit.manifest import MANIFEST_NAME, Manifest
            from edgekit.runtime.report import write_report

            folder = Path(path)
            manifest = Manifest.load(folder) if folder.is_dir() or folder.name == MANIFEST_NAME else None
            write_report(doc, report_path, manifest)
    except EdgekitError as exc:
        _fail(exc)
        return
    if json_path:
        _write(json_path, json.dumps(doc, indent=2) + "\n")
    if csv_path:
        _write(csv_path, _csv(results))
    if json_path != "-" and csv_path != "-":
        _print_bench(results, doc)
    code = 0 if all(r.status in ("ok", "skipped") for r in results) else 1
    if rules is not None:
        from edgekit.runtime.gate import check

        violations = check(doc["results"], base, rules)
        for v in violations:
            click.echo(f"regression: {v}", err=True)
        if violations:
            code = 1
        elif json_path != "-":
            click.echo(f"no regression against {baseline} ({', '.join(map(str, rules))})", err=True)
    sys.exit(code)


def _print_history(path: str) -> None:
    from edgekit._table import render
    from edgekit.runtime.history import ResultStore, model_key_for

    name, key = model_key_for(path)
    rows = ResultStore().history(key)
    if not rows:
        click.echo(f"no stored results for {name} yet: run 'edgekit bench {path}' first")
        return
    render(["when", "target", "device", "engine", "batch", "threads", "p50 ms", "p99 ms", "inf/s", "acc %", "KiB"],
           [[r["created"], r["target"], r["device"], f"{r['engine'] or ''} {r['engine_version'] or ''}".strip(),
             r["batch_size"], r["num_threads"], _fmt(r["p50_ms"], ".3f"), _fmt(r["p99_ms"], ".3f"),
             _fmt(r["throughput"], ".0f"), _fmt(r["accuracy"], ".2f"),
             _fmt(r["size_bytes"] / 1024 if r["size_bytes"] else None, ".1f")] for r in rows],
           title=f"edgekit bench history — {name}")


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
    fp32 = {(r.format, r.batch_size, r.num_threads): r for r in ok if r.precision == "fp32"}
    fp32_size = {r.format: r.size_bytes for r in ok if r.precision == "fp32"}
    rows = []
    for r in results:
        lat = r.latency_ms or {}
        ref = fp32.get((r.format, r.batch_size, r.num_threads))
        rows.append([
            r.target,
            f"{r.engine.replace('ai-edge-', '')} {r.engine_version}".strip() or "-",
            _MARK.get(r.validation or "", r.validation or "-") if r.status == "ok" else
            f"⏭ skipped ({_MARK.get(r.validation or '', r.validation or '-')})" if r.status == "skipped" else f"❌ {r.status}",
            _fmt(r.size_bytes / 1024 if r.size_bytes else None, ".1f"),
            _fmt(r.size_bytes / fp32_size[r.format] if r.size_bytes and fp32_size.get(r.format) else None, ".2f"),
            _fmt(r.accuracy, ".2f"),
            r.batch_size,
            r.num_threads or "",
            _fmt(r.cold_start_ms, ".0f"),
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
    title = f"edgekit bench — {dev['cpu']} ({dev['cores']} cores{', ' + dev['board'] if dev.get('board') else ''})"
    render(["target", "engine", "validation", "KiB", "×fp32", "acc %", "batch", "threads", "cold ms", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "mean±std ms", "p50 ×fp32", "inf/s", "peak RSS MB"], rows, title=title)
    for r in results:
        if r.error:
            click.echo(f"  {r.target}: {r.error}")
        for w in r.warnings:
            click.echo(f"  {r.target}: warning: {w}")
    for n in doc["notes"]:
        click.echo(f"  note: {n}")


# ---------------------------------------------------------------- doctor
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
def doctor(as_json: bool) -> None:
    """What this device is, which engines it has, which targets it can run, and how to get the rest."""
    from edgekit.runtime.doctor import diagnose

    d = diagnose()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    dev = d["device"]
    click.echo(f"device   {dev['cpu']} · {dev['cores']} cores · {dev['machine']} · {dev['system']} {dev['release']}")
    if dev.get("board"):
        click.echo(f"board    {dev['board']}" + (f" · L4T {dev['l4t']}" if dev.get("l4t") else ""))
    click.echo(f"isa      {', '.join(dev['cpu_flags']) or '-'}")
    click.echo(f"gpus     {', '.join(dev['gpus']) or 'none'}")
    click.echo(f"python   {d['python']}")
    click.echo("engines  " + (", ".join(f"{k} {v}" for k, v in dev["engines"].items()) or "none"))
    if d["onnx_providers"]:
        click.echo(f"onnxruntime providers  {', '.join(d['onnx_providers'])}")
    if d["throttling"]:
        click.echo(f"warning  {', '.join(d['throttling'])}")
    click.echo("")
    for fmt, b in d["backends"].items():
        if b["available"]:
            click.echo(f"  ✅ {fmt:<9} can run here")
        else:
            click.echo(f"  ❌ {fmt:<9} {b['reason']}" + (f"\n     install: {b['install']}" if b["install"] else ""))


# ---------------------------------------------------------------- serve
@main.command()
@click.argument("path", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it (no authentication).")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port; 0 picks a free one (printed).")
@click.option("--target", help="Which artifact of a folder (format:precision); default: the best validated one here.")
@click.option("--threads", type=int, help="Engine threads (default: all cores).")
@click.option("--max-body", default="16MiB", show_default=True, help="Largest request body (413 above it), e.g. 1MiB.")
@click.option("--max-connections", type=int, default=64, show_default=True, help="Open connections served at once (503 above).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def serve(path: str, host: str, port: int, target: str | None, threads: int | None, max_body: str,
          max_connections: int, no_verify: bool, verbose: bool) -> None:
    """Serve PATH (a model file or an edgekit output folder) over HTTP: /healthz, /metadata, /predict.

    \b
    Examples:
      edgekit serve out/ --port 8080
      curl -s localhost:8080/predict -H 'Content-Type: application/json' -d '{"inputs": {"image": [[...]]}}'
      edgekit serve model.tflite --port 0 --max-body 1MiB
    """
    from edgekit.runtime.serve import parse_size, serve as run_serve

    try:
        run_serve(path, host=host, port=port, target=target, num_threads=threads, max_body=parse_size(max_body),
                  max_connections=max_connections, verify=not no_verify, log_requests=verbose)
    except EdgekitError as exc:
        _fail(exc)


# ---------------------------------------------------------------- zoo (list / train / export)
from edgekit.models.zoo_cli import zoo as _zoo  # noqa: E402 - click only; TensorFlow loads inside the commands

main.add_command(_zoo)


if __name__ == "__main__":  # pragma: no cover
    main()
