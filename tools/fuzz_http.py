"""Fuzzing of ``edgekit serve``'s requests: mutated JSON / ``.npy`` / ``.npz`` bodies and headers
against a real ``edgekit serve`` subprocess on loopback (:class:`tools.serveproc.ServeProcess`).

Fine: 2xx or 4xx. Findings: ``5xx``, ``no_reply`` (dropped without an answer), ``crash`` (the server
died; it is restarted), ``memory`` (one request grew the server's peak RSS by more than
``mem_factor`` times a good request's, at least :data:`tools.fuzz.MEM_FLOOR`, plus 64x the body).

Example:
    >>> import random
    >>> sorted(PAYLOAD_MUTATIONS)[:3]
    ['content_length', 'content_type', 'headers']
    >>> headers, body, what = PAYLOAD_MUTATIONS["npy"](random.Random(0))
    >>> headers["Content-Type"]
    'application/x-npy'
"""

from __future__ import annotations

import io
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tools.fuzz import MEM_FLOOR, FuzzReport

PAYLOAD_BAD = ("5xx", "no_reply", "crash", "memory")


def _npy_bytes(a: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _npy_header(descr: str, shape: Any, fortran: Any = False, version: bytes = b"\x01\x00") -> bytes:
    h = ("{'descr': %r, 'fortran_order': %r, 'shape': %s, }" % (descr, fortran, shape)).encode()
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY" + version + len(h).to_bytes(2, "little") + h


def _json_body(rng: random.Random) -> dict[str, Any]:
    return {"inputs": {"image": [[[[rng.random()] for _ in range(8)] for _ in range(8)]]}}


def _p_json_values(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    body = _json_body(rng)
    choice = rng.randrange(8)
    raw = None
    if choice == 0:
        raw = json.dumps(body).replace(str(body["inputs"]["image"][0][0][0][0]), rng.choice(("NaN", "Infinity", "-Infinity", "1e999")), 1)
    elif choice == 1:
        body["inputs"]["image"][0][0][0][0] = rng.choice(("x", None, True, [], {}, [[1]]))
    elif choice == 2:
        raw = json.dumps(body).replace("[[[[", "[[[[" + "9" * rng.choice((400, 4301, 100_000)) + ", ", 1)
    elif choice == 3:
        body["inputs"]["image"] = [[[1.0]]]  # ragged / wrong rank
    elif choice == 4:
        body["inputs"]["image"] = body["inputs"]["image"] * rng.choice((0, 2, 5000))
    elif choice == 5:
        body["inputs"]["image"][0] = body["inputs"]["image"][0][:3]  # ragged
    elif choice == 6:
        body = rng.choice((None, 1, "x", [], [body], {"inputs": None}, {"inputs": []}, {"inputs": "image"}))
    else:
        raw = "[" * rng.choice((100, 1000, 5000, 50_000)) + "]" * rng.choice((0, 100, 5000))
    return {"Content-Type": "application/json"}, (raw if raw is not None else json.dumps(body)).encode(), f"json values #{choice}"


def _p_json_names(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    img = _json_body(rng)["inputs"]["image"]
    name = rng.choice(("", "imagex", "image\x00", "ü" * 100, "x" * 100_000, "__proto__", "0"))
    body = rng.choice(({"inputs": {name: img}}, {"inputs": {"image": img, name: img}}, {"inputs": {}}, {"outputs": {}},
                       {"inputs": {"image": img}, "extra": [1] * 1000}))
    return {"Content-Type": "application/json"}, json.dumps(body).encode(), f"json names {name[:10]!r}"


def _p_json_text(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    good = json.dumps(_json_body(rng)).encode()
    choice = rng.randrange(6)
    if choice == 0:
        body = good[: rng.randrange(len(good))]
    elif choice == 1:
        body = b"\xef\xbb\xbf" + good
    elif choice == 2:
        body = good.replace(b"0.", b"\xff.", 1)
    elif choice == 3:
        body = good.decode().encode("utf-16")
    elif choice == 4:
        body = b'{"inputs": {"image": [[[[0.5]]]]}, "inputs": {"image": 1}}'
    else:
        body = bytes(rng.randrange(256) for _ in range(rng.choice((1, 100, 4096))))
    return {"Content-Type": "application/json"}, body, f"json text #{choice}"


def _p_npy(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    import numpy as np

    good = _npy_bytes(np.zeros((1, 8, 8, 1), np.float32))
    choice = rng.randrange(9)
    if choice == 0:
        body = _npy_header(rng.choice(("<f4", "|O", "<U10", "V8", "<c8", ">f8", "|b1", "<M8[s]", "zz", "<f2")), "(1, 8, 8, 1)") + bytes(1024)
    elif choice == 1:
        body = _npy_header("<f4", rng.choice(("(1, 8, 8, 1, 1)", "(-1, 8, 8, 1)", "(0, 8, 8, 1)", "()", "(10**12, 8, 8, 1)",
                                              "(99999999999999999999, 8, 8, 1)", "(1, 8, 8)", "'x'", "(1.5,)")))
        body += bytes(256)
    elif choice == 2:
        body = _npy_header("<f4", "(1, 8, 8, 1)", fortran=rng.choice((True, "yes", None)))+ bytes(256)
    elif choice == 3:
        body = _npy_header("<f4", "(1, 8, 8, 1)", version=rng.choice((b"\x02\x00", b"\x03\x00", b"\x09\x09", b"\x00\x00"))) + bytes(256)
    elif choice == 4:
        body = good[: rng.randrange(len(good))]
    elif choice == 5:
        body = good + bytes(rng.choice((1, 3, 4096)))
    elif choice == 6:
        body = b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 200
    elif choice == 7:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle: must be refused
        body = buf.getvalue()
    else:
        a = rng.choice((np.full((1, 8, 8, 1), np.nan, np.float32), np.full((1, 8, 8, 1), 1e38, np.float32),
                        np.zeros((1, 8, 8, 1), np.int64), np.zeros((1, 8, 8, 1), np.uint8), np.zeros((1, 8, 8, 1), bool)))
        body = _npy_bytes(a)
    return {"Content-Type": "application/x-npy"}, body, f"npy #{choice}"


def _p_npz(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    import zipfile

    import numpy as np

    import warnings

    buf = io.BytesIO()
    choice = rng.randrange(7)
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore")  # the duplicate member name is the point
        arr = _npy_bytes(np.zeros((1, 8, 8, 1), np.float32))
        if choice == 0:
            z.writestr(rng.choice(("nope.npy", "image", "../image.npy", "image.npy/x", ".npy")), arr)
        elif choice == 1:
            for i in range(rng.choice((2, 500))):
                z.writestr(f"a{i}.npy", arr)
        elif choice == 2:
            z.writestr("image.npy", b"not an npy")
        elif choice == 3:
            z.writestr("image.npy", _npy_header("<f4", "(4000000, 8, 8, 1)"))  # claims 1 GB, holds nothing
        elif choice == 4:
            z.writestr("image.npy", _npy_bytes(np.zeros((1 << 14, 8, 8, 1), np.float32)))  # 4 MiB from a few KiB
        elif choice == 5:
            z.writestr("image.npy", arr)
            z.writestr("image.npy", arr)  # duplicate member name
        else:
            inner = io.BytesIO()
            np.savez_compressed(inner, image=np.zeros((1, 8, 8, 1), np.float32))
            z.writestr("image.npy", inner.getvalue())  # an npz inside an npz
    body = buf.getvalue()
    if rng.random() < 0.15:
        body = body[: rng.randrange(len(body))]
    return {"Content-Type": "application/x-npz"}, body, f"npz #{choice}"


def _p_content_type(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    import numpy as np

    body = rng.choice((json.dumps(_json_body(rng)).encode(), _npy_bytes(np.zeros((1, 8, 8, 1), np.float32))))
    ct = rng.choice(("", "text/plain", "application/json; charset=utf-16", "application/x-npy; x=" + "y" * 5000,
                     "APPLICATION/JSON", "application/json, application/x-npy", "multipart/form-data; boundary=x",
                     "application/x-npz", "application/json\x00", "*/*"))
    headers = {"Content-Type": ct} if ct or rng.random() < 0.5 else {}
    if rng.random() < 0.3:
        headers["Accept"] = rng.choice(("application/x-npz", "text/html", "*/*", "x" * 1000))
    return headers, body, f"content-type {ct[:30]!r}"


def _p_content_length(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    # Values the server must refuse from the header alone (it must not wait for a body it cannot size).
    value = rng.choice(("-1", "²", "٣", "1e3", "0x10", " 12", "12 12", "99999999999999999999999", "", "+5", "1_000", "３"))
    return {"Content-Type": "application/x-npy", "Content-Length": value}, b"", f"content-length {value!r}"


def _p_headers(rng: random.Random) -> tuple[dict[str, str], bytes, str]:
    import numpy as np

    body = _npy_bytes(np.zeros((1, 8, 8, 1), np.float32))
    choice = rng.randrange(6)
    headers = {"Content-Type": "application/x-npy"}
    if choice == 0:
        headers["X-Pad"] = "x" * rng.choice((1000, 60_000, 70_000))
    elif choice == 1:
        for i in range(rng.choice((50, 150))):
            headers[f"X-H{i}"] = "v"
    elif choice == 2:
        headers["Host"] = rng.choice(("evil.example", "", "127.0.0.1:1", "localhost", "[::1]", "a" * 300))
    elif choice == 3:
        headers["Authorization"] = rng.choice(("Bearer x", "Bearer " + "a" * 10_000, "Basic Og==", "\xff"))
    elif choice == 4:
        headers["Expect"] = "100-continue"
    else:
        headers["Transfer-Encoding"] = rng.choice(("chunked", "gzip", "identity, chunked"))
    return headers, body, f"headers #{choice}"


PAYLOAD_MUTATIONS: dict[str, Callable[[random.Random], tuple[dict[str, str], bytes, str]]] = {
    "json_values": _p_json_values, "json_names": _p_json_names, "json_text": _p_json_text, "npy": _p_npy, "npz": _p_npz,
    "content_type": _p_content_type, "content_length": _p_content_length, "headers": _p_headers,
}


def fuzz_payloads(folder: str | os.PathLike[str], n: int = 200, *, seed: int = 0, mem_factor: float = 4.0,
                  serve_args: tuple[str, ...] = ("--target", "tflite:int8"), timeout: float = 30.0) -> FuzzReport:
    """Send ``n`` mutated requests to an ``edgekit serve`` subprocess on ``folder``; count what came back.

    ``report.counts`` keys: ``2xx``, ``4xx``, ``5xx``, ``no_reply``, ``crash``, ``memory``;
    findings are :data:`PAYLOAD_BAD`. A crashed server is restarted for the next request.

    Example:
        >>> r = fuzz_payloads("out/", n=100)  # doctest: +SKIP
        >>> sum(r.counts[k] for k in PAYLOAD_BAD)  # doctest: +SKIP
        0
    """
    import numpy as np

    from tools.serveproc import ServeProcess, proc_status, request

    rng = random.Random(seed)
    report = FuzzReport()
    t0 = time.perf_counter()
    good = _npy_bytes(np.zeros((1, 8, 8, 1), np.float32))
    kinds = list(PAYLOAD_MUTATIONS)
    for k in kinds[:n]:
        report.by_mutation[k] = Counter()
    srv = ServeProcess(folder, *serve_args)
    srv.start()
    try:
        def peak_of(send: Callable[[], Any]) -> tuple[Any, int]:
            try:
                Path(f"/proc/{srv.pid}/clear_refs").write_text("5")
            except OSError:
                pass
            before = proc_status(srv.pid, "VmRSS")
            r = send()
            return r, max(0, proc_status(srv.pid, "VmHWM") - before)

        deltas = [peak_of(lambda: request(srv.port, "POST", "/predict", good, {"Content-Type": "application/x-npy"}))[1]
                  for _ in range(3)]
        report.clean_peak = max(deltas)
        report.mem_limit = int(mem_factor * max(report.clean_peak, MEM_FLOOR))
        for i in range(n):
            kind = kinds[i % len(kinds)]
            headers, body, what = PAYLOAD_MUTATIONS[kind](rng)
            path = "/predict" if rng.random() > 0.05 else rng.choice(("/predict?x=1", "/predict/", "//predict", "/%00", "/" + "a" * 9000))
            raw = None
            if kind == "content_length" or any(not v.isascii() for v in headers.values()):
                raw = ("".join(f"{k}: {v}\r\n" for k, v in {"Host": f"127.0.0.1:{srv.port}", "Connection": "close", **headers}.items())
                       ).encode("utf-8")
            r, peak = peak_of(lambda: request(srv.port, "POST", path, body, headers, timeout=timeout, raw_headers=raw))
            report.max_peak = max(report.max_peak, peak)
            if not srv.running():
                outcome = "crash"
            elif r.status is None:
                outcome = "no_reply"
            elif r.status >= 500:
                outcome = "5xx"
            elif peak > report.mem_limit + 64 * len(body):
                outcome = "memory"
            else:
                outcome = f"{r.status // 100}xx"
            report.counts[outcome] += 1
            report.by_mutation[kind][outcome] += 1
            if r.status is not None and r.status < 300:
                report.reached_invoke[kind] += 1
            if outcome in PAYLOAD_BAD:
                report.failures.append({"mutation": kind, "what": what, "path": path[:40], "result": outcome,
                                        "status": r.status, "message": (r.line() or r.error)[:160], "peak_delta": peak,
                                        "server": " | ".join(srv.output[-2:])[:200] if outcome == "crash" else ""})
            if outcome == "crash":
                srv.stop()
                srv = ServeProcess(folder, *serve_args)
                srv.start()
    finally:
        srv.stop()
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def payload_table(report: FuzzReport) -> list[str]:
    """One line per payload mutator: 2xx / 4xx / 5xx / no reply / crash / memory."""
    lines = [f"  {'mutator':16s} {'sent':>5s} {'2xx':>5s} {'4xx':>5s} {'5xx':>5s} {'no_reply':>8s} {'crash':>5s} {'memory':>6s}"]
    for k, c in report.by_mutation.items():
        lines.append(f"  {k:16s} {sum(c.values()):5d} {c['2xx']:5d} {c['4xx']:5d} {c['5xx']:5d} {c['no_reply']:8d} {c['crash']:5d} {c['memory']:6d}")
    return lines
