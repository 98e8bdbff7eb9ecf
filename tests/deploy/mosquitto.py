"""A real mosquitto broker for tests: a generated config on a free loopback port, started and stopped here.

The Debian package ships ``/usr/sbin/mosquitto``; ``.ci/run`` installs it. Without it the MQTT tests
skip with the reason in :data:`SKIP_REASON` (never silently pass).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

SKIP_REASON = "mosquitto not installed: apt-get install mosquitto (the .ci/run script installs it)"


def binary() -> str | None:
    """The mosquitto executable, or None (it lives in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str, step: float = 0.01):
    """Poll ``cond()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Broker:
    """One mosquitto process; :meth:`stop` then :meth:`start` restarts it on the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        exe = binary()
        if exe is None:
            raise FileNotFoundError(SKIP_REASON)
        self.exe = exe
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.config = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"  # a restart loses every session: the bridge must resubscribe itself
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "max_queued_messages 10000\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Broker":
        """Start mosquitto and wait until it accepts TCP connections."""
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.config)], stdout=self._logf, stderr=subprocess.STDOUT)

        def accepting() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(accepting, timeout, f"mosquitto to listen on 127.0.0.1:{self.port}", step=0.02)
        return self

    def stop(self, kill: bool = False) -> None:
        """Terminate (or SIGKILL) the broker and wait until the port is closed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
