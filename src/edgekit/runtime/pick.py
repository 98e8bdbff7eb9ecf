"""A measured artifact choice: time the candidates of an output folder on this device, keep the fastest.

The rule table (:mod:`edgekit.runtime.choose`) guesses from the device class; only a measurement
knows (ANCHORS: full int8 TFLite was 2× faster than fp32 on one x86 CPU and no faster on an
AVX2-only EPYC; dynamic-range int8 was 2-3.3× *slower* on both). :func:`pick` times every artifact
that passed validation and runs here, for a short bounded budget, and takes the fastest by p50.

How it times, and why:

* All candidates are loaded first, each gets a first inference and a warm-up, then the timed part
  runs in short **interleaved rounds** (every candidate one slot per round, the order rotating, a
  slot being ~``budget / (10 * candidates)``): a noisy neighbour or a frequency change then hits all
  candidates alike instead of whichever ran during it. Each slot starts with one untimed call and
  has at least three timed ones: the first call after another model ran pays for evicted caches and
  sleeping thread pools, which a service running one model does not. Before each slot it waits,
  untimed, until the previous candidate's engine threads stop spinning
  (:func:`edgekit.runtime.bench.timing.settle`): an onnxruntime pool spins for tens of ms after
  a run and halved the speed of whichever candidate came next.
* A candidate's p50 is the **median of its per-round medians**: robust to a whole round disturbed.
* What is timed is ``session.run(float feeds)``, what a caller pays: for int8 I/O that includes
  quantizing the input and dequantizing the output.
* **Tie rule** (:func:`edgekit.runtime.choose.decide`): candidates within :data:`TIE` (3 %) of the fastest are treated as equally fast (a
  smaller gap is within run-to-run noise on a shared CPU), and the first of them in the rule table's
  order wins, so a measurement never trades the prior's choice for a coin flip.
* "Within the accuracy budget" is the manifest's validation verdict (``passed`` means inside the
  recipe's tolerance); ``max_accuracy_drop`` filters further on the recorded metrics.

A decision is cached per device (:func:`edgekit.runtime.device.device_key`), the folder's artifacts
(target, status, sha256), batch size, threads and engine options, in ``$EDGEKIT_CACHE/pick/`` (default
``~/.cache/edgekit/pick/``); ``write=True`` also stores it in ``pick.json`` beside the manifest, where
identical devices of a fleet find it and any other device ignores it with a note. Re-converting an
artifact changes its sha256, so the old decision no longer matches: it is stale, never wrong.

Example:
    >>> from edgekit.runtime.pick import pick
    >>> p = pick("out/", budget=2.0)                         # doctest: +SKIP
    >>> p.chosen, p.cached, [t.target for t in p.timings]   # doctest: +SKIP
    ('tflite:int8', False, ['tflite:fp32', 'tflite:int8', 'onnx:fp32'])
    >>> pick("out/").cached                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.checks import positive_int
from edgekit.errors import EdgekitError, InputError, ModelError
from edgekit.manifest import Artifact, Manifest, atomic_write_bytes
from edgekit.runtime.bench.timing import settle
from edgekit.runtime.choose import PICK_SCHEMA as SCHEMA
from edgekit.runtime.choose import TIE, Pick, Timing, accuracy_drop_bound, candidates, decide, validation_summary

PICK_NAME = "pick.json"
DEFAULT_BUDGET = 3.0  # seconds for the whole folder: ~25 interleaved calls each of 3 MobileNetV2 224² on 2 cores
MAX_BUDGET = 600.0
ROUNDS = 10  # at most; each round gives every candidate one slot of about budget / (ROUNDS * candidates)
MIN_SLOT_CALLS = 3  # timed calls per slot, after its untimed one, unless MIN_ROUNDS of them do not fit the budget
MIN_ROUNDS = 3  # a median of fewer per-round medians is not robust to one disturbed round
WARMUP_SHARE = 0.15  # of the budget, for warm-up (the rest is the timed rounds)
MAX_CALLS_PER_SLOT = 1000
# Part of the cache key: decisions timed the old way (no settling, see bench.timing.settle) are measured again.
TIMING_METHOD = 2


# ------------------------------------------------------------------ cache


def cache_key(manifest: Manifest, device_key: str, batch_size: int, num_threads: int,
              max_accuracy_drop: float | None = None, engine_options: Mapping[str, Any] | None = None) -> str:
    """The key a decision is stored under: it changes whenever the decision might.

    Covers the device, every artifact's target, status and sha256 (a re-converted or re-validated
    artifact makes old decisions stale), batch size, threads, the accuracy filter and engine options.

    Example:
        >>> m = Manifest({}, {}, (Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a", sha256="00"),))
        >>> cache_key(m, "dev", 1, 2) == cache_key(m, "dev", 1, 2), cache_key(m, "dev", 1, 2) == cache_key(m, "dev", 8, 2)
        (True, False)
    """
    facts = {
        "schema": SCHEMA,
        "timing": TIMING_METHOD,
        "device": device_key,
        "artifacts": [[a.target, a.status, a.sha256] for a in manifest.artifacts],
        "batch_size": batch_size,
        "num_threads": num_threads,
        "max_accuracy_drop": max_accuracy_drop,
        "engine_options": {k: repr(v) for k, v in sorted((engine_options or {}).items())},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def user_cache_file(key: str) -> Path:
    """Where this device keeps the decision for ``key``: ``$EDGEKIT_CACHE/pick/<key>.json``.

    Example:
        >>> user_cache_file("abc").name
        'abc.json'
    """
    # edgekit.cache: the one cache root ($EDGEKIT_CACHE, default ~/.cache/edgekit) every cache shares.
    from edgekit.cache import cache_dir

    return cache_dir("pick") / f"{key}.json"


def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        notes.append(f"ignored unreadable {path}: {exc}")
        return None


def _from_folder(folder: Path, key: str, device_key: str, batch_size: int, num_threads: int, notes: list[str]) -> Pick | None:
    path = folder / PICK_NAME
    doc = _read_json(path, notes)
    if doc is None:
        return None
    entries = doc.get("picks") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        notes.append(f"ignored {path}: no 'picks' list")
        return None
    mine = [e for e in entries if isinstance(e, dict) and e.get("device_key") == device_key]
    for e in mine:
        if e.get("key") == key:
            try:
                return Pick.from_record(e)
            except ValueError as exc:
                notes.append(f"ignored an entry of {path}: {exc}")
    if any(e.get("batch_size") == batch_size and e.get("num_threads") == num_threads for e in mine):
        notes.append(f"{path} has a pick for this device that is stale (the artifacts or filters changed since): measuring again")
    elif not mine and entries:
        others = sorted({str(e.get("device", "?")) for e in entries if isinstance(e, dict)})
        notes.append(f"{path} was measured on other devices ({', '.join(others)}): not used here")
    return None


def _from_user_cache(key: str, notes: list[str]) -> tuple[Pick, Path] | None:
    path = user_cache_file(key)
    doc = _read_json(path, notes)
    if doc is None:
        return None
    try:
        p = Pick.from_record(doc)
    except ValueError as exc:
        notes.append(f"ignored {path}: {exc}")
        return None
    return (p, path) if p.key == key else None


def write_folder_pick(folder: str | os.PathLike[str], p: Pick) -> Path:
    """Store ``p`` in ``pick.json`` beside the manifest, replacing this device's entry for the same settings.

    Entries of other devices (or other batch/threads) are kept, so one folder can carry decisions for
    each kind of device in a fleet.

    Example:
        >>> write_folder_pick("out/", pick("out/"))  # doctest: +SKIP
        PosixPath('out/pick.json')
    """
    path = Path(folder) / PICK_NAME
    doc = _read_json(path, [])
    entries = doc.get("picks", []) if isinstance(doc, dict) and isinstance(doc.get("picks"), list) else []
    rec = p.record()
    same = ("device_key", "batch_size", "num_threads", "max_accuracy_drop", "engine_options")
    entries = [e for e in entries if not (isinstance(e, dict) and all(e.get(k) == rec[k] for k in same))]
    entries.append(rec)
    body = {"schema": SCHEMA, "picks": entries}
    return atomic_write_bytes(path, (json.dumps(body, indent=2) + "\n").encode())


# ------------------------------------------------------------------ timing


def float_feeds(session: Any, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs as a caller passes them: float for quantized inputs (the session quantizes them).

    Example:
        >>> from edgekit.runtime import load
        >>> float_feeds(load("out/", target="tflite:int8"), 2)[0].dtype  # doctest: +SKIP
        dtype('float32')
    """
    from edgekit.runtime.bench.timing import synthetic_feeds
    from edgekit.runtime.quantize import dequantize

    raw = synthetic_feeds(session.inputs, batch_size, seed)
    return [dequantize(x, s) if s.quantized and session.quantize_io else x for x, s in zip(raw, session.inputs)]


class _Slot:
    """One loaded candidate and what was measured on it so far."""

    def __init__(self, artifact: Artifact, prior: int, session: Any, feeds: list[np.ndarray], load_ms: float) -> None:
        self.artifact, self.prior, self.session, self.load_ms = artifact, prior, session, load_ms
        self.feeds: Any = feeds[0] if len(feeds) == 1 else feeds  # one array: Session.run's fast path
        self.first_ms = 0.0
        self.estimate_s = 0.0
        self.calls = 1
        self.rounds: list[list[float]] = []

    def call(self) -> float:
        t = time.perf_counter()
        self.session.run(self.feeds)
        return time.perf_counter() - t

    def timing(self) -> Timing:
        samples = np.asarray([s for r in self.rounds for s in r]) * 1e3
        medians = [float(np.median(r)) * 1e3 for r in self.rounds]
        return Timing(self.artifact.target, self.prior, round(float(np.median(medians)), 4),
                      round(float(np.percentile(samples, 90)), 4), int(samples.size),
                      tuple(round(m, 4) for m in medians), round(self.first_ms, 3), round(self.load_ms, 1),
                      validation_summary(self.artifact))


def _open(folder: Path, artifacts: Sequence[Artifact], batch_size: int, num_threads: int, verify: bool,
          quantize_io: bool, engine_options: Mapping[str, Any], skipped: list[str]) -> list[_Slot]:
    from edgekit.runtime.artifacts import open_artifact, options_for

    slots = []
    for prior, a in enumerate(artifacts):
        # Options one backend takes (LiteRT's use_xnnpack) mean nothing to another: give each its own.
        opts = options_for(a.format, dict(engine_options))
        t = time.perf_counter()
        try:
            s = open_artifact(folder, a, verify=verify, quantize_io=quantize_io, num_threads=num_threads, **opts)
            load_ms = (time.perf_counter() - t) * 1e3
            slot = _Slot(a, prior, s, float_feeds(s, batch_size), load_ms)
            slot.first_ms = slot.call() * 1e3
        except EdgekitError as exc:
            skipped.append(f"{a.target}: not timed (batch {batch_size}): {exc}")
            continue
        slots.append(slot)
    return slots


def _measure(slots: list[_Slot], budget: float, rounds: int) -> None:
    n = len(slots)
    # Warm-up: at least two calls each (the first one after loading is already done), at most its
    # share of the budget; the median of these is the per-call estimate that sizes the slots.
    warm_each = budget * WARMUP_SHARE / n
    for s in slots:
        settle()
        times, t0 = [], time.perf_counter()
        while len(times) < 2 or (time.perf_counter() - t0 < warm_each and len(times) < 50):
            times.append(s.call())
        s.estimate_s = float(np.median(times))
    # Several short rounds rather than one long run each: a burst of load from a neighbour (seconds)
    # then spans rounds of every candidate instead of all of one candidate's time. But a slot is not
    # one call: the first call after another model ran may pay for caches that model evicted and
    # for waking thread pools, a cost a service running one model never pays. So each slot is one
    # untimed call and at least MIN_SLOT_CALLS timed ones, with fewer rounds when that does not fit.
    timed = budget * (1 - WARMUP_SHARE)
    for s in slots:
        est = max(s.estimate_s, 1e-6)
        calls = timed / (rounds * n * est)
        if calls < MIN_SLOT_CALLS:
            # As many as MIN_SLOT_CALLS, if MIN_ROUNDS rounds of them (plus the untimed call) fit.
            calls = min(MIN_SLOT_CALLS, timed / (MIN_ROUNDS * n * est) - 1)
        s.calls = int(min(MAX_CALLS_PER_SLOT, max(1, calls)))
    t0 = time.perf_counter()
    r, waited = 0, 0.0
    # Stop when the timed budget is spent (a model slower than its estimate gets fewer rounds, not
    # more time), but never before MIN_ROUNDS rounds: a median of fewer is not robust. Settling
    # is not part of the budget.
    while r < MIN_ROUNDS or (r < rounds and time.perf_counter() - t0 - waited < timed):
        for s in slots[r % n:] + slots[:r % n]:  # rotate so nobody always runs right after the same neighbour
            waited += settle()
            if s.calls >= 2:
                s.call()  # untimed: re-warm after the previous candidate (for one-call slots it would double the cost)
            s.rounds.append([s.call() for _ in range(s.calls)])
        r += 1


# ------------------------------------------------------------------ the entry point


def pick(path: str | os.PathLike[str], *, batch_size: int = 1, num_threads: int | None = None,
         budget: float | None = None, max_accuracy_drop: float | None = None, force: bool = False,
         use_cache: bool = True, write: bool = False, verify: bool = True, quantize_io: bool = True,
         engine_options: Mapping[str, Any] | None = None, device: Mapping[str, Any] | None = None,
         rounds: int = ROUNDS, tie: float = TIE, manifest: Manifest | None = None) -> Pick:
    """The artifact of an output folder that runs fastest on this device, measured or from the cache.

    Looks in ``pick.json`` beside the manifest (an entry for this device and these settings), then
    the user cache; otherwise times the candidates (see the module notes) and caches the decision.

    Args:
        path: An edgekit output folder (or its ``manifest.json``).
        batch_size: Samples per timed call.
        num_threads: Engine threads (default: all cores this process may use).
        budget: Seconds for warm-up and timed rounds together (default :data:`DEFAULT_BUDGET`);
            loading the candidates comes on top, and each candidate gets at least 2 warm-up calls
            and :data:`MIN_ROUNDS` timed ones however slow it is.
        max_accuracy_drop: Also drop candidates whose recorded accuracy drop (or its top-1 bound)
            exceeds this many points; default: the validation verdict alone.
        force: Measure again even if a cached decision exists, and replace it in the caches.
        use_cache: Read cached decisions (``pick.json``, then the user cache) and store the new one in
            the user cache; ``False`` measures and stores nothing there (``write`` still writes ``pick.json``).
        write: Also store the decision in ``pick.json`` beside the manifest, for identical devices.
        verify: Check each candidate's size and sha256 before timing it.
        quantize_io: As in :func:`edgekit.runtime.load`; int8 I/O conversion is part of what is timed.
        engine_options: Backend options (``use_xnnpack`` ...): each backend gets those it takes.
        device: :func:`edgekit.runtime.device.device_info` of this device (tests pass a variant).
        rounds: Interleaved timing rounds at most (at least :data:`MIN_ROUNDS` however long they take).
        tie: Relative p50 gap under which the rule table's order decides.
        manifest: The folder's manifest if the caller has already read it.

    Returns:
        A :class:`Pick`; ``cached`` says whether it was read instead of measured.

    Raises:
        ModelError: not an output folder; no artifact that passed validation can run here.
        InputError: a bad batch size, thread count, budget or accuracy limit.

    Example:
        >>> p = pick("out/", batch_size=1, budget=2.0)  # doctest: +SKIP
        >>> p.explain()  # doctest: +SKIP
        'tflite:int8: measured fastest here (p50 2.31 ms vs tflite:fp32 4.46 ms); batch 1, 2 threads; measured now in 2.9 s'
    """
    from edgekit.runtime.device import device_info, device_key, fingerprint
    from edgekit.runtime.artifacts import is_output_folder

    t_start = time.perf_counter()
    budget = DEFAULT_BUDGET if budget is None else budget
    _check_args(batch_size, num_threads, budget, max_accuracy_drop, rounds, tie)
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist")
    if not is_output_folder(p):
        raise ModelError(f"{p} is one model file, not an edgekit output folder: there is nothing to choose between")
    folder = p if p.is_dir() else p.parent
    manifest = manifest or Manifest.load(folder)
    info = dict(device) if device is not None else device_info()
    dkey = device_key(info)
    threads = int(num_threads or info.get("cores") or 1)  # what the backends default to: the usable cores
    options = dict(engine_options or {})
    key = cache_key(manifest, dkey, batch_size, threads, max_accuracy_drop, options)
    notes: list[str] = []

    if not force and use_cache:
        found = _from_folder(folder, key, dkey, batch_size, threads, notes)
        if found is not None:
            return dataclasses.replace(found, cached=True, source=str(folder / PICK_NAME), notes=tuple(notes),
                                       took_s=round(time.perf_counter() - t_start, 4))
        hit = _from_user_cache(key, notes)
        if hit is not None:
            found, file = hit
            if write:
                write_folder_pick(folder, found)
            return dataclasses.replace(found, cached=True, source=str(file), notes=tuple(notes),
                                       took_s=round(time.perf_counter() - t_start, 4))

    from edgekit.runtime.artifacts import runnable

    cands, skipped = candidates(manifest, info, runnable, max_accuracy_drop)
    if not cands:
        raise ModelError(f"no artifact in {folder} passed validation and can run here, so there is nothing to time "
                         f"({'; '.join(skipped) or 'no artifacts'})")
    rules_choice = cands[0].target
    slots = _open(folder, cands, batch_size, threads, verify, quantize_io, options, skipped)
    if not slots:
        raise ModelError(f"no candidate of {folder} could be run here ({'; '.join(skipped)})")
    if len(slots) > 1:
        _measure(slots, budget, rounds)
        timings = tuple(s.timing() for s in slots)
        chosen, reason = decide(timings, tie)
    else:
        timings = ()
        chosen, reason = slots[0].artifact.target, "the only artifact that passed validation and runs here"
    del slots  # free every engine before the caller loads the chosen one
    seconds = round(time.perf_counter() - t_start, 3)
    result = Pick(chosen, reason, timings, tuple(skipped), rules_choice, batch_size, threads, fingerprint(info), dkey,
                  key, {a.target: a.sha256 for a in manifest.artifacts},
                  datetime.now(timezone.utc).isoformat(timespec="seconds"), budget, seconds, max_accuracy_drop, options)
    source = None
    if timings:  # one candidate: nothing was measured, nothing worth remembering
        if use_cache:
            source = str(atomic_write_bytes(user_cache_file(key), (json.dumps(result.record(), indent=2) + "\n").encode()))
        if write:
            written = str(write_folder_pick(folder, result))
            if source:
                notes.append(f"also stored in {written} for identical devices")
            source = source or written
    return dataclasses.replace(result, source=source, notes=tuple(notes), took_s=round(time.perf_counter() - t_start, 4))


def _check_args(batch_size: int, num_threads: int | None, budget: float, max_accuracy_drop: float | None,
                rounds: int, tie: float) -> None:
    positive_int(batch_size, "batch size", error=InputError)  # the one rule for counts: bools refused too
    positive_int(num_threads, "threads", error=InputError, allow_none=True)
    if not (isinstance(budget, (int, float)) and 0 < budget <= MAX_BUDGET):
        raise InputError(f"budget must be > 0 and <= {MAX_BUDGET:g} seconds, got {budget!r}")
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:
        raise InputError(f"max accuracy drop must be >= 0 points, got {max_accuracy_drop!r}")
    if rounds < MIN_ROUNDS:
        raise InputError(f"rounds must be >= {MIN_ROUNDS}, got {rounds}")
    if not 0 <= tie < 1:
        raise InputError(f"tie must be in [0, 1), got {tie}")


__all__ = ["DEFAULT_BUDGET", "PICK_NAME", "SCHEMA", "TIE", "Pick", "Timing", "accuracy_drop_bound", "cache_key",
           "candidates", "decide", "float_feeds", "pick", "user_cache_file", "validation_summary", "write_folder_pick"]
