"""Bench a model file, or every artifact of an edgekit output folder, at one or more settings.

Errors become results with ``error`` set, and artifacts this device cannot run are listed as
skipped with the reason, so one folder holding every format benches side by side anywhere.

Example:
    >>> from edgekit.runtime.bench import BenchConfig
    >>> rows = bench_path("out/", BenchConfig(runs=50))  # doctest: +SKIP
    >>> [(r.target, r.status) for r in rows]  # doctest: +SKIP
    [('tflite:fp32', 'ok'), ('coreml:fp16', 'skipped')]
"""

from __future__ import annotations

import dataclasses
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit import formats
from edgekit.errors import EdgekitError, InputError, ModelError
from edgekit.manifest import Artifact, Manifest, artifact_bytes
from edgekit.runtime.artifacts import runnable
from edgekit.runtime.backends import format_for_path, get_backend
from edgekit.runtime.bench.config import CV_WARN, BenchConfig, BenchResult
from edgekit.runtime.bench.timing import (cold_start_ms, peak_rss_mb, reset_peak_rss, throttle_warnings,
                                          time_session, time_streams, uneven_streams)
from edgekit.runtime.device import device_info, throttling
from edgekit.runtime.session import Session, run_batched


def accuracy(session: Session, inputs: "Sequence[np.ndarray] | dict[str, np.ndarray]", labels: np.ndarray) -> float | None:
    """Top-1 accuracy (%) of the first class-shaped output, or ``None`` if the model has none.

    Example:
        >>> accuracy(load("model.tflite"), [x], labels)  # doctest: +SKIP
        97.5
    """
    outs = run_batched(session, inputs)
    for o in outs:
        if o.ndim == 2 and o.shape[1] > 1 and len(o) == len(labels):
            return round(float(np.mean(np.argmax(o, axis=1) == labels)) * 100.0, 4)
    return None


def bench_file(path: str | os.PathLike[str], config: BenchConfig = BenchConfig(), *, artifact: Artifact | None = None,
               eval_data: tuple[Any, np.ndarray] | None = None,
               verify: bool = True) -> BenchResult:
    """Load one artifact (timing the load) and bench it. Errors become a result with ``error`` set.

    With ``config.concurrency`` K > 1 the artifact is loaded K times and the K Sessions are timed
    together, one thread each (:func:`~edgekit.runtime.bench.timing.time_streams`); peak RSS then
    covers all K.

    Example:
        >>> bench_file("model.tflite", BenchConfig(runs=20)).status  # doctest: +SKIP
        'ok'
    """
    from edgekit.runtime.artifacts import open_artifact
    from edgekit.runtime.loader import load

    path = Path(path)

    def open_session(check: bool) -> Session:
        if artifact is None:
            return load(path, num_threads=threads)
        # Read once: the bytes whose size and sha256 are checked are the bytes the engine runs, and
        # the engine must match the manifest entry (open_artifact does both, like load()).
        entry = dataclasses.replace(artifact, path=path.name)
        return open_artifact(path.parent, entry, verify=check, num_threads=threads)

    guessed = None if artifact else guess_precision(path)
    base = {
        "model": str(path),
        "target": artifact.target if artifact else f"{path.suffix.lstrip('.')}:{guessed}",
        "format": artifact.format if artifact else format_of(path),
        "precision": artifact.precision if artifact else guessed,
        "status": "error",
        "size_bytes": artifact_bytes(path) if path.exists() else None,  # folder artifacts: total of their files
        "batch_size": config.batch_size,
        "validation": artifact.status if artifact else None,
        "concurrency": config.concurrency,
    }
    k = config.concurrency
    threads = config.threads_per_stream()
    streams: list[dict[str, Any]] = []
    try:
        # Import the engine first so load_ms is the model's load, not the library's import.
        get_backend(artifact.format if artifact else format_for_path(path)).unavailable()
        cold = cold_start_ms(path, threads) if config.cold_start else None
        before = throttling()
        reset_peak_rss()  # before the first load: the peak then covers every stream's Session
        t = time.perf_counter()
        session = open_session(verify)
        load_ms = round((time.perf_counter() - t) * 1e3, 3)  # one Session's load (with its checks), whatever the streams
        if k == 1:
            timing = time_session(session, config)
        else:
            # One Session per stream: engines' interpreters are not thread-safe and a Session
            # serialises its calls, so K threads on one Session would time the lock.
            sessions = [session] + [open_session(False) for _ in range(k - 1)]
            timing = time_streams(sessions, config)
            streams = timing.pop("streams")
            del sessions  # the extra Sessions go before the next artifact loads
        acc = None
        if eval_data is not None:
            acc = accuracy(session, eval_data[0], eval_data[1])
        peak = peak_rss_mb()
    except EdgekitError as exc:
        return BenchResult(**base, error=str(exc))
    warnings = throttle_warnings(before, throttling())
    if timing["robust_cv"] is not None and timing["robust_cv"] > CV_WARN:
        warnings.append(f"unstable timing: robust cv {timing['robust_cv']:.2f} > {CV_WARN} (busy or throttled machine?)")
    info = session.info
    per_stream = info.get("num_threads")
    if k > 1:
        uneven = uneven_streams(streams)
        if uneven:
            warnings.append(uneven)
        cores = device_info()["cores"]
        if isinstance(per_stream, int) and k * per_stream > cores:
            warnings.append(f"{k} streams x {per_stream} threads = {k * per_stream} engine threads on {cores} cores: "
                            "streams compete for cores, so per-call latency includes waiting for one")
    return BenchResult(
        **{**base, "status": "ok"},
        num_threads=per_stream,
        engine=str(info.get("engine", "")),
        engine_version=str(info.get("engine_version", "")),
        cold_start_ms=cold,
        load_ms=load_ms,
        **timing,
        peak_rss_mb=peak,
        accuracy=acc,
        accuracy_samples=len(eval_data[1]) if eval_data is not None and acc is not None else None,
        warnings=tuple(warnings),
    )


