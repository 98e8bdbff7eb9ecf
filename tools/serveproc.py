"""An ``edgekit serve`` subprocess to attack, and a raw HTTP client that reports what really came
back (a status, or "no reply" when the server dropped the connection).

``benchmarks/attack.py`` and the payload fuzzer use these. The server's memory is read from
``/proc/PID/status``: ``VmRSS`` now and ``VmHWM`` (peak), which :meth:`ServeProcess.reset_peak`
resets through ``/proc/PID/clear_refs`` so each attack gets its own peak; a 5 ms sampler of
``VmRSS`` backs it up where ``clear_refs`` is not writable.

Example:
    >>> with ServeProcess("out/", "--target", "tflite:int8") as srv:  # doctest: +SKIP
    ...     request(srv.port, "GET", "/healthz").status
    200
    >>> Reply(200, b"{}", 0.01).ok
    True
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


@dataclass
class Reply:
    """What one request got: ``status`` (``None`` when no HTTP answer came), the body, seconds, why not."""

    status: int | None
    body: bytes
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def line(self) -> str:
        """``status`` or the error, one line.

        Example:
            >>> Reply(None, b"", 1.0, "no reply: connection closed").line()
            'no reply: connection closed'
        """
        if self.status is None:
            return self.error
        msg = self.json()
        text = msg.get("error", "") if isinstance(msg, dict) else ""
        return f"{self.status}" + (f" {' '.join(str(text).split())[:70]}" if text else "")


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
            timeout: float = 30.0, raw_headers: bytes | None = None, source: str = "127.0.0.1") -> Reply:
    """One HTTP/1.1 request on a fresh connection; the reply is read until Content-Length or close.

    ``raw_headers`` replaces the header block (bytes as sent, for malformed headers). ``source``
    binds the client's address (any of 127/8 on Linux), so a per-address limit can be tested.

    Example:
        >>> request(8080, "GET", "/healthz").status  # doctest: +SKIP
        200
    """
    t0 = time.perf_counter()
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body and "Content-Length" not in hdrs and raw_headers is None:
        hdrs["Content-Length"] = str(len(body))
    head = raw_headers if raw_headers is not None else "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode("latin-1")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    except OSError as exc:
        return Reply(None, b"", time.perf_counter() - t0, f"no connection: {exc}")
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + head + b"\r\n" + body)
    except OSError as exc:
        # The server may answer (413) and close before the whole body is sent: read what it said.
        sent_error = f"send failed: {exc}"
    else:
        sent_error = ""
    data = b""
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            status, length, header_end = _parse(data)
            if length is not None and len(data) - header_end >= length:
                break
    except OSError as exc:
        if not data:
            s.close()
            return Reply(None, b"", time.perf_counter() - t0, f"no reply: {type(exc).__name__}" + (f" ({sent_error})" if sent_error else ""))
    finally:
        s.close()
    status, length, header_end = _parse(data)
    if status is None:
        return Reply(None, data, time.perf_counter() - t0, "no reply: connection closed" + (f" ({sent_error})" if sent_error else ""))
    return Reply(status, data[header_end:], time.perf_counter() - t0)


def _parse(data: bytes) -> tuple[int | None, int | None, int]:
    start = 0
    while re.match(rb"HTTP/1\.[01] 1\d\d ", data[start:]):  # interim answers (100 Continue) precede the real one
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            return None, None, 0
        start = end + 4
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return None, None, 0
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data[start:])
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", data[start:end], re.I)
    return (int(m.group(1)) if m else None), (int(length.group(1)) if length else None), end + 4


def proc_status(pid: int, key: str) -> int:
    """``VmRSS`` / ``VmHWM`` of process ``pid`` in bytes (0 when it is gone).

    Example:
        >>> proc_status(os.getpid(), "VmRSS") > 0
        True
    """
    try:
        m = re.search(rf"^{key}:\s+(\d+)\s*kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(m.group(1)) << 10 if m else 0
    except OSError:
        return 0


class ServeProcess:
    """``python -m edgekit.cli serve PATH --port 0 --threads 1 *args`` as a subprocess; ``port`` once it listens.

    Raises:
        RuntimeError: the server exited or printed no URL within ``start_timeout``.
    """

    def __init__(self, path: str | os.PathLike[str], *args: str, start_timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "edgekit.cli", "serve", str(path), "--port", "0", "--threads", "1", *args]
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.output: list[str] = []
        self._sampled = 0
        self._sampling = threading.Event()

    def __enter__(self) -> "ServeProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self.output.append(line)
                m = URL.search(line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        found.wait(self.start_timeout)
        if not self.port:
            self.stop()
            raise RuntimeError(f"edgekit serve did not start: {' | '.join(self.output[-5:])}")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def alive(self, timeout: float = 10.0) -> bool:
        """Running and ``GET /healthz`` answers 200."""
        return self.running() and request(self.port, "GET", "/healthz", timeout=timeout).status == 200

    def rss(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def reset_peak(self) -> None:
        """Start a fresh peak: reset VmHWM (clear_refs) and start the VmRSS sampler."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass
        self._sampled = self.rss()
        self._sampling.set()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._sampling.is_set() and self.running():
            self._sampled = max(self._sampled, self.rss())
            time.sleep(0.005)

    def peak(self) -> int:
        """Peak RSS since :meth:`reset_peak` (VmHWM and the sampler, whichever saw more); stops the sampler."""
        self._sampling.clear()
        return max(proc_status(self.pid, "VmHWM"), self._sampled)

    def settle(self, baseline: int, seconds: float = 3.0, within: float = 0.10) -> int:
        """RSS after an attack: wait up to ``seconds`` for it to come back within ``within`` of ``baseline``."""
        deadline = time.monotonic() + seconds
        rss = self.rss()
        while rss > baseline * (1 + within) and time.monotonic() < deadline and self.running():
            time.sleep(0.1)
            rss = self.rss()
        return rss

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; the exit code (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sampling.clear()
        return self.proc.returncode


def run_cli(args: list[str], timeout: float = 30.0, *, stop_on: str | None = None) -> dict[str, Any]:
    """``python -m edgekit.cli *args`` with a timeout: exit code, seconds, peak RSS, output, whether it hung.

    The peak RSS is the command's own ``VmHWM``, sampled every 20 ms (``ru_maxrss`` from ``wait4``
    would not do: exec records the forking parent's high-water mark into it).
    ``stop_on``: once the output holds this regex (``edgekit serve``'s URL), the command is stopped
    with SIGTERM half a second later and ``"stopped": True`` is reported instead of a hang.

    Example:
        >>> run_cli(["--version"])["rc"]  # doctest: +SKIP
        0
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "edgekit.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    out = bytearray()

    def read() -> None:
        assert p.stdout is not None
        fd = p.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 4096), b""):  # what is there now: a buffered read would wait for 4 KiB
            out.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    hung = stopped = False
    peak = 0
    deadline = time.monotonic() + timeout
    while True:
        peak = max(peak, proc_status(p.pid, "VmHWM"))
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if stop_on and not stopped and re.search(stop_on, out.decode(errors="replace")):
            stopped = True
            time.sleep(0.5)
            os.killpg(p.pid, signal.SIGTERM)
            deadline = min(deadline, time.monotonic() + 10)
            continue
        if time.monotonic() > deadline:
            hung = True
            os.killpg(p.pid, signal.SIGKILL)
            pid, status, _ = os.wait4(p.pid, 0)
            break
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    reader.join(2)
    text = out.decode(errors="replace")
    return {"rc": p.returncode, "seconds": time.perf_counter() - t0, "peak": peak,
            "output": text, "hung": hung and not stopped, "stopped": stopped}
