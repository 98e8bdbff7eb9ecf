"""Fuzzing of ``manifest.json``: a copy of a good output folder (artifacts hard-linked) with one
hostile manifest (types swapped, deep nesting, ``1e999``, NaN, paths with ``../``, missing keys,
unknown ``schema_version``, null sha256 ...) is loaded with :func:`edgekit.runtime.load` and its eval
data with :func:`edgekit.runtime.bench.load_eval`, in a forked child with a timeout
(:func:`tools.fuzz.run_cases`).

Fine: it runs, or a one-line :class:`~edgekit.errors.EdgekitError`. Findings: ``uncaught``,
``crash``, ``hang``, ``memory`` (peak RSS over ``mem_factor`` x the clean load's), ``multiline`` (an
error that is not one line) and ``escaped`` (a model outside the folder was loaded).

Example:
    >>> import random
    >>> text, what = mutate_manifest('{"schema_version": 1, "artifacts": []}', random.Random(0), "schema_version")
    >>> what.startswith("schema_version ->")
    True
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tools.fuzz import MEM_FLOOR, FuzzReport, reset_peak, run_cases, self_status

MANIFEST_BAD = ("uncaught", "crash", "hang", "memory", "multiline", "escaped")


def _nodes(d: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document (dict keys and list indices)."""
    out = [path]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _nodes(v, path + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d[:50]):
            out += _nodes(v, path + (i,))
    return out


