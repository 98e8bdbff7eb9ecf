"""``convert(recipe, out_dir)``: load, check data, export every target, validate, write the manifest.

One failed target never discards the others: its error is recorded in the manifest and the
remaining targets go on. Bad *input* (unknown target, unsupported precision, data that does not fit
the model, int8 without calibration data) is refused before any conversion starts.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgekit import __version__, formats
from edgekit.calibration import Dataset, open_dataset, random_like
from edgekit.convert import _files
from edgekit.convert.batching import batch_for
from edgekit.convert.cluster import non_chief, run_as_worker
from edgekit.convert.exporters import check_target
from edgekit.convert.exporters.base import require_calibration
from edgekit.convert.memory import collect_new_only, release_memory
from edgekit.convert.progress import counter
from edgekit.convert.progress import reporting as progress_lines
from edgekit.convert.recipe import Recipe, Target
from edgekit.convert.source import SourceModel, load_source
from edgekit.convert.validate import compare, judge
from edgekit.errors import EdgekitError, InputError, RecipeError, error_kind
from edgekit.manifest import (ERROR, FAILED, MANIFEST_NAME, NOT_VALIDATED, PASSED, UNSUPPORTED, Artifact, Manifest,
                              TensorSpec, sha256_file)

Progress = Callable[[str], None]
EVAL_FILE = "eval.npz"
# The eval data is written beside the artifacts so `edgekit bench` on the device can report accuracy
# without the training machine's files; past this size it is left out (and bench says so).
EVAL_FILE_MAX_BYTES = 64 << 20


def _noop(_: str) -> None:
    pass


def convert(recipe: Recipe | Mapping[str, Any], out_dir: str | os.PathLike[str], *, force: bool = False,
            progress: Progress | None = None, model: Any = None) -> Manifest:
    """Convert a model to every target of a recipe and validate each artifact.

    Args:
        recipe: A :class:`Recipe` or its dict form.
        out_dir: Folder for the artifacts and ``manifest.json``; must be empty unless ``force``.
        force: Replace a previous edgekit output in ``out_dir``.
        progress: Called with one-line progress messages.
        model: What to load instead of ``recipe.model``: an in-memory Keras model (API users), or a
            :class:`~edgekit.convert.source.ModelProvider` (how :func:`edgekit.api.convert` passes
            zoo names, which this package does not know).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``). Check ``manifest.ok``.

    Example:
        >>> m = convert({"model": "model.keras", "calib": "calib.npz", "eval": "eval.npz",
        ...              "targets": ["tflite:fp32", "tflite:int8"]}, "out/")  # doctest: +SKIP
        >>> [(a.target, a.status) for a in m.artifacts]  # doctest: +SKIP
        [('tflite:fp32', 'passed'), ('tflite:int8', 'passed')]
    """
    say = progress or _noop
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    worker = non_chief(s.fit.strategy for s in recipe.stages)  # None off multi_worker, for the chief, when redirected
    if worker is not None:  # trains in lockstep with the chief; its files go to a temporary folder it removes
        return run_as_worker(worker, out_dir, lambda folder: convert(recipe, folder, progress=progress, model=model), say)
    out = Path(out_dir)
    exporters = {t.label: check_target(t.format, t.precision, t.opts) for t in recipe.targets}
    _prepare_out_dir(out, force)

    t0 = time.perf_counter()
    if recipe.stages:
        from edgekit.convert.stages.fit import early_strategies

        early_strategies([s.fit for s in recipe.stages])  # multi-worker must exist before TF runs anything
    say(f"loading model {recipe.model}")
    source = load_source(model if model is not None else recipe.model, allow_unsafe=recipe.allow_unsafe,
                         seed=recipe.seed, progress=say)
    say(f"loaded {source.kind} model: inputs {', '.join(s.describe() for s in source.inputs)} "
        f"({time.perf_counter() - t0:.1f}s)")
    source.max_batch = recipe.max_batch  # exporters that run the model (ONNX calibration) read it here
    # From here on garbage collections walk only what the conversion makes, not TensorFlow's and
    # the model's 400,000 objects (0.45 s a walk, automatic ones included): a 6-target digits
    # convert took 10.8 s, 4.0 s this way (see edgekit.convert.memory).
    with collect_new_only():
        return _convert_source(recipe, source, exporters, out, say, t0)


def _convert_source(recipe: Recipe, source: SourceModel, exporters: Mapping[str, Any], out: Path, say: Progress,
                    t0: float) -> Manifest:
    """:func:`convert` once the model is loaded: data, reference outputs, stages, targets, manifest."""
    calib, evald, eval_note = _data(recipe, source)
    for t in recipe.targets:
        require_calibration(exporters[t.label], t.precision, calib)  # before any conversion work
    train = _train_data(recipe, source) if recipe.stages else None

    # Batches sized from bytes, not samples: one batch of a 224x224 model's activations is
    # gigabytes at the sizes that suit 8x8 digits (see edgekit.convert.batching).
    batch = batch_for(source, max_batch=recipe.max_batch, samples=evald.inputs)
    say(f"reference outputs on {len(evald)} eval samples ({eval_note}), {batch} per batch")
    reference = source.predict(list(evald.inputs), batch_size=batch)
    release_memory()  # the eager prediction's freed heap (650 MiB at 224x224) goes back before the first target

    # Stages train a copy; artifacts are exported from it and checked two ways: fidelity against
    # the model actually converted, accuracy against the untouched source (see _validate).
    staged, stages_report, original = source, {}, None
    if recipe.stages:
        from edgekit.convert.stages import apply_stages

        staged, stages_report = apply_stages(source, recipe, train, say)
        batch = batch_for(staged, max_batch=recipe.max_batch, samples=evald.inputs)  # QAT adds layers
        original, reference = reference, staged.predict(list(evald.inputs), batch_size=batch)

    artifacts = []
    final_targets = []
    for i, target in enumerate(recipe.targets, 1):
        say(f"[{i}/{len(recipe.targets)}] {target.display}: converting")
        with progress_lines(say, f"  {target.display}: "):
            art = _one_target(target, exporters[target.label], recipe, staged, calib, evald, reference, out, say,
                              original, batch=batch)
        if target.precision in ("int8", "int16x8"):
            from edgekit.convert import int8_aware

            def convert_one(t: Target) -> Artifact:
                return _one_target(t, check_target(t.format, t.precision, t.opts), recipe, staged, calib, evald,
                                   reference, out, say, original, batch=batch)

            with progress_lines(say, f"  {target.display}: "):
                art, target = int8_aware.after_int8(art, target, recipe, staged, calib, out, convert_one, say)
            art = int8_aware.checks(art, out, calib, evald, [s.name for s in source.inputs])
            for w in art.validation.get("calibration_warnings", []):
                say(f"  {target.display}: warning: {w}")
        artifacts.append(art)
        final_targets.append(target)
        release_memory()  # this target's converter graphs and engine: before the next one allocates its own
    # The saved recipe reproduces these artifacts without searching again (keep_float is recorded).
    recipe = recipe.replace(targets=tuple(final_targets))

    eval_info = {"source": eval_note, "samples": len(evald), "labels": evald.labels is not None, "file": None}
    if evald.name != "random":
        eval_info["file"] = _save_eval(evald, out)
    manifest = Manifest(
        recipe=recipe.to_dict(),
        source=source.describe(),
        artifacts=tuple(artifacts),
        versions=_versions(),
        eval_data=eval_info,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        stages=stages_report,
    )
    manifest.save(out)
    say(f"wrote {out / MANIFEST_NAME} ({sum(a.ok for a in artifacts)}/{len(artifacts)} ok, {time.perf_counter() - t0:.1f}s)")
    return manifest


def _prepare_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RecipeError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RecipeError(f"output folder {out} is not empty: pass --force to replace its edgekit outputs, or pick another -o")
        # Remove only what a previous edgekit run wrote there; never anything else of the user's.
        if (out / MANIFEST_NAME).is_file():
            try:
                old = Manifest.load(out)
                for a in old.artifacts:
                    if a.path and ((out / a.path).is_file() or (out / a.path).is_dir()):
                        _files.remove(out / a.path)  # folder artifacts too (.mlpackage, .trt)
            except EdgekitError:
                pass
            (out / EVAL_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _data(recipe: Recipe, source: SourceModel) -> tuple[Dataset | None, Dataset, str]:
    # The recipe's data first, else what the model came with (a zoo model's bundled splits).
    calib_spec = recipe.calib or source.data.calib
    eval_spec = recipe.eval or source.data.eval
    dtypes = [s.dtype for s in source.inputs]
    calib = open_dataset(calib_spec, limit=recipe.calib_limit, seed=recipe.seed, **_image_options(calib_spec, source, recipe))
    if calib is not None:
        calib = calib.check_against(source.inputs, "calibration data").cast(dtypes)
    evald = open_dataset(eval_spec, limit=recipe.eval_limit, seed=recipe.seed, **_image_options(eval_spec, source, recipe))
    if evald is not None:
        evald = evald.check_against(source.inputs, "evaluation data").cast(dtypes)
        return calib, evald, str(eval_spec)
    # No held-out data: compare on random inputs. Error numbers still mean something; accuracy does not.
    return calib, random_like(source.inputs, n=64, seed=recipe.seed), "random inputs (no --eval given: no accuracy)"


def _train_data(recipe: Recipe, source: SourceModel) -> Dataset:
    """Labelled training data for the stages: the recipe's, else the model's own (a zoo training split)."""
    spec = recipe.train if recipe.train is not None else source.data.train
    if spec is None:
        raise InputError(
            "stages need training data: pass --train data.npz (x and labels y), an image folder with one "
            "sub-folder per class, or 'digits:train' (recipe key: train)"
        )
    train = open_dataset(spec, limit=recipe.train_limit, seed=recipe.seed, **_image_options(spec, source, recipe))
    train = train.check_against(source.inputs, "training data").cast([s.dtype for s in source.inputs])
    if train.labels is None:
        raise InputError(f"training data {spec} has no labels: stages fine-tune on labelled data (npz with a 'y' "
                         "array, image folders with class sub-folders, or 'digits:train')")
    return train


def _image_options(spec: str | None, source: SourceModel, recipe: Recipe) -> dict[str, Any]:
    """Image-folder options: size and colour from the model's NHWC input, the rest from the recipe."""
    if spec is None or not Path(spec).is_dir() or spec.startswith("digits"):
        return {}
    opts: dict[str, Any] = {}
    if len(source.inputs) == 1 and len(source.inputs[0].shape) == 4:
        _, h, w, c = source.inputs[0].shape
        if h and w:
            opts["size"] = (h, w)  # the model decides the size, as Keras' image_dataset_from_directory does
        if c in (1, 3):
            opts["color"] = "grayscale" if c == 1 else "rgb"
    opts.update(dict(recipe.images))
    return opts


