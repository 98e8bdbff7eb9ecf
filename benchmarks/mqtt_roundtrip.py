"""MQTT round trip through ``edgekit mqtt`` on loopback: messages/s and p50/p99 latency, every answer checked.

Starts a private mosquitto on a free 127.0.0.1 port (unless ``--broker`` names a loopback one) and
the bridge as a child process (so the client and the bridge do not share a GIL), then publishes
``--messages`` inputs with at most ``--window`` waiting for their answer (1: pure latency; larger:
throughput). A message's round trip is publish -> result received, matched by its JSON ``id``.
Every result is compared with a local Session (logits); a wrong, missing or error answer counts as
an error. Bounded: ``--messages`` and ``--max-seconds``. The private broker runs with
``set_tcp_nodelay true`` (``--nagle`` for mosquitto's default, which adds ~40 ms to a round trip).

Run: ``.venv/bin/python benchmarks/mqtt_roundtrip.py [MODEL] [--messages 2000] [--window 1|8|32]
[--payload json|npy] [--qos 1] [--max-seconds 60] [--nagle] [--json]`` (MODEL defaults to the committed
``tests/data/digits-int8``; needs ``paho-mqtt`` and the ``mosquitto`` binary).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CLI = ("from edgekit.cli import main; from edgekit.cli.common import Group; from edgekit.cli.mqtt import mqtt\n"
        "(main if 'mqtt' in main.commands else Group(commands={'mqtt': mqtt}))(prog_name='edgekit')")


def _mosquitto(workdir: Path, nagle: bool) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).is_file():
        raise SystemExit("mosquitto not installed: apt-get install mosquitto (or pass --broker 127.0.0.1:PORT)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    # set_tcp_nodelay: mosquitto's default (false) adds a delayed-ACK wait (~40 ms on Linux) to most
    # round trips, because it PUBACKs a publish and forwards the next message in two small writes.
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"
                    f"set_tcp_nodelay {'false' if nagle else 'true'}\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("mosquitto did not start") from None
            time.sleep(0.02)


def _bodies(model: Path, payload: str, n: int) -> tuple[list[bytes], np.ndarray]:
    """One body per eval sample (cycled to ``n``), each carrying its index as ``id`` (JSON) and the local logits."""
    import edgekit.runtime as rt

    with np.load(model / "eval.npz") as d:
        x = d["x"][:256]
    session = rt.load(model, num_threads=1)
    want = session.run(x)[session.output_names[0]]
    bodies = []
    for i in range(min(n, len(x))):
        if payload == "npy":
            buf = io.BytesIO()
            np.save(buf, x[i : i + 1])
            bodies.append(buf.getvalue())
        else:
            bodies.append(json.dumps({"inputs": {session.input_names[0]: x[i : i + 1].tolist()}}).encode())
    return bodies, want


def run(model: Path, host: str, port: int, *, messages: int, window: int, payload: str, qos: int,
        max_seconds: float, threads: int | None) -> dict:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    bodies, want = _bodies(model, payload, messages)
    cmd = [sys.executable, "-c", _CLI, "mqtt", str(model), "--broker", f"{host}:{port}", "--in", "bench/in",
           "--out", "bench/out", "--qos", str(qos), "--queue-size", str(max(32, window))]
    if threads:
        cmd += ["--threads", str(threads)]
    bridge = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        ready = bridge.stdout.readline()
        if not ready.startswith("edgekit mqtt:"):
            raise SystemExit(f"bridge did not start: {ready!r}")
        sent: dict[int, float] = {}
        rtts: list[float] = []
        errors: list[str] = []
        slots = threading.Semaphore(window)
        done = threading.Event()
        lock = threading.Lock()
        subscribed = threading.Event()

        def on_message(client, userdata, msg) -> None:
            t = time.perf_counter()
            corr = int(msg.properties.CorrelationData)
            with lock:
                t0 = sent.pop(corr, None)
                if t0 is None:
                    errors.append(f"unexpected answer {corr}")
                    return
                rtts.append(t - t0)
                if msg.topic != "bench/out":
                    errors.append(f"{corr}: {json.loads(msg.payload).get('error')}")
                else:
                    logits = np.asarray(json.loads(msg.payload)["outputs"]["logits"], np.float32)
                    if not np.allclose(logits, want[corr % len(bodies)], rtol=0, atol=1e-5):
                        errors.append(f"{corr}: logits differ from the local Session")
                if len(rtts) == messages:
                    done.set()
            slots.release()

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        # The device side turns Nagle off too (paho does not), or its own PUBACKs delay its publishes.
        c.on_socket_open = lambda client, userdata, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.max_inflight_messages_set(max(20, window))
        c.connect(host, port)
        c.subscribe([("bench/out", qos), ("bench/out/errors", qos)])
        c.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("benchmark client could not subscribe")
        start = time.perf_counter()
        deadline = start + max_seconds
        for i in range(messages):
            if not slots.acquire(timeout=max(0.0, deadline - time.perf_counter())):
                break
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = str(i).encode()  # the bridge echoes it: no JSON parsing to match answers
            with lock:
                sent[i] = time.perf_counter()
            c.publish("bench/in", bodies[i % len(bodies)], qos=qos, properties=props)
        done.wait(max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - start
        c.disconnect()
        c.loop_stop()
    finally:
        bridge.terminate()
        tail, _ = bridge.communicate(timeout=30)
    stats = json.loads(tail.strip().splitlines()[-1].removeprefix("stopped: ")) if "stopped: " in tail else {}
    ms = np.asarray(rtts) * 1e3
    lost = messages - len(rtts)
    return {
        "model": model.name, "payload": payload, "qos": qos, "window": window, "messages": messages,
        "answered": len(rtts), "lost": lost, "errors": len(errors) + lost, "error_samples": errors[:5],
        "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
        "p90_ms": round(float(np.percentile(ms, 90)), 3) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None,
        "max_ms": round(float(ms.max()), 3) if len(ms) else None,
        "msg_per_s": round(len(rtts) / wall, 1) if wall > 0 else None, "wall_s": round(wall, 3),
        "bridge": {k: stats.get(k) for k in ("processed", "bad_payload", "errors", "dropped", "published")},
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="MQTT round trip through edgekit mqtt on loopback.")
    p.add_argument("model", nargs="?", type=Path, default=REPO / "tests" / "data" / "digits-int8")
    p.add_argument("--broker", help="an existing loopback broker host:port (default: start a private mosquitto)")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--window", type=int, default=1, help="messages awaiting their answer at once (1: latency)")
    p.add_argument("--payload", choices=("json", "npy"), default="json")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--threads", type=int, help="bridge engine threads")
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--nagle", action="store_true",
                   help="leave the private mosquitto's set_tcp_nodelay at its default (false): what an untuned broker costs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.messages < 1 or args.window < 1:
        p.error("--messages and --window must be >= 1")
    broker = None
    if args.broker:
        host, _, port_s = args.broker.rpartition(":")
        if host not in LOOPBACK or not port_s.isdigit():
            p.error("--broker must be a loopback host:port (127.0.0.1, localhost, ::1): this is not a tool for other people's brokers")
        port = int(port_s)
    else:
        broker, port = _mosquitto(Path(tempfile.mkdtemp(prefix="edgekit-mqtt-bench-")), args.nagle)
        host = "127.0.0.1"
    try:
        result = run(args.model, host, port, messages=args.messages, window=args.window, payload=args.payload,
                     qos=args.qos, max_seconds=args.max_seconds, threads=args.threads)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"edgekit mqtt round trip: {result['model']}, {args.payload} payload, QoS {args.qos}, window {args.window}, "
              f"{result['cpus']} CPUs")
        print(f"  messages     {result['answered']} of {result['messages']} answered, {result['errors']} errors")
        print(f"  latency      p50 {result['p50_ms']} ms · p90 {result['p90_ms']} ms · p99 {result['p99_ms']} ms · max {result['max_ms']} ms")
        print(f"  throughput   {result['msg_per_s']} messages/s ({result['wall_s']} s)")
        print(f"  bridge       {result['bridge']}")
        for e in result["error_samples"]:
            print(f"  error: {e}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