def _default_eval_limit() -> int:
    try:
        return min(8 << 30, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    except (AttributeError, ValueError, OSError):
        return 8 << 30


# The most bytes an eval .npz named by a manifest may unpack to: half the machine's memory, at most
# 8 GiB (1,000 samples at 224x224x3 float32 are 600 MB). A compressed archive of zeros is a zip bomb.
MAX_EVAL_BYTES = int(os.environ.get("EDGEKIT_MAX_EVAL_BYTES") or _default_eval_limit())


def _check_unpacked(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        total = sum(info.file_size for info in zf.infolist())
    if total > MAX_EVAL_BYTES:
        raise ModelError(f"eval data {path.name} (manifest eval_data.file) unpacks to {total} bytes, over the "
                         f"{MAX_EVAL_BYTES}-byte limit (EDGEKIT_MAX_EVAL_BYTES raises it)")


def load_eval(folder: Path, manifest: Manifest, override: str | os.PathLike[str] | None = None) -> tuple[Any, np.ndarray] | None:
    """Eval inputs and labels for accuracy: ``override`` (.npz), else the ``eval.npz`` convert wrote.

    Example:
        >>> inputs, labels = load_eval(Path("out"), Manifest.load("out"))  # doctest: +SKIP
    """
    from edgekit.calibration import from_npz
    from edgekit.files import check_regular
    from edgekit.runtime.artifacts import inside

    if override:
        path = Path(override)
        if not path.is_file():
            raise InputError(f"eval data {path} does not exist")
        ds = from_npz(path)
    else:
        name = manifest.eval_data.get("file")
        if not name:
            return None
        # The manifest names the file: it must stay inside the folder and be a regular file (a
        # FIFO would block the read), and what is wrong with it is the manifest's fault.
        path = inside(folder, str(name), f"manifest eval_data.file {name!r}")
        check_regular(path, what="eval data (manifest eval_data.file)")
        try:
            _check_unpacked(path)
            ds = from_npz(path)
        except EdgekitError as exc:
            raise ModelError(f"eval data {path.name} (manifest eval_data.file) is unreadable: {exc}") from None
        except (ValueError, OSError, EOFError, KeyError, RecursionError, MemoryError, zipfile.BadZipFile) as exc:
            raise ModelError(f"eval data {path.name} (manifest eval_data.file) is unreadable: "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    if ds.labels is None:
        return None
    names = [s["name"] for s in manifest.source.get("inputs", [])]
    if len(names) == ds.num_inputs:
        # eval.npz stores inputs in the source model's order; feed them by name.
        return dict(zip(names, ds.inputs)), ds.labels
    return list(ds.inputs), ds.labels


def bench_path(path: str | os.PathLike[str], config: BenchConfig | Sequence[BenchConfig] = BenchConfig(), *,
               target: str | None = None, eval_path: str | os.PathLike[str] | None = None,
               verify: bool = True) -> list[BenchResult]:
    """Bench a model file, or every artifact of an edgekit output folder, side by side.

    ``config`` may be a list (a concurrency x threads x batch sweep): the manifest, eval data and each artifact's
    checksum are then read once, not once per configuration.

    Example:
        >>> rows = bench_path("out/", BenchConfig(runs=50))  # doctest: +SKIP
    """
    configs = [config] if isinstance(config, BenchConfig) else list(config)
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist")
    from edgekit.runtime.artifacts import artifact_path, is_output_folder

    if not is_output_folder(p):
        data = None
        if eval_path:
            from edgekit.calibration import from_npz

            ds = from_npz(eval_path)
            data = (list(ds.inputs), ds.labels) if ds.labels is not None else None
        return [bench_file(p, c, eval_data=data, verify=verify) for c in configs]
    folder = p if p.is_dir() else p.parent
    manifest = Manifest.load(folder)
    data = load_eval(folder, manifest, eval_path)
    chosen = [a for a in manifest.artifacts if not target or target in (a.target, a.format, a.precision)]
    if not chosen:
        raise ModelError(f"no artifact matches {target!r}; this folder has {[a.target for a in manifest.artifacts]}")
    results = []
    for a in chosen:
        if not a.path:
            results.append(BenchResult(model="-", target=a.target, format=a.format, precision=a.precision,
                                       status="skipped", validation=a.status, error=a.error))
            continue
        try:
            file = artifact_path(folder, a)
        except EdgekitError as exc:
            results.append(BenchResult(model=str(a.path), target=a.target, format=a.format, precision=a.precision,
                                       status="error", validation=a.status, error=str(exc)))
            continue
        cannot_run = runnable(a)  # engine missing, wrong OS, or seen crashing on this CPU by a probe
        if cannot_run:
            # One folder holds every format; those this device cannot run (CoreML off macOS, TensorRT
            # without a GPU) are listed with the reason instead of failing the whole bench.
            results.append(BenchResult(model=str(file), target=a.target, format=a.format, precision=a.precision,
                                       status="skipped", size_bytes=a.bytes, validation=a.status,
                                       error=f"not run here: {cannot_run}"))
            continue
        for i, c in enumerate(configs):
            r = bench_file(file, c, artifact=a, eval_data=data, verify=verify and i == 0)
            results.append(r)
            if r.status == "error":
                break  # a corrupt or missing artifact fails the same way at every setting
    return results


def format_of(path: Path) -> str:
    """The format a bare file's suffix says (see :data:`edgekit.formats.FORMATS`), else the suffix itself.

    Example:
        >>> format_of(Path("m.plan")), format_of(Path("m.bin"))
        ('tensorrt', 'bin')
    """
    return formats.format_for_suffix(path.suffix) or path.suffix.lstrip(".")


def guess_precision(path: Path) -> str:
    """Best guess at a bare file's precision (for the table only; manifests say it exactly), else ``"?"``.

    Asks the backend of the file's format, if it can tell (``guess_precision``: LiteRT reads the
    tensor types, ONNX Runtime the precision edgekit stamps into the metadata).

    Example:
        >>> guess_precision(Path("absent.tflite")), guess_precision(Path("model.bin"))
        ('?', '?')
    """
    fmt = formats.format_for_suffix(path.suffix)
    if fmt is None or not path.is_file():
        return "?"
    try:
        return get_backend(fmt).guess_precision(path)
    except (EdgekitError, AttributeError):  # AttributeError: a plug-in backend without the hook
        return "?"