def _one_target(target: Target, exporter: Any, recipe: Recipe, source: SourceModel, calib: Dataset | None,
                evald: Dataset, reference: list[np.ndarray], out: Path, say: Progress,
                original: list[np.ndarray] | None = None, *, batch: int | None = None) -> Artifact:
    base = {"target": target.display, "format": target.format, "precision": target.precision, "options": target.opts}
    missing = exporter.unavailable()
    if missing is not None:
        say(f"  {target.display}: unsupported here: {missing}")
        return Artifact(status=UNSUPPORTED, error=str(missing), error_kind="unsupported", **base)
    final = out / f"{target.label}{formats.FORMATS[target.format].suffix}"
    staging = out / f".{final.name}.partial"
    t0 = time.perf_counter()
    try:
        result = exporter.export(source, target.precision, target.opts, calib, staging)
        _files.place(staging, final)  # atomic: a reader sees no artifact or the whole one (file or folder)
    except EdgekitError as exc:
        say(f"  {target.display}: export failed: {exc}")
        return Artifact(status=ERROR, error=str(exc), seconds=round(time.perf_counter() - t0, 3),
                        error_kind=error_kind(exc), error_tool=getattr(exc, "tool", None), **base)
    except Exception as exc:  # noqa: BLE001 - an exporter bug must not discard the other targets
        msg = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        say(f"  {target.display}: export failed: {msg}")
        return Artifact(status=ERROR, error=msg, seconds=round(time.perf_counter() - t0, 3), error_kind="edgekit",
                        **base)
    finally:
        _files.remove(staging)
    seconds = round(time.perf_counter() - t0, 3)
    nbytes, gzip_bytes = _files.sizes(final)
    files = {
        "path": final.name,
        "bytes": nbytes,
        "gzip_bytes": gzip_bytes,
        "sha256": sha256_file(final),
        "inputs": result.inputs,
        "outputs": result.outputs,
        "seconds": seconds,
        "sparsity": _file_sparsity(final),
        "notes": tuple(result.notes),
    }
    base["options"] = {**target.opts, **result.options}
    say(f"  {target.display}: wrote {final.name} ({nbytes / 1024:.1f} KiB, {seconds:.1f}s); validating")
    cannot_run = _runtime_unavailable(target.format)
    if cannot_run:
        # Exported but not runnable here (CoreML off macOS, an engine not installed): say so, never "passed".
        say(f"  {target.display}: not validated: {cannot_run}")
        return Artifact(status=NOT_VALIDATED, error=f"not validated: {cannot_run}", error_kind="unsupported",
                        **files, **base)
    # tf2onnx leaves ~1 GB of cyclic garbage after an onnx:fp32 export at 224x224 (measured, ResNet50
    # 7.9 GB peak): collect it before the validation engine allocates on top of it.
    release_memory()
    t1 = time.perf_counter()
    try:
        metrics = _validate(final, source, evald, reference, original, batch=batch)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {exc}"
        say(f"  {target.display}: could not validate: {msg}")
        return Artifact(status=ERROR, error=f"validation could not run: {msg}", error_kind=error_kind(exc),
                        **files, **base)
    metrics["seconds"] = round(time.perf_counter() - t1, 3)  # validation's; the export's is the artifact's
    why = judge(metrics, recipe.tolerance(target.precision))
    metrics["tolerance"] = recipe.tolerance(target.precision).__dict__
    status = FAILED if why else PASSED
    say(f"  {target.display}: {status} ({_summary(metrics)})" + (f": {'; '.join(why)}" if why else ""))
    return Artifact(status=status, validation=metrics, error="; ".join(why) or None, **files, **base)


