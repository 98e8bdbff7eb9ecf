"""Replay the attacks of issue #12 against ``edgekit serve`` and the CLI, on loopback, bounded in time.

Each row starts a fresh ``edgekit serve`` subprocess on (a copy of) the digits output folder
(``--target tflite:int8 --threads 1``), warms it with one good request, takes its RSS as the
baseline, resets its peak (``/proc/PID/clear_refs``, backed by a 5 ms ``VmRSS`` sampler), attacks,
then reads the peak, waits up to 3 s for RSS to settle and checks ``/healthz``. CLI rows run
``edgekit bench`` / ``edgekit serve`` with a timeout and take the child's own peak RSS from ``wait4``.

A row passes when every reply is a 4xx (rows that attack the file on disk: a 200 with the answer
from before) or the CLI exits non-zero with a one-line error (no traceback) in time; the server's
RSS after is within 10 % of its baseline; and it is still alive. Prints one line per attack and a
final table; exits 1 if any row fails. Nothing leaves 127.0.0.0/8.

Run: ``.venv/bin/python benchmarks/attack.py [--out DIR] [--only ROW,ROW] [--json FILE]``
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

# tools/ (the server harness) sits at the repository root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.serveproc import Reply, ServeProcess, request, run_cli  # noqa: E402

TARGET = "tflite:int8"
MiB = 1 << 20
RSS_SLACK = 0.10  # "RSS back within 10 % of its baseline"
CLI_TIMEOUT = 30.0  # seconds a CLI row may take before it counts as a hang
ATTACKER = "127.0.0.2"  # hogging sockets come from another loopback address than the normal client


@dataclass
class Row:
    """One attack's outcome."""

    name: str
    what: str
    status: str = ""
    passed: bool = False
    baseline: int = 0
    peak: int = 0
    after: int = 0
    alive: bool | None = None
    note: str = ""
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        mem = (f"peak {self.peak / MiB:7.0f} MiB  after {self.after / MiB:5.0f} MiB (base {self.baseline / MiB:4.0f})"
               if self.baseline else f"peak {self.peak / MiB:7.0f} MiB  {'(CLI)':>24s}")
        alive = "-" if self.alive is None else ("alive" if self.alive else "DEAD")
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.reasons)
        return f"{self.name:16s} {self.status[:58]:58s} {mem}  {alive:5s} {self.seconds:5.1f}s  {verdict}" + (
            f"  [{self.note}]" if self.note else "")


