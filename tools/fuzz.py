"""Mutation fuzzing of model loading and running: corrupt a good model file many ways (bytes, or one
field of its flatbuffer / protobuf), feed the good one hostile inputs, and load + run each case in its
own subprocess with a timeout and a memory account.

Outcomes per case:

* ``ran``: the model loaded and ran (fine: the mutation did not matter);
* ``error``: a clean :class:`~edgekit.errors.EdgekitError` (fine);
* ``uncaught``: any other exception (a bug);
* ``crash``: the child died (signal, abort, non-zero exit: a bug);
* ``hang``: the child outlived ``timeout`` and was killed (a bug);
* ``memory``: the child's peak RSS grew by more than ``mem_factor`` times what the clean model's
  load + run grew by (with a floor, and an allowance for the feed itself): the tensor-size guard
  was bypassed (a bug).

Separately, ``reached_invoke`` counts the cases whose model loaded and whose ``run`` was attempted:
the share of mutations that test the engine rather than the file check.

Used by ``tests/runtime/test_runtime_fuzz.py`` (a small run) and ``benchmarks/fuzz_models.py``
(>= 1,000 cases per artifact). Each child is forked from a server that already imported the runtime
and the engines, so a case costs milliseconds, not a Python start-up. A test harness, so it lives in
the repository's ``tools/`` and not in the wheel.

Example:
    >>> import random
    >>> data = bytes(range(256)) * 4
    >>> len(mutate(data, random.Random(0))) > 0
    True
    >>> mutators_for("model.onnx", "structure")[:2]
    ['input_dims', 'elem_type']
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tools.fuzz_feeds import FEED_MUTATIONS, build_feeds, feed_spec

MUTATIONS: list[str] = ["truncate", "flip_bits", "random_range", "zero_range", "duplicate_chunk", "insert_bytes",
                        "random_file", "bad_identifier", "flip_header", "shuffle_blocks"]
BAD = ("uncaught", "crash", "hang", "memory")
DEFAULT_GUARD = 16 << 20  # EDGEKIT_MAX_TENSOR_BYTES in the children: a working guard keeps them near the clean load
MEM_FLOOR = 16 << 20  # clean loads of tiny models grow RSS by < 1 MiB: N x that would flag noise


def mutate(data: bytes, rng: random.Random, kind: str | None = None) -> bytes:
    """One byte-level corrupted copy of ``data`` (``kind`` from :data:`MUTATIONS`, random if ``None``).

    Example:
        >>> mutate(b"0123456789", random.Random(1), "bad_identifier")[:4]
        b'0123'
    """
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


def structure_mutations(path: str | os.PathLike[str]) -> list[str]:
    """The structure-aware mutators for this file's format (``[]`` for other formats).

    Example:
        >>> structure_mutations("a.tflite")[:3]
        ['tensor_shape', 'tensor_rank', 'batch_400k']
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        from tools.flatbuf import TFLITE_MUTATIONS

        return list(TFLITE_MUTATIONS)
    if suffix == ".onnx":
        from tools.onnxmut import ONNX_MUTATIONS

        return list(ONNX_MUTATIONS)
    return []


def mutators_for(path: str | os.PathLike[str], which: str = "all") -> list[str]:
    """Mutator names for ``path``: ``"bytes"``, ``"structure"``, ``"feeds"``, ``"all"`` (or a comma list).

    Example:
        >>> mutators_for("a.tflite", "bytes,feeds") == MUTATIONS + FEED_MUTATIONS
        True
    """
    out: list[str] = []
    for part in which.split(","):
        part = part.strip()
        if part in ("bytes", "all"):
            out += MUTATIONS
        if part in ("structure", "all"):
            out += structure_mutations(path)
        if part in ("feeds", "all"):
            out += FEED_MUTATIONS
        if part not in ("bytes", "structure", "feeds", "all"):
            raise ValueError(f"unknown mutator group {part!r}; known: bytes, structure, feeds, all")
    return out