def _runtime_unavailable(fmt: str) -> str | None:
    from edgekit.runtime.backends import get_backend

    try:
        missing = get_backend(fmt).unavailable()
    except EdgekitError as exc:  # no backend registered for this format
        missing = exc
    return None if missing is None else str(missing)


def _file_sparsity(file: Path) -> dict[str, Any] | None:
    from edgekit.convert.stages.sparsity import file_sparsity

    return file_sparsity(file)


def _validate(file: Path, source: SourceModel, evald: Dataset, reference: list[np.ndarray],
              original: list[np.ndarray] | None = None, *, batch: int | None = None) -> dict[str, Any]:
    """Metrics of the artifact against ``reference`` (the model converted).

    With ``original`` (the untouched source's outputs, when stages changed the model) the accuracy
    numbers are against the source instead, and its fidelity numbers are kept under ``vs_source``:
    a pruned model differs from the source by design, so error/SNR limits judge the conversion,
    while the accuracy drop judges what the stages cost.
    """
    from edgekit.runtime import load, run_batched

    # An engine's refusal is a BackendError from its backend (kind "engine"); anything else raised
    # here is ours, recorded as such by the caller.
    session = load(file)
    if batch is None:
        batch = batch_for(source, samples=evald.inputs)
    # Feed by name: the artifact may order its inputs differently from the Keras model. The engine
    # computes the same layers as the Keras model, so the batch sized for it bounds the engine too.
    outs = run_batched(session, {s.name: a for s, a in zip(source.inputs, evald.inputs)}, batch_size=batch,
                       progress=counter("validation", len(evald)))
    ref_names = [s.name for s in source.outputs]
    if sorted(session.output_names) == sorted(ref_names):
        order = [session.output_names.index(n) for n in ref_names]  # match outputs by name
        outs = [outs[i] for i in order]
    metrics = compare(reference, outs, labels=evald.labels, names=ref_names)
    if original is not None:
        vs = compare(original, outs, labels=evald.labels, names=ref_names)
        metrics["staged_accuracy"] = metrics["reference_accuracy"]
        for key in ("reference_accuracy", "accuracy_drop"):
            metrics[key] = vs[key]
        metrics["vs_source"] = {k: vs[k] for k in ("max_abs_err", "snr_db", "top1_agreement")}
    return metrics


def _summary(m: Mapping[str, Any]) -> str:
    parts = [f"max abs err {m['max_abs_err']:.2g}", f"snr {m['snr_db']:.1f} dB"]
    if m.get("top1_agreement") is not None:
        parts.append(f"top-1 agree {m['top1_agreement'] * 100:.1f}%")
    if m.get("accuracy") is not None:
        parts.append(f"acc {m['accuracy']:.2f}% (ref {m['reference_accuracy']:.2f}%)")
    return ", ".join(parts)


def _save_eval(evald: Dataset, out: Path) -> str | None:
    nbytes = sum(a.nbytes for a in evald.inputs) + (evald.labels.nbytes if evald.labels is not None else 0)
    if nbytes > EVAL_FILE_MAX_BYTES:
        return None
    evald.to_npz(out / EVAL_FILE)  # atomic; read back by from_npz on the device
    return EVAL_FILE


def _versions() -> dict[str, str]:
    # Every format's converter and engine, from the one table.
    return {"edgekit": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            **formats.installed_versions()}


__all__ = ["convert", "EVAL_FILE", "TensorSpec"]