def _get(d: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        d = d[p]
    return d


def _set(d: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(d, path[:-1])[path[-1]] = value


# Raw JSON text that json.dumps would not write but a hand-edited manifest can hold.
RAW_NUMBERS = ("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 5000, "18446744073709551616", "-0", "1e-999")
BAD_PATHS = ("../x.tflite", "../../etc/passwd", "/etc/passwd", "a/../../b.tflite", "", ".", "..", "tflite-int8.tflite\x00x",
             "x" * 5000, "~/m.tflite", "./", "manifest.json", "eval.npz")
SENTINEL = "\u0000EDGEKIT-RAW\u0000"


def _schema_version(d: dict, rng: random.Random) -> str:
    d["schema_version"] = rng.choice((0, 2, 999, "1", None, -1, 1.5, [1], True))
    return f"schema_version -> {d['schema_version']!r}"


def _type_swap(d: dict, rng: random.Random) -> str:
    path = rng.choice(_nodes(d)[1:])
    value = rng.choice(("x", 7, -1, 2.5, None, True, [], {}, [1, 2], {"a": 1}))
    _set(d, path, value)
    return f"{'.'.join(map(str, path))} -> {value!r}"


def _missing_key(d: dict, rng: random.Random) -> str:
    paths = [p for p in _nodes(d)[1:] if isinstance(p[-1], str)]
    path = rng.choice(paths)
    del _get(d, path[:-1])[path[-1]]
    return f"{'.'.join(map(str, path))} removed"


def _raw_number(d: dict, rng: random.Random) -> str:
    paths = [p for p in _nodes(d)[1:] if isinstance(_get(d, p), (int, float)) and not isinstance(_get(d, p), bool)]
    # Shapes, sizes and scales first: the numbers the runtime computes with.
    preferred = [p for p in paths if any(k in ("shape", "bytes", "scale", "zero_point", "samples", "schema_version") for k in p)]
    path = rng.choice(preferred if preferred and rng.random() < 0.8 else paths)
    raw = rng.choice(RAW_NUMBERS)
    _set(d, path, SENTINEL + raw)
    return f"{'.'.join(map(str, path))} -> {raw[:20]}"


def _bad_path(d: dict, rng: random.Random) -> str:
    where = rng.choice(("artifact", "artifact", "eval"))
    value = rng.choice(BAD_PATHS)
    if where == "eval" or not d.get("artifacts"):
        d.setdefault("eval_data", {})["file"] = value
        return f"eval_data.file -> {value[:30]!r}"
    a = rng.choice(d["artifacts"])
    a["path"] = value
    return f"artifact {a.get('target')} path -> {value[:30]!r}"


def _integrity(d: dict, rng: random.Random) -> str:
    a = rng.choice(d["artifacts"])
    choice = rng.randrange(2)
    if choice == 0:
        a["sha256"] = rng.choice((None, "", "0" * 64, "zz" * 32, "a" * 5000, 7))
        return f"artifact {a.get('target')} sha256 -> {str(a['sha256'])[:20]!r}"
    a["bytes"] = rng.choice((None, -1, 0, 10**30, "big", 1.5))
    return f"artifact {a.get('target')} bytes -> {a['bytes']!r}"


def _shapes(d: dict, rng: random.Random) -> str:
    specs = [s for a in d.get("artifacts", []) for s in (a.get("inputs") or []) + (a.get("outputs") or [])]
    specs += list(d.get("source", {}).get("inputs", []))
    if not specs:
        return _type_swap(d, rng)
    s = rng.choice(specs)
    s["shape"] = rng.choice(([-1, 8, 8, 1], [0], [], None, [10**12, 8, 8, 1], [1] * 1000, "8x8", [None] * 3, [[1]], [2**63, 1]))
    if rng.random() < 0.3:
        s["dtype"] = rng.choice(("object", "float1024", "", None, "V8", "<U5", "int4"))
    return f"spec {s.get('name')!r} shape -> {str(s['shape'])[:30]} dtype {s.get('dtype')!r}"


def _duplicate(d: dict, rng: random.Random) -> str:
    arts = d.get("artifacts") or [{}]
    k = rng.choice((2, 100, 2000))  # 2,000 x 4 entries is a ~12 MB manifest: over any sane cap, cheap on disk
    d["artifacts"] = (arts * k)[: k * len(arts)]
    return f"artifacts repeated to {len(d['artifacts'])}"


def _huge_string(d: dict, rng: random.Random) -> str:
    path = rng.choice(_nodes(d)[1:])
    _set(d, path, "x" * rng.choice((1 << 16, 8 << 20)))
    return f"{'.'.join(map(str, path))} -> a {'64 KiB' if len(_get(d, path)) < 1 << 20 else '8 MiB'} string"


DICT_MUTATIONS: dict[str, Callable[[dict, random.Random], str]] = {
    "schema_version": _schema_version, "type_swap": _type_swap, "missing_key": _missing_key, "raw_number": _raw_number,
    "bad_path": _bad_path, "integrity": _integrity, "shapes": _shapes, "duplicate": _duplicate, "huge_string": _huge_string,
}


def _raw_text(text: str, rng: random.Random) -> tuple[bytes, str]:
    choice = rng.randrange(6)
    b = text.encode()
    if choice == 0:
        return b[: rng.randrange(len(b))], "truncated"
    if choice == 1:
        depth = rng.choice((1000, 100_000))
        return ("[" * depth + "]" * depth).encode(), f"{depth}-deep JSON"
    if choice == 2:
        return b"\xef\xbb\xbf" + b, "UTF-8 BOM"
    if choice == 3:
        i = rng.randrange(len(b))
        return b[:i] + b"\xff\xfe" + b[i:], "invalid UTF-8"
    if choice == 4:
        return rng.choice((b"", b"null", b"[]", b"1", b'"x"', b"{}")), "not an object"
    return b.replace(b'"artifacts"', b'"artifacts": [], "artifacts"', 1), "duplicate key"


MANIFEST_MUTATIONS: list[str] = [*DICT_MUTATIONS, "raw_text"]


def mutate_manifest(text: str, rng: random.Random, kind: str | None = None) -> tuple[bytes, str]:
    """One hostile copy of a manifest's text and what was changed.

    Raises:
        ValueError: ``kind`` is unknown.

    Example:
        >>> mutate_manifest("{}", random.Random(0), "nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown manifest mutation 'nope'; known: schema_version, type_swap, missing_key, raw_number, bad_path, integrity, shapes, duplicate, huge_string, raw_text
    """
    kind = kind or rng.choice(MANIFEST_MUTATIONS)
    if kind == "raw_text":
        return _raw_text(text, rng)
    if kind not in DICT_MUTATIONS:
        raise ValueError(f"unknown manifest mutation {kind!r}; known: {', '.join(MANIFEST_MUTATIONS)}")
    d = json.loads(text)
    what = DICT_MUTATIONS[kind](d, rng)
    out = json.dumps(d, indent=1)
    # Raw numbers were written as marked strings: unquote them into the text as they are.
    while SENTINEL in out:
        i = out.index('"' + SENTINEL.replace("\u0000", "\\u0000"))
        j = out.index('"', i + 1)
        out = out[:i] + json.loads(out[i : j + 1])[len(SENTINEL):] + out[j + 1 :]
    return out.encode(), what


def _manifest_child(case: dict[str, Any], result_file: str, guard: int) -> None:
    """Load one mutated folder and its eval data and run one batch; write what happened."""
    import resource

    limit = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["EDGEKIT_MAX_TENSOR_BYTES"] = str(guard)
    reset_peak()
    start = self_status("VmRSS")
    outcome: dict[str, Any] = {"stage": "manifest"}
    from edgekit.errors import EdgekitError

    try:
        from edgekit.manifest import Manifest
        from edgekit.runtime import load
        from edgekit.runtime.bench import load_eval, synthetic_feeds

        folder = Path(case["folder"])
        m = Manifest.load(folder)
        outcome["stage"] = "load"
        s = load(folder, num_threads=1, **({"target": case["target"]} if case.get("target") else {}))
        if s.path is not None and not Path(s.path).resolve().is_relative_to(folder.resolve()):
            outcome.update(result="escaped", message=f"loaded {s.path}, outside {folder}")
        else:
            outcome["stage"] = "eval"
            load_eval(folder, m)
            outcome["stage"] = "run"
            s.run(synthetic_feeds(s.inputs, 1))
            outcome["result"] = "ran"
    except EdgekitError as exc:
        text = str(exc)
        outcome.update(result="error" if "\n" not in text.strip() else "multiline", message=" ".join(text.split())[:200],
                       type=type(exc).__name__)
    except BaseException as exc:  # noqa: BLE001 - what the fuzzer looks for
        outcome.update(result="uncaught", message=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    outcome["peak_delta"] = max(0, self_status("VmHWM") - start)
    Path(result_file).write_text(json.dumps(outcome))


def _case_folder(src: Path, dst: Path, manifest: bytes) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "manifest.json" and f.is_file():
            try:
                os.link(f, dst / f.name)  # artifacts are only read: hard links keep 1,000 cases cheap
            except OSError:
                shutil.copy2(f, dst / f.name)
    (dst / "manifest.json").write_bytes(manifest)


def fuzz_manifests(folder: str | os.PathLike[str], n: int = 100, *, seed: int = 0, timeout: float = 30.0, workers: int = 2,
                   mem_factor: float = 4.0, guard: int = 16 << 20, target: str | None = "tflite:int8") -> FuzzReport:
    """Load ``n`` copies of output ``folder`` with hostile manifests, each in a forked child.

    Example:
        >>> r = fuzz_manifests("out/", n=50)  # doctest: +SKIP
        >>> sum(r.counts[k] for k in MANIFEST_BAD)  # doctest: +SKIP
        0
    """
    src = Path(folder)
    text = (src / "manifest.json").read_text()
    rng = random.Random(seed)
    report = FuzzReport()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-mfuzz-") as tmp:
        work = Path(tmp)
        _case_folder(src, work / "clean" / "out", text.encode())
        base: list[dict[str, Any]] = []
        run_cases([("clean", {"folder": str(work / "clean" / "out"), "target": target})] * 2, _manifest_child, (guard,),
                  timeout=timeout, workers=1, folder=work, on_result=lambda k, c, o: base.append(o))
        if any(o.get("result") != "ran" for o in base):
            raise RuntimeError(f"the clean folder {src} does not load in a fuzz child: {base}")
        report.clean_peak = max(o["peak_delta"] for o in base)
        report.mem_limit = int(mem_factor * max(report.clean_peak, MEM_FLOOR))
        jobs = []
        for i in range(n):
            kind = MANIFEST_MUTATIONS[i % len(MANIFEST_MUTATIONS)]
            data, what = mutate_manifest(text, rng, kind)
            case = work / f"c{i:05d}" / "out"  # two levels deep, like the attack rows: ../../ stays in the work folder
            _case_folder(src, case, data)
            # Half the cases name the artifact, half let the loader choose (both paths read the manifest).
            jobs.append((kind, {"folder": str(case), "what": what, "target": target if i % 2 else None}))
        for kind in MANIFEST_MUTATIONS[:n]:
            report.by_mutation[kind] = Counter()

        def record(kind: str, case: dict[str, Any], outcome: dict[str, Any]) -> None:
            peak = int(outcome.get("peak_delta", 0))
            report.max_peak = max(report.max_peak, peak)
            if outcome["result"] in ("ran", "error") and peak > report.mem_limit:
                outcome = {**outcome, "result": "memory", "message": f"peak RSS +{peak >> 20} MiB; {outcome.get('message', '')}"}
            report.counts[outcome["result"]] += 1
            report.by_mutation[kind][outcome["result"]] += 1
            if outcome.get("stage") in ("run",) or outcome["result"] == "ran":
                report.reached_invoke[kind] += 1
            if outcome["result"] in MANIFEST_BAD:
                report.failures.append({"mutation": kind, "what": case["what"], "target": case.get("target"), **outcome})

        run_cases(jobs, _manifest_child, (guard,), timeout=timeout, workers=workers, folder=work, on_result=record)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def manifest_table(report: FuzzReport) -> list[str]:
    """One line per manifest mutator: ran / clean error / reached run / the findings."""
    lines = [f"  {'mutator':16s} {'cases':>5s} {'ran':>5s} {'error':>5s} " + " ".join(f"{k:>9s}" for k in MANIFEST_BAD)]
    for k, c in report.by_mutation.items():
        lines.append(f"  {k:16s} {sum(c.values()):5d} {c['ran']:5d} {c['error']:5d} " + " ".join(f"{c[b]:9d}" for b in MANIFEST_BAD))
    return lines