def mutate_file(data: bytes, suffix: str, rng: random.Random, kind: str) -> tuple[bytes, str]:
    """One mutated copy of a model file by mutator ``kind`` (bytes or structure) and what changed.

    Example:
        >>> mutate_file(b"0123456789", ".tflite", random.Random(0), "truncate")[1]
        'truncate'
    """
    if kind in MUTATIONS:
        return mutate(data, rng, kind), kind
    if suffix == ".tflite":
        from tools.flatbuf import mutate_tflite

        return mutate_tflite(data, rng, kind)
    if suffix == ".onnx":
        from tools.onnxmut import mutate_onnx

        return mutate_onnx(data, rng, kind)
    raise ValueError(f"no structure-aware mutator {kind!r} for {suffix} files")


def self_status(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``, ``VmHWM``); 0 where there is none.

    Example:
        >>> self_status("VmRSS") > 0
        True
    """
    try:
        m = re.search(rf"^{key}:\s+(\d+)\s*kB", Path("/proc/self/status").read_text(), re.M)
        return int(m.group(1)) << 10 if m else 0
    except OSError:
        return 0


def reset_peak() -> None:
    """Reset this process's ``VmHWM`` to its current RSS (a no-op where the kernel does not allow it)."""
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0): the forked child
    # would otherwise inherit the fork server's high-water mark.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _child(case: dict[str, Any], result_file: str, guard: int) -> None:
    """Load and run one case; write what happened and the memory it took. Runs in a forked process."""
    import resource

    # A corrupt shape must fail cleanly, not take the machine's memory: cap the address space
    # and edgekit's own tensor-size guard well below it.
    limit = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["EDGEKIT_MAX_TENSOR_BYTES"] = str(guard)
    from edgekit.errors import EdgekitError

    try:
        # The guard is read at import and the fork server imported the backends already.
        import edgekit.runtime.backends.litert as litert

        if hasattr(litert, "MAX_TENSOR_BYTES"):
            litert.MAX_TENSOR_BYTES = guard
    except ImportError:
        pass
    reset_peak()
    start = self_status("VmRSS")
    # stage says where an exception came from: load, feed (building inputs from the specs), run.
    outcome: dict[str, Any] = {"reached_invoke": False, "feed_bytes": 0, "stage": "load"}
    try:
        from edgekit.runtime import load
        from edgekit.runtime.bench import synthetic_feeds

        s = load(case["file"], num_threads=1)
        outcome["stage"] = "feed"
        if case.get("feed"):
            feeds, outcome["feed_bytes"] = build_feeds(s.inputs, case["feed"])
            runs = [feeds]
        else:
            # Batch 1 as stored, then batch 3: the resize path re-plans every tensor from the (mutated) shapes.
            runs = [synthetic_feeds(s.inputs, 1), synthetic_feeds(s.inputs, 3)]
        outcome["reached_invoke"], outcome["stage"] = True, "run"
        for feeds in runs:
            s.run(feeds)
        outcome["result"] = "ran"
    except EdgekitError as exc:
        outcome.update(result="error", message=" ".join(str(exc).split())[:200], type=type(exc).__name__)
    except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer is looking for
        outcome.update(result="uncaught", message=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    outcome["peak_delta"] = max(0, self_status("VmHWM") - start)
    Path(result_file).write_text(json.dumps(outcome))


@dataclass
class FuzzReport:
    """Counts per outcome and per mutator, reached-invoke counts, memory figures, and the cases that broke the rules."""

    counts: Counter = field(default_factory=Counter)
    by_mutation: dict[str, Counter] = field(default_factory=dict)
    reached_invoke: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    clean_peak: int = 0  # bytes the clean model's load + run grew the child's RSS by
    mem_limit: int = 0  # bytes above which a case (less its feed allowance) counts as "memory"
    max_peak: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def bad(self) -> int:
        return sum(self.counts[k] for k in BAD)

    def invoke_share(self, kinds: Sequence[str] | None = None) -> float:
        """Share of cases (of ``kinds``, default all) whose model loaded and whose run was attempted."""
        kinds = list(self.by_mutation) if kinds is None else [k for k in kinds if k in self.by_mutation]
        total = sum(sum(self.by_mutation[k].values()) for k in kinds)
        return sum(self.reached_invoke[k] for k in kinds) / total if total else 0.0

    def table(self) -> list[str]:
        """One line per mutator: ok / clean error / reached invoke / crash / hang / uncaught / memory."""
        lines = [f"  {'mutator':18s} {'cases':>5s} {'ok':>5s} {'error':>5s} {'invoke':>6s} {'crash':>5s} {'hang':>5s} "
                 f"{'uncaught':>8s} {'memory':>6s}"]
        for kind, c in self.by_mutation.items():
            lines.append(f"  {kind:18s} {sum(c.values()):5d} {c['ran']:5d} {c['error']:5d} {self.reached_invoke[kind]:6d} "
                         f"{c['crash']:5d} {c['hang']:5d} {c['uncaught']:8d} {c['memory']:6d}")
        return lines


def run_cases(jobs: list[tuple[str, dict[str, Any]]], target: Callable[..., None], args: tuple[Any, ...] = (), *,
              timeout: float, workers: int, folder: Path,
              on_result: Callable[[str, dict[str, Any], dict[str, Any]], None]) -> None:
    """Run ``target(case, result_file, *args)`` per job in a forked child (``workers`` at once).

    ``on_result(kind, case, outcome)`` gets the child's JSON outcome, or ``{"result": "hang"}`` /
    ``{"result": "crash", ...}`` when it outlived ``timeout`` or died. Shared with the manifest and
    payload fuzzers (:mod:`tools.fuzz_manifest`).

    Example:
        >>> run_cases([], _child, timeout=1, workers=1, folder=Path("."), on_result=print)
    """
    ctx = _context()
    pending = list(enumerate(jobs))
    running: list[tuple[Any, str, dict[str, Any], Path, float]] = []
    try:
        while pending or running:
            while pending and len(running) < workers:
                i, (kind, case) = pending.pop(0)
                res = folder / f"r{i:05d}.json"
                p = ctx.Process(target=target, args=(case, str(res), *args))
                p.start()
                running.append((p, kind, case, res, time.perf_counter()))
            time.sleep(0.002)
            still = []
            for p, kind, case, res, started in running:
                if p.is_alive() and time.perf_counter() - started < timeout:
                    still.append((p, kind, case, res, started))
                    continue
                if p.is_alive():
                    p.kill()
                    p.join()
                    outcome: dict[str, Any] = {"result": "hang"}
                else:
                    p.join()
                    if p.exitcode != 0:
                        outcome = {"result": "crash", "message": f"exit code {p.exitcode}"}
                    else:
                        outcome = json.loads(res.read_text()) if res.exists() else {"result": "crash", "message": "no result"}
                on_result(kind, case, outcome)
            running = still
    finally:
        for p, *_ in running:
            p.kill()


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    preload = ["edgekit.runtime", "edgekit.runtime.backends.litert", "edgekit.runtime.bench", "tools.fuzz",
               "edgekit.runtime.backends.onnxruntime", "onnxruntime", "ai_edge_litert.interpreter",
               "edgekit.runtime.serve"]
    ctx.set_forkserver_preload(preload)  # modules that fail to import are skipped by the fork server
    return ctx


def run_files(files: Sequence[str | os.PathLike[str]], *, timeout: float = 30.0, guard: int = DEFAULT_GUARD) -> list[dict[str, Any]]:
    """Load and run each file in a fuzz child (as :func:`fuzz` does its cases); the outcomes in order.

    For replaying a finding: some engine crashes depend on the heap, so the fork server's children
    show them where a fresh interpreter may not.

    Example:
        >>> [o["result"] for o in run_files(["model.tflite"])]  # doctest: +SKIP
        ['ran']
    """
    outcomes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") as tmp:
        run_cases([("file", {"file": str(f)}) for f in files], _child, (guard,), timeout=timeout, workers=1,
                  folder=Path(tmp), on_result=lambda k, c, o: outcomes.append(o))
    return outcomes


def fuzz(model: str | os.PathLike[str], n: int = 100, *, seed: int = 0, timeout: float = 30.0, workers: int = 2,
         mutators: str | Sequence[str] = "bytes", mem_factor: float = 4.0, guard: int = DEFAULT_GUARD,
         keep_dir: str | os.PathLike[str] | None = None, progress: Callable[[int, int], None] | None = None) -> FuzzReport:
    """Mutate ``model`` ``n`` times (round-robin over ``mutators``) and load + run each case in its own subprocess.

    Args:
        model: A good model file (``.tflite`` or ``.onnx``).
        n: Number of cases.
        seed: Seeds the mutations (the same seed gives the same files).
        timeout: Seconds before a child counts as hung (and is killed).
        workers: Children running at once.
        mutators: A group (``"bytes"``, ``"structure"``, ``"feeds"``, ``"all"``, comma-separated) or
            a list of mutator names (see :func:`mutators_for`).
        mem_factor: A case whose peak RSS grows by more than this times the clean load's (at least
            :data:`MEM_FLOOR`), plus three times its feed's bytes, is a ``memory`` finding.
        guard: ``EDGEKIT_MAX_TENSOR_BYTES`` in the children.
        keep_dir: Keep the mutated files here (default: a temp folder, deleted).
        progress: Called with (done, n).

    Raises:
        RuntimeError: the clean model itself does not load and run in a child.

    Example:
        >>> r = fuzz("model.tflite", n=50, mutators="structure")  # doctest: +SKIP
        >>> r.bad, r.invoke_share() > 0.3  # doctest: +SKIP
        (0, True)
    """
    model = Path(model)
    data = model.read_bytes()
    suffix = model.suffix.lower()
    kinds = mutators_for(model, mutators) if isinstance(mutators, str) else list(mutators)
    rng = random.Random(seed)
    report = FuzzReport()
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") if keep_dir is None else None
    folder = Path(keep_dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    clean = folder / f"clean{suffix}"
    clean.write_bytes(data)
    try:
        # The memory yardstick: the clean model, measured the same way (forked, reset peak, load, run).
        base: list[dict[str, Any]] = []
        run_cases([("clean", {"file": str(clean)})] * 2, _child, (guard,), timeout=timeout, workers=1, folder=folder,
                  on_result=lambda k, c, o: base.append(o))
        if any(o.get("result") != "ran" for o in base):
            raise RuntimeError(f"the clean model {model.name} does not load and run in a fuzz child: {base}")
        report.clean_peak = max(o["peak_delta"] for o in base)
        report.mem_limit = int(mem_factor * max(report.clean_peak, MEM_FLOOR))
        for kind in dict.fromkeys(kinds[:n]):  # the table lists mutators in the order given
            report.by_mutation[kind] = Counter()
        jobs: list[tuple[str, dict[str, Any]]] = []
        for i in range(n):
            kind = kinds[i % len(kinds)]
            if kind in FEED_MUTATIONS:
                jobs.append((kind, {"file": str(clean), "feed": feed_spec(rng, kind), "what": kind}))
                continue
            try:
                new, what = mutate_file(data, suffix, rng, kind)
            except ValueError as exc:  # a structure mutator whose drawn values could not be encoded
                new, what = mutate(data, rng, "flip_bits"), f"{kind} fell back to flip_bits ({exc})"
            f = folder / f"m{i:05d}-{kind}{suffix}"
            f.write_bytes(new)
            jobs.append((kind, {"file": str(f), "what": what}))
        done = 0

        def record(kind: str, case: dict[str, Any], outcome: dict[str, Any]) -> None:
            nonlocal done
            peak = int(outcome.get("peak_delta", 0))
            report.max_peak = max(report.max_peak, peak)
            if outcome["result"] in ("ran", "error") and peak > report.mem_limit + 3 * int(outcome.get("feed_bytes", 0)):
                outcome = {**outcome, "result": "memory", "message": f"peak RSS +{peak >> 20} MiB (clean load "
                           f"+{report.clean_peak >> 20} MiB, limit {report.mem_limit >> 20} MiB); was {outcome['result']}: "
                           f"{outcome.get('message', '')}"}
            report.counts[outcome["result"]] += 1
            report.by_mutation.setdefault(kind, Counter())[outcome["result"]] += 1
            if outcome.get("reached_invoke"):
                report.reached_invoke[kind] += 1
            if outcome["result"] in BAD:
                report.failures.append({"file": Path(case["file"]).name, "mutation": kind, "what": case.get("what"),
                                        "feed": case.get("feed"), **outcome})
            done += 1
            if progress:
                progress(done, n)

        run_cases(jobs, _child, (guard,), timeout=timeout, workers=workers, folder=folder, on_result=record)
    finally:
        if tmp is not None:
            tmp.cleanup()
    report.seconds = round(time.perf_counter() - t0, 2)
    return report
