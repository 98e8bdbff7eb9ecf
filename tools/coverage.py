"""The zoo coverage matrix: every zoo model converted to every registered target, cell by cell.

A repository tool (``make coverage`` writes ``docs/coverage.md`` with it), not part of the wheel.

One :func:`edgekit.api.convert` call per model (all targets in one recipe: the model is loaded,
traced and exported to a SavedModel once), and every artifact becomes a :class:`Cell` with its
status, its key numbers and, when it did not pass, the reason and who is to blame, read off the
artifact's status and its ``error_kind`` (recorded where the error was raised, never parsed back
out of the message):

``engine``
    The converter or runtime is not available on this machine (TF-TRT without a TensorRT build of
    TensorFlow, TensorRT without an NVIDIA GPU): unsupported here, not a failure.
``platform``
    Converted, but the engine runs only elsewhere (CoreML off macOS): not validated, never passed.
``precision``
    Converted and run, but outside the precision's tolerance against the reference model.
``converter``
    The third-party converter or quantizer refused the model (TFLite converter, tf2onnx,
    coremltools, onnxruntime.quantization), with its message and edgekit's hint.
``edgekit``
    Anything else: an exception edgekit did not turn into a reasoned error is our bug.

An engine that refuses to run an artifact that was written (Flex ops in LiteRT) is an ``engine``
error too.

A model that cannot even be loaded or trained fails every one of its cells with that reason; the
run itself never stops (:func:`run` catches per model).

Example:
    >>> result = run(["digits-small-cnn"], ["tflite:fp32", "onnx:fp32"])  # doctest: +SKIP
    >>> [(c.target, c.status) for c in result.cells]  # doctest: +SKIP
    [('tflite:fp32', 'passed'), ('onnx:fp32', 'passed')]
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgekit.manifest import ERROR, FAILED, NOT_VALIDATED, PASSED, UNSUPPORTED

Progress = Callable[[str], None]
BLAMES = ("engine", "platform", "precision", "converter", "edgekit")
# A status that is not an error decides the blame by itself.
_STATUS_BLAME = {UNSUPPORTED: "engine", NOT_VALIDATED: "platform", FAILED: "precision"}
# An error's blame follows the kind of error it was (edgekit.errors.ERROR_KINDS).
_KIND_BLAME = {"converter": "converter", "engine": "engine", "unsupported": "engine"}


@dataclass(frozen=True)
class Cell:
    """One zoo model x target.

    Attributes:
        model: Zoo name.
        target: ``format:precision``.
        status: A manifest status (``passed``, ``failed``, ``error``, ``unsupported``, ``not_validated``).
        blame: ``None`` when passed, else one of :data:`BLAMES`.
        reason: Why it did not pass (one line), else ``None``.
        accuracy: Artifact accuracy on the eval data (%), where validated.
        reference_accuracy: The Keras model's accuracy on the same data (%).
        snr_db: Worst output's signal-to-noise ratio against the reference.
        max_abs_err: Largest absolute output difference against the reference.
        bytes: Artifact size, where one was written.
        seconds: Export time.
        tool: The third-party converter an error came from (``blame == "converter"``), else ``None``.
    """

    model: str
    target: str
    status: str
    blame: str | None = None
    reason: str | None = None
    accuracy: float | None = None
    reference_accuracy: float | None = None
    snr_db: float | None = None
    max_abs_err: float | None = None
    bytes: int | None = None
    seconds: float | None = None
    tool: str | None = None

    @property
    def format(self) -> str:
        return self.target.split(":")[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CoverageRun:
    """Every cell of one run, with per-model timings and where it ran.

    Attributes:
        models: Zoo names, in run order.
        targets: Targets, in registry order.
        cells: One :class:`Cell` per model x target.
        seconds: Wall time per model (load/train + convert + validate).
        machine: Platform and engine versions of the run.
        settings: Eval/calib limits and seed.
    """

    models: list[str]
    targets: list[str]
    cells: list[Cell] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def cell(self, model: str, target: str) -> Cell:
        return next(c for c in self.cells if c.model == model and c.target == target)

    def counts(self) -> dict[str, int]:
        """Cells per outcome: ``passed``, ``not_validated`` and one key per blame category.

        Example:
            >>> CoverageRun(["m"], ["t"], [Cell("m", "t", "passed")]).counts()["passed"]
            1
        """
        out = {"passed": 0, **{b: 0 for b in BLAMES}}
        for c in self.cells:
            out["passed" if c.status == PASSED else c.blame or "edgekit"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.models, "targets": self.targets, "cells": [c.to_dict() for c in self.cells],
                "seconds": self.seconds, "machine": self.machine, "settings": self.settings, "counts": self.counts()}


def all_targets() -> list[str]:
    """Every registered ``format:precision``, in the capability table's order.

    The formats are the ``FORMATS`` table's (the exporter registry reads it), so a format
    registered there alone is a column of the matrix.

    Example:
        >>> "tflite:int8" in all_targets() and "coreml:palettized" in all_targets()
        True
    """
    from edgekit.convert.exporters import exporter_names, get_exporter

    return [f"{fmt}:{p}" for fmt in exporter_names() for p in get_exporter(fmt).precisions]


def blame_for(status: str, kind: str | None) -> str | None:
    """Who a cell's outcome is down to (see the module docstring), from its status and error kind.

    Args:
        status: The artifact's status.
        kind: Its ``error_kind`` (``edgekit``, ``converter``, ``engine``, ``unsupported``), if any.

    Example:
        >>> blame_for("error", "converter"), blame_for("failed", None), blame_for("error", "edgekit")
        ('converter', 'precision', 'edgekit')
    """
    if status == PASSED:
        return None
    if status in _STATUS_BLAME:
        return _STATUS_BLAME[status]
    return _KIND_BLAME.get(kind or "", "edgekit")


def converter_name(kind: str | None, tool: str | None) -> str | None:
    """Which third-party tool an error came from (its ``error_tool``), or ``None`` if no converter's.

    Example:
        >>> converter_name("converter", "onnxruntime.quantization"), converter_name("edgekit", None)
        ('onnxruntime.quantization', None)
    """
    return tool if kind == "converter" else None


def cell_from_artifact(model: str, art: Any) -> Cell:
    """A :class:`Cell` from one manifest :class:`~edgekit.manifest.Artifact`."""
    v = art.validation or {}
    return Cell(model=model, target=art.target, status=art.status, blame=blame_for(art.status, art.error_kind),
                reason=None if art.status == PASSED else (art.error or art.status),
                accuracy=v.get("accuracy"), reference_accuracy=v.get("reference_accuracy"), snr_db=v.get("snr_db"),
                max_abs_err=v.get("max_abs_err"), bytes=art.bytes, seconds=art.seconds,
                tool=converter_name(art.error_kind, art.error_tool))


def convert_model(model: str, targets: Sequence[str], out: Path, *, eval_limit: int, calib_limit: int, seed: int = 0,
                  progress: Progress | None = None) -> list[Cell]:
    """Convert one zoo model to ``targets`` in one :func:`convert` call and return its cells.

    Never raises for a model's own failure: a model that cannot be loaded, trained or converted
    yields one ``error`` cell per target, blamed on edgekit, with the reason.
    """
    from edgekit.api import convert
    from edgekit.errors import EdgekitError

    recipe = {"model": model, "targets": list(targets), "eval_limit": eval_limit, "calib_limit": calib_limit,
              "seed": seed}
    try:
        manifest = convert(recipe, out, force=True, progress=progress)
    except Exception as exc:  # noqa: BLE001 - the matrix records a broken model, it never stops on one
        kind = "" if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: "
        why = f"model could not be converted: {kind}{' '.join(str(exc).split())[:300]}"
        return [Cell(model, t, ERROR, "edgekit", why) for t in targets]
    return [cell_from_artifact(model, a) for a in manifest.artifacts]


def machine() -> dict[str, str]:
    """Platform and the installed versions of edgekit and every format's distributions, for the report's header.

    Example:
        >>> machine()["edgekit"]
        '0.1.0'
    """
    from importlib.metadata import version

    from edgekit.formats import installed_versions

    return {"platform": platform.platform(), "python": platform.python_version(), "edgekit": version("edgekit"),
            **installed_versions()}


def _model_job(job: tuple[str, list[str], str, int, int, int]) -> tuple[str, list[Cell], float]:
    """One model in a worker process: its cells and wall time (module level, so it pickles)."""
    name, targets, out, eval_limit, calib_limit, seed = job
    t0 = time.perf_counter()
    cells = convert_model(name, targets, Path(out), eval_limit=eval_limit, calib_limit=calib_limit, seed=seed)
    return name, cells, round(time.perf_counter() - t0, 1)


def run(models: Sequence[str] | None = None, targets: Sequence[str] | None = None, *, eval_limit: int = 200,
        calib_limit: int = 100, seed: int = 0, progress: Progress | None = None,
        work_dir: str | Path | None = None, workers: int = 1) -> CoverageRun:
    """Convert every zoo model in ``models`` to every target and collect the cells.

    Args:
        models: Zoo names (default: the whole zoo).
        targets: ``format:precision`` strings (default: every registered one, :func:`all_targets`).
        eval_limit: Validation samples per model (seeded subset of the eval split).
        calib_limit: Calibration samples for int8 targets.
        seed: Training and sampling seed (trained models are cached per seed).
        progress: Called with one-line progress messages.
        work_dir: Where artifacts are written (default: a temporary folder, removed afterwards).
        workers: Models converted at once, each in its own (spawned) process. The converters are
            mostly single-threaded, and a fresh process converts faster than one that has already
            traced hundreds of functions (measured: the 72-cell test subset takes 77 s in a fresh
            process, ~125 s at the end of the test suite, ~45 s with 2 workers on 2 cores).

    Example:
        >>> run(["mnist-mlp"], ["tflite:fp32"]).cell("mnist-mlp", "tflite:fp32").status  # doctest: +SKIP
        'passed'
    """
    from edgekit.zoo import zoo_names

    models = list(models or zoo_names())
    targets = list(targets or all_targets())
    result = CoverageRun(models, targets, machine=machine(),
                         settings={"eval_limit": eval_limit, "calib_limit": calib_limit, "seed": seed})
    tmp = None if work_dir is not None else tempfile.mkdtemp(prefix="edgekit-coverage-")
    root = Path(work_dir if work_dir is not None else tmp)
    cells: dict[str, list[Cell]] = {}
    try:
        if workers > 1:
            _run_parallel(models, targets, root, eval_limit, calib_limit, seed, workers, cells, result, progress)
        else:
            for name in models:
                t0 = time.perf_counter()
                if progress:
                    progress(f"coverage: {name} -> {len(targets)} targets")
                cells[name] = convert_model(name, targets, root / name, eval_limit=eval_limit,
                                            calib_limit=calib_limit, seed=seed, progress=progress)
                result.seconds[name] = round(time.perf_counter() - t0, 1)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result.cells = [c for name in models for c in cells[name]]  # model order, whatever finished first
    return result


def _run_parallel(models: list[str], targets: list[str], root: Path, eval_limit: int, calib_limit: int, seed: int,
                  workers: int, cells: dict[str, list[Cell]], result: CoverageRun, progress: Progress | None) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = [(name, targets, str(root / name), eval_limit, calib_limit, seed) for name in models]
    # spawn, not fork: TensorFlow's threads do not survive a fork of a process that has imported it.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_model_job, job): job[0] for job in jobs}
        for future in as_completed(futures):
            name = futures[future]
            try:
                name, model_cells, seconds = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died is recorded, never fatal
                why = f"model could not be converted: worker failed: {type(exc).__name__}: {exc}"
                model_cells, seconds = [Cell(name, t, ERROR, "edgekit", why[:400]) for t in targets], 0.0
            cells[name], result.seconds[name] = model_cells, seconds
            if progress:
                done = sum(c.status == PASSED for c in model_cells)
                progress(f"coverage: {name}: {done}/{len(targets)} passed ({seconds:.0f} s)")