# ---------------------------------------------------------------- bodies


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def npz(compressed: bool = True, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


GOOD = npy(np.zeros((1, 8, 8, 1), np.float32))
NPY = {"Content-Type": "application/x-npy"}
NPZ = {"Content-Type": "application/x-npz"}
JSON = {"Content-Type": "application/json"}


def predict(port: int, body: bytes = GOOD, headers: dict[str, str] = NPY, **kw: Any) -> Reply:
    return request(port, "POST", "/predict", body, headers, **kw)


def is_4xx(r: Reply) -> bool:
    return r.status is not None and 400 <= r.status < 500


# ---------------------------------------------------------------- server rows


def server_row(row: Row, folder: Path, attack: Callable[[ServeProcess, Row], bool]) -> Row:
    """Start a server on ``folder``, warm it, baseline, ``attack`` (True when its replies were right), measure."""
    t0 = time.perf_counter()
    try:
        with ServeProcess(folder, "--target", TARGET) as srv:
            warm = predict(srv.port)
            if not warm.ok:
                row.status, row.reasons = f"warm-up {warm.line()}", ["the clean server did not answer a good request"]
                return row
            time.sleep(0.3)
            row.baseline = srv.rss()
            srv.reset_peak()
            replies_ok = attack(srv, row)
            row.peak = srv.peak()
            row.after = srv.settle(row.baseline)
            row.alive = srv.alive()
            if not srv.running():
                row.note = (row.note + " " if row.note else "") + f"server exited {srv.proc.returncode}: {' | '.join(srv.output[-2:])[:120]}"
    except RuntimeError as exc:
        row.status, row.reasons = str(exc)[:80], ["the server did not start"]
        return row
    finally:
        row.seconds = time.perf_counter() - t0
    if not replies_ok:
        row.reasons.append("reply")
    if row.after > row.baseline * (1 + RSS_SLACK):
        row.reasons.append(f"RSS after +{(row.after - row.baseline) / MiB:.0f} MiB over baseline")
    if not row.alive:
        row.reasons.append("server not alive")
    row.passed = not row.reasons
    return row


def one_request(body: bytes, headers: dict[str, str], **kw: Any) -> Callable[[ServeProcess, Row], bool]:
    def attack(srv: ServeProcess, row: Row) -> bool:
        r = predict(srv.port, body, headers, timeout=60, **kw)
        row.status = r.line()
        return is_4xx(r)

    return attack


def raw_request(head: bytes, body: bytes = b"") -> Callable[[ServeProcess, Row], bool]:
    def attack(srv: ServeProcess, row: Row) -> bool:
        r = request(srv.port, "POST", "/predict", body, raw_headers=head, timeout=30)
        row.status = r.line()
        return is_4xx(r)

    return attack


def hog_sockets(srv: ServeProcess, row: Row, idle: int = 64, trickle: int = 64, hold: float = 4.0) -> bool:
    socks: list[socket.socket] = []
    for _ in range(idle + trickle):
        try:
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=(ATTACKER, 0)))
        except OSError:
            break
    stop = threading.Event()

    def trickling() -> None:
        line = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\nContent-Length: 1000\r\n\r\n"
        i = 0
        while not stop.is_set():
            for s in socks[idle:]:
                try:
                    s.send(line[i % len(line):i % len(line) + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.2)

    t = threading.Thread(target=trickling, daemon=True)
    t.start()
    time.sleep(hold)
    r = predict(srv.port, timeout=30)
    stop.set()
    t.join()
    refused = 0
    for s in socks:
        try:
            s.setblocking(False)
            if b" 503 " in s.recv(4096)[:16]:
                refused += 1
        except OSError:
            pass
        s.close()
    health = request(srv.port, "GET", "/healthz", timeout=10).json() or {}
    busy = health.get("busy", "-")
    row.status = f"{r.line()[:20]} in {r.seconds * 1000:.0f} ms; {len(socks)} sockets, {refused} saw 503; /healthz busy={busy}"
    counted = not refused or (isinstance(busy, int) and busy >= refused)
    if not counted:
        row.note = f"{refused} 503s sent but /healthz counts {busy}"
    return r.ok and r.seconds < 5.0 and counted


def disk_change(change: Callable[[Path], None], served: Path) -> Callable[[ServeProcess, Row], bool]:
    """Change the served file on disk under a running server: it must go on answering what it answered."""

    def attack(srv: ServeProcess, row: Row) -> bool:
        before = predict(srv.port, npy(np.full((1, 8, 8, 1), 0.5, np.float32)))
        change(served)
        after = predict(srv.port, npy(np.full((1, 8, 8, 1), 0.5, np.float32)), timeout=30)
        health = request(srv.port, "GET", "/healthz", timeout=10)
        same = after.ok and before.json() is not None and after.json() is not None and \
            before.json().get("outputs") == after.json().get("outputs")
        row.status = f"/predict {after.line()[:40]}{' (same answer)' if same else ''}; /healthz {health.line()[:30]}"
        return same and health.ok

    return attack


def json_flood(srv: ServeProcess, row: Row) -> bool:
    # ~16 MB of JSON numbers (just under max_body): cheap to send, ~40x its size to parse.
    sample = json.dumps([[[0.5]] * 8] * 8)
    n = (16_000_000 - 30) // (len(sample) + 1)
    body = ('{"inputs": {"image": [' + ",".join([sample] * n) + "]}}").encode()
    replies: list[Reply] = []
    threads = [threading.Thread(target=lambda: replies.append(predict(srv.port, body, JSON, timeout=60, source=ATTACKER)))
               for _ in range(3)]
    for t in threads:
        t.start()
    worst = 0.0
    while any(t.is_alive() for t in threads):
        h = request(srv.port, "GET", "/healthz", timeout=30)
        worst = max(worst, h.seconds)
        time.sleep(0.05)
    for t in threads:
        t.join()
    row.status = f"{len(body) / 1e6:.0f} MB x3: " + ", ".join(sorted({r.line()[:24] for r in replies})) + f"; /healthz worst {worst * 1000:.0f} ms"
    return all(is_4xx(r) for r in replies) and worst < 2.0


# ---------------------------------------------------------------- CLI rows


def cli_row(row: Row, args: list[str], *, max_peak: int | None = None, may_serve: bool = False) -> Row:
    """Run the CLI; it must exit non-zero, in time, with a one-line error (and under ``max_peak`` bytes of RSS).

    ``may_serve``: ``edgekit serve`` starting up (bounded by ``max_peak``) is a pass too.
    """
    r = run_cli(args, timeout=CLI_TIMEOUT, stop_on=r"http://127\.0\.0\.1:\d+")
    row.seconds, row.peak = r["seconds"], r["peak"]
    # bench prints its results table (the failed target as a row) and then the error: the last line says it.
    lines = [ln for ln in r["output"].splitlines() if ln.strip() and not ln.startswith(("INFO:", "WARNING: All log messages"))]
    last = lines[-1] if lines else ""
    if r["hung"]:
        row.status = f"HUNG (killed after {CLI_TIMEOUT:.0f} s)"
        row.reasons.append("hang")
    elif r["stopped"]:
        row.status = "started serving (stopped by the harness)"
        if not may_serve:
            row.reasons.append("served instead of refusing")
    else:
        row.status = f"exit {r['rc']}: {last[:60]}"
        if r["rc"] == 0:
            row.reasons.append("exit 0 (accepted)")
        if "Traceback" in r["output"]:
            row.reasons.append("traceback")
    if max_peak is not None and row.peak > max_peak:
        row.reasons.append(f"peak RSS {row.peak / MiB:.0f} MiB > {max_peak / MiB:.0f}")
    row.passed = not row.reasons
    return row


SERVE_ARGS = ["--port", "0", "--threads", "1", "--target", TARGET, "--no-metrics"]
BENCH_ARGS = ["--target", TARGET, "--runs", "2", "--warmup", "0", "--no-cold-start", "--no-store", "--threads", "1"]


def serve_must_refuse(row: Row, folder: Path, max_peak: int | None = None, may_serve: bool = False) -> Row:
    """``edgekit serve`` on a bad folder: must exit with a one-line error instead of listening."""
    return cli_row(row, ["serve", str(folder), *SERVE_ARGS], max_peak=max_peak, may_serve=may_serve)


def bench_must_refuse(row: Row, folder: Path, max_peak: int | None = None) -> Row:
    return cli_row(row, ["bench", str(folder), *BENCH_ARGS], max_peak=max_peak)


# ---------------------------------------------------------------- folder edits


def copy(src: Path, work: Path, name: str) -> Path:
    dst = work / name / "out"  # two levels deep: ../../x.npz stays inside the work folder
    shutil.copytree(src, dst)
    return dst


def manifest_edit(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    edit(m)
    p.write_text(json.dumps(m, indent=2))


def artifact(m: dict[str, Any], target: str) -> dict[str, Any]:
    return next(a for a in m["artifacts"] if a["target"] == target)


def swap_paths(m: dict[str, Any]) -> None:
    a, b = artifact(m, "tflite:int8"), artifact(m, "tflite:fp32")
    a["path"], b["path"] = b["path"], a["path"]
    a["sha256"] = b["sha256"] = None  # with the hashes gone, only the runtime's own checks are left
    a["bytes"] = b["bytes"] = None


def edit_batch(folder: Path, batch: int = 400_000) -> None:
    """The int8 model with its input batch edited to ``batch``, and the manifest re-signed to match."""
    import hashlib

    from tools.flatbuf import pack, unpack

    m = json.loads((folder / "manifest.json").read_text())
    a = artifact(m, TARGET)
    f = folder / a["path"]
    model = unpack(f.read_bytes())
    sg = model.subgraphs[0]
    t = sg.tensors[int(sg.inputs[0])]
    t.shape = [batch] + [int(x) for x in t.shape[1:]]
    t.shapeSignature = list(t.shape)
    data = pack(model)
    f.write_bytes(data)
    a["bytes"], a["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m, indent=2))


# ---------------------------------------------------------------- the table


def rows(src: Path, work: Path, ref: dict[str, int]) -> list[tuple[str, str, Callable[[], Row]]]:
    """(name, what, run) for every attack; ``ref`` holds the clean CLI peaks (``bench``, ``serve``): the memory yardstick."""
    cap = {k: int(v * 1.5) for k, v in ref.items()}
    served = src

    def srv(name: str, what: str, attack: Callable[[ServeProcess, Row], bool], folder: Path | None = None) -> tuple[str, str, Callable[[], Row]]:
        return name, what, lambda: server_row(Row(name, what), folder or served, attack)

    def on_copy(name: str, what: str, change: Callable[[Path], None]) -> tuple[str, str, Callable[[], Row]]:
        def run() -> Row:
            folder = copy(src, work, name)
            served_file = folder / artifact(json.loads((folder / "manifest.json").read_text()), TARGET)["path"]
            return server_row(Row(name, what), folder, disk_change(change, served_file))

        return name, what, run

    def cli(name: str, what: str, prepare: Callable[[Path], None], check: Callable[[Row, Path], Row]) -> tuple[str, str, Callable[[], Row]]:
        def run() -> Row:
            folder = copy(src, work, name)
            prepare(folder)
            return check(Row(name, what), folder)

        return name, what, run

    def fifo(folder: Path) -> None:
        manifest_edit(folder, lambda m: artifact(m, TARGET).update(bytes=None))
        f = folder / artifact(json.loads((folder / "manifest.json").read_text()), TARGET)["path"]
        f.unlink()
        os.mkfifo(f)

    def outside_eval(folder: Path) -> None:
        shutil.copy(folder / "eval.npz", folder.parent.parent / "x.npz")
        manifest_edit(folder, lambda m: m["eval_data"].update(file="../../x.npz"))

    def raw_manifest(text: str) -> Callable[[Path], None]:
        return lambda folder: (folder / "manifest.json").write_text(text)

    def inf_shapes(folder: Path) -> None:
        m = json.loads((folder / "manifest.json").read_text())
        for a in m["artifacts"]:
            for spec in a.get("inputs") or []:
                spec["shape"] = ["INF", 8, 8, 1]
        (folder / "manifest.json").write_text(json.dumps(m).replace('"INF"', "1e999"))

    def sparse_manifest(folder: Path) -> None:
        p = folder / "manifest.json"
        good = p.read_bytes()
        with open(p, "wb") as fh:
            fh.write(good[:-1])  # a valid start, then 1 GiB of (sparse) NUL bytes
            fh.truncate(1 << 30)

    def truncate(f: Path) -> None:
        os.truncate(f, f.stat().st_size // 2)

    def cp_over(f: Path) -> None:
        # cp writes into the same inode (open with O_TRUNC): what a mapped file sees change under it.
        other = artifact(json.loads((f.parent / "manifest.json").read_text()), "tflite:fp32")["path"]
        shutil.copyfile(f.parent / other, f)

    huge_header = (b"\x93NUMPY\x01\x00" + _npy_header("|i1", (16_000_000_000, 8, 8, 1)))
    deep = ("[" * 5000 + "]" * 5000).encode()
    digits = ('{"inputs": {"image": [[[[' + "9" * 5000 + "]]]]}}").encode()
    nan_json = json.dumps({"inputs": {"image": np.full((1, 8, 8, 1), math.nan).tolist()}}).encode()
    inf_json = json.dumps({"inputs": {"image": np.full((1, 8, 8, 1), math.inf).tolist()}}).encode()
    return [
        srv("npz-bomb", "31 KB .npz of int8 zeros (500000, 8, 8, 1)",
            one_request(npz(image=np.zeros((500_000, 8, 8, 1), np.int8)), NPZ)),
        srv("npy-262k", "16 MB .npy, batch 262,000", one_request(npy(np.zeros((262_000, 8, 8, 1), np.int8)), NPY)),
        srv("slow-sockets", "64 idle + 64 byte-trickling sockets, then a normal request", hog_sockets),
        on_copy("truncated", "served .tflite truncated on disk, then /predict", truncate),
        on_copy("cp-over", "another model cp'd over the served file, then /predict + /healthz", cp_over),
        srv("json-16mb", "16 MB JSON body, three at once, timing /healthz", json_flood),
        cli("fifo-bench", "artifact is a FIFO, manifest size null: edgekit bench", fifo, bench_must_refuse),
        cli("fifo-serve", "artifact is a FIFO, manifest size null: edgekit serve", fifo, serve_must_refuse),
        cli("sha-null", "manifest sha256 null: edgekit serve", lambda f: manifest_edit(f, lambda m: artifact(m, TARGET).update(sha256=None)),
            serve_must_refuse),
        cli("swapped", "artifacts' paths swapped (hashes nulled): edgekit bench", lambda f: manifest_edit(f, swap_paths), bench_must_refuse),
        srv("content-len-sup2", "Content-Length: ² (superscript two)",
            raw_request(b"Host: 127.0.0.1\r\nContent-Type: application/x-npy\r\nContent-Length: \xc2\xb2\r\nConnection: close\r\n", b"ab")),
        srv("json-deep", "5,000-deep JSON", one_request(deep, JSON)),
        srv("json-5000-digits", "5,000-digit integer in JSON", one_request(digits, JSON)),
        srv("npy-954gib", ".npy header claiming 954 GiB", one_request(huge_header, NPY)),
        srv("json-nan", "NaN in JSON (int8 model)", one_request(nan_json, JSON)),
        srv("json-inf", "Infinity in JSON (int8 model)", one_request(inf_json, JSON)),
        srv("npy-nan", "NaN in .npy (int8 model)", one_request(npy(np.full((1, 8, 8, 1), np.nan, np.float32)), NPY)),
        srv("npy-inf", "inf in .npy (int8 model)", one_request(npy(np.full((1, 8, 8, 1), np.inf, np.float32)), NPY)),
        cli("manifest-deep", "manifest of 100k-deep JSON: edgekit bench", raw_manifest("[" * 100_000 + "]" * 100_000), bench_must_refuse),
        cli("manifest-1e999", "manifest shapes 1e999: edgekit bench", inf_shapes, bench_must_refuse),
        cli("manifest-1gib", "1 GiB (sparse) manifest: edgekit bench", sparse_manifest,
            lambda r, f: bench_must_refuse(r, f, max_peak=cap["bench"])),
        cli("eval-outside", "eval_data.file ../../x.npz: edgekit bench", outside_eval, bench_must_refuse),
        cli("batch-400k", ".tflite batch dim edited to 400,000 (manifest re-signed): edgekit serve", edit_batch,
            lambda r, f: serve_must_refuse(r, f, max_peak=cap["serve"], may_serve=True)),
    ]


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    h = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return len(h).to_bytes(2, "little") + h


def digits_folder(out: Path | None) -> Path:
    if out is not None:
        return out
    from edgekit.api import convert
    from edgekit.cache import cache_dir

    folder = cache_dir() / "attack-digits"
    if not (folder / "manifest.json").exists():
        convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8"]}, folder, force=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="an edgekit output folder with tflite:fp32 and tflite:int8 (default: convert digits-cnn)")
    ap.add_argument("--only", default="", help="comma list of row names")
    ap.add_argument("--json", type=Path, help="write the rows here as JSON")
    args = ap.parse_args(argv)
    src = digits_folder(args.out)
    with tempfile.TemporaryDirectory(prefix="edgekit-attack-") as tmp:
        work = Path(tmp)
        # The yardsticks for CLI rows: the same commands on the clean folder (bench: one 2-run pass;
        # serve: up to listening). A refusal should cost no more than 1.5x these.
        ref = {"bench": run_cli(["bench", str(src), *BENCH_ARGS], timeout=120)["peak"],
               "serve": run_cli(["serve", str(src), *SERVE_ARGS], timeout=120, stop_on=r"http://127\.0\.0\.1:\d+")["peak"]}
        print(f"clean CLI peaks: bench {ref['bench'] / MiB:.0f} MiB, serve {ref['serve'] / MiB:.0f} MiB (CLI rows may peak at 1.5x)")
        wanted = {x for x in args.only.split(",") if x}
        results: list[Row] = []
        for name, what, run in rows(src, work, ref):
            if wanted and name not in wanted:
                continue
            try:
                row = run()
            except Exception as exc:  # noqa: BLE001 - the harness reports and goes on to the next row
                row = Row(name, what, status=f"harness error: {type(exc).__name__}: {exc}"[:80], reasons=["harness"])
            results.append(row)
            print(row.line(), flush=True)
    print()
    print(f"{'row':16s} {'what':72s} {'status':58s} result")
    for r in results:
        print(f"{r.name:16s} {r.what[:72]:72s} {r.status[:58]:58s} {'PASS' if r.passed else 'FAIL'}")
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)}/{len(results)} rows pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
