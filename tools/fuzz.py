"""Mutation fuzzing of model loading: corrupt a good model file many ways and load + run each copy
in its own subprocess with a timeout. A clean :class:`~edgekit.errors.EdgekitError` (or a model
that still runs) is fine; an uncaught exception, a crash (signal) or a hang is a bug.

Used by ``tests/runtime/test_runtime_fuzz.py`` (a small run) and ``benchmarks/fuzz_models.py``
(>= 1,000 files). Each child is forked from a server that already imported the runtime, so a run
costs milliseconds, not a Python start-up. A test harness, so it lives in the repository's
``tools/`` and not in the wheel.

Example:
    >>> import random
    >>> data = bytes(range(256)) * 4
    >>> len(mutate(data, random.Random(0))) > 0
    True
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MUTATIONS: list[str] = ["truncate", "flip_bits", "random_range", "zero_range", "duplicate_chunk", "insert_bytes",
                        "random_file", "bad_identifier", "flip_header", "shuffle_blocks"]


def mutate(data: bytes, rng: random.Random, kind: str | None = None) -> bytes:
    """One corrupted copy of ``data`` (``kind`` from :data:`MUTATIONS`, random if ``None``)."""
    kind = kind or rng.choice(MUTATIONS)
    b = bytearray(data)
    n = len(b)
    if kind == "truncate":
        return bytes(b[: rng.randrange(0, n)])
    if kind == "flip_bits":
        for _ in range(rng.choice((1, 2, 8, 64))):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "random_range":
        start = rng.randrange(n)
        length = min(n - start, rng.choice((1, 4, 16, 256, 4096)))
        b[start : start + length] = rng.randbytes(length)
        return bytes(b)
    if kind == "zero_range":
        start = rng.randrange(n)
        length = min(n - start, rng.choice((4, 64, 1024)))
        b[start : start + length] = bytes(length)
        return bytes(b)
    if kind == "duplicate_chunk":
        start = rng.randrange(n)
        chunk = b[start : start + rng.choice((8, 128, 2048))]
        pos = rng.randrange(n)
        return bytes(b[:pos] + chunk + b[pos:])
    if kind == "insert_bytes":
        pos = rng.randrange(n)
        return bytes(b[:pos] + rng.randbytes(rng.choice((1, 3, 17))) + b[pos:])
    if kind == "random_file":
        return rng.randbytes(rng.choice((0, 7, 64, n)))
    if kind == "bad_identifier":
        b[4:8] = rng.randbytes(4)
        return bytes(b)
    if kind == "flip_header":
        for _ in range(4):
            b[rng.randrange(min(n, 64))] ^= 0xFF
        return bytes(b)
    if kind == "shuffle_blocks":
        size = 64
        blocks = [b[i : i + size] for i in range(0, n, size)]
        i, j = rng.randrange(len(blocks)), rng.randrange(len(blocks))
        blocks[i], blocks[j] = blocks[j], blocks[i]
        return bytes(b"".join(blocks))
    raise ValueError(f"unknown mutation {kind!r}; known: {MUTATIONS}")


def _child(path: str, result_file: str) -> None:
    """Load and run one file; write what happened. Runs in a forked process."""
    import resource

    # A corrupt shape must fail cleanly, not take the machine's memory: cap the address space
    # and edgekit's own tensor-size guard well below it.
    limit = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["EDGEKIT_MAX_TENSOR_BYTES"] = str(1 << 30)
    from edgekit.errors import EdgekitError

    outcome: dict[str, str] = {}
    try:
        import edgekit.runtime.backends.litert as litert

        litert.MAX_TENSOR_BYTES = 1 << 30
        from edgekit.runtime import load
        from edgekit.runtime.bench import synthetic_feeds

        s = load(path, num_threads=1)
        s.run(synthetic_feeds(s.inputs, 1))
        outcome = {"result": "ran"}
    except EdgekitError as exc:
        outcome = {"result": "error", "message": str(exc)[:200], "type": type(exc).__name__}
    except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer is looking for
        outcome = {"result": "uncaught", "message": f"{type(exc).__name__}: {str(exc)[:200]}"}
    Path(result_file).write_text(json.dumps(outcome))


@dataclass
class FuzzReport:
    """Counts per outcome and the files that broke the rules."""

    counts: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def bad(self) -> int:
        return self.counts["uncaught"] + self.counts["crash"] + self.counts["hang"]


def fuzz(model: str | os.PathLike[str], n: int = 100, *, seed: int = 0, timeout: float = 30.0, workers: int = 2,
         keep_dir: str | os.PathLike[str] | None = None, progress: Callable[[int, int], None] | None = None) -> FuzzReport:
    """Mutate ``model`` ``n`` times and load + run each copy in its own subprocess.

    Args:
        model: A good model file (``.tflite``).
        n: Number of mutated files.
        seed: Seeds the mutations (the same seed gives the same files).
        timeout: Seconds before a child counts as hung (and is killed).
        workers: Children running at once.
        keep_dir: Keep the mutated files here (default: a temp folder, deleted).
        progress: Called with (done, n).
    """
    data = Path(model).read_bytes()
    suffix = Path(model).suffix
    rng = random.Random(seed)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["edgekit.runtime", "edgekit.runtime.backends.litert", "edgekit.runtime.bench"])
    report = FuzzReport()
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") if keep_dir is None else None
    folder = Path(keep_dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in range(n):
        kind = MUTATIONS[i % len(MUTATIONS)]
        f = folder / f"m{i:05d}-{kind}{suffix}"
        f.write_bytes(mutate(data, rng, kind))
        jobs.append((f, kind))
    running: list[tuple[mp.Process, Path, str, Path, float]] = []
    done = 0
    try:
        while jobs or running:
            while jobs and len(running) < workers:
                f, kind = jobs.pop(0)
                res = f.with_suffix(".json")
                p = ctx.Process(target=_child, args=(str(f), str(res)))
                p.start()
                running.append((p, f, kind, res, time.perf_counter()))
            time.sleep(0.002)
            still = []
            for p, f, kind, res, started in running:
                if p.is_alive() and time.perf_counter() - started < timeout:
                    still.append((p, f, kind, res, started))
                    continue
                if p.is_alive():
                    p.kill()
                    p.join()
                    outcome = {"result": "hang"}
                else:
                    p.join()
                    if p.exitcode != 0:
                        outcome = {"result": "crash", "message": f"exit code {p.exitcode}"}
                    else:
                        outcome = json.loads(res.read_text()) if res.exists() else {"result": "crash", "message": "no result"}
                report.counts[outcome["result"]] += 1
                report.by_mutation.setdefault(kind, Counter())[outcome["result"]] += 1
                if outcome["result"] in ("uncaught", "crash", "hang"):
                    report.failures.append({"file": f.name, "mutation": kind, **outcome})
                done += 1
                if progress:
                    progress(done, n)
            running = still
    finally:
        for p, *_ in running:
            p.kill()
        if tmp is not None:
            tmp.cleanup()
    report.seconds = round(time.perf_counter() - t0, 2)
    return report
