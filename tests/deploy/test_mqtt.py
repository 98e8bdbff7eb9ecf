"""The MQTT bridge against a real mosquitto: results, bad payloads, a broker restart, a flood, the CLI.

Every test starts its own broker on a free loopback port (``mosquitto.py``); a paho client plays the
devices. Waits are on conditions with timeouts, never fixed sleeps.
"""

from __future__ import annotations

import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from deploy_helpers import DATA, eval_data
from mosquitto import SKIP_REASON, Broker, binary, free_port, wait_for

from edgekit.errors import InputError
from edgekit.runtime import load

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed: pip install 'edgekit[mqtt]'")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from edgekit.runtime.mqtt import Bridge, BrokerError, MqttConfig, parse_broker  # noqa: E402

if binary() is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

T = 15.0  # generous timeout for every wait; the happy path takes milliseconds


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def model():
    session = load(DATA, num_threads=1)
    x, y = eval_data()
    x, y = x[:16], y[:16]
    return session, x, y, session.run(x)["logits"]


class Peer:
    """A device/dashboard on the broker: publishes inputs, collects everything on ``topics``."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("out", "out/errors", "reply/#", "status")) -> None:
        self.got: queue.Queue = queue.Queue()
        self.backlog: list = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.reconnect_delay_set(0.05, 0.2)

        def on_connect(client, userdata, flags, rc, props):
            client.subscribe([(t, 1) for t in topics])  # again after a broker restart: it forgot us

        self.c.on_connect = on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_disconnect = lambda *a: self.subscribed.clear()
        self.c.on_message = lambda client, userdata, m: self.got.put(m)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.subscribed.wait(T)

    def send(self, topic: str, data: bytes | str, props: Properties | None = None) -> None:
        self.c.publish(topic, data, qos=1, properties=props).wait_for_publish(T)

    def take(self, n: int, topic: str = "#") -> list:
        """The next ``n`` messages matching the filter ``topic``; others are kept for later takes."""
        out = [m for m in self.backlog if mqtt.topic_matches_sub(topic, m.topic)][:n]
        self.backlog = [m for m in self.backlog if not any(m is o for o in out)]
        deadline = time.monotonic() + T
        while len(out) < n:
            try:
                m = self.got.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} messages on {topic}") from None
            (out if mqtt.topic_matches_sub(topic, m.topic) else self.backlog).append(m)
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def doc(m) -> dict:
    return json.loads(m.payload)


@pytest.fixture
def run_bridge(broker, model):
    made = []

    def make(**overrides):
        cfg = dict(port=broker.port, input_topic="in/+", output_topic="out", backoff_min=0.1, backoff_max=0.8,
                   connect_timeout=5, drain_seconds=2)
        bridge = Bridge(model[0], MqttConfig(**{**cfg, **overrides}))
        assert bridge.start()
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.stop()


def test_json_npy_npz_results_match_session_run(broker, model, run_bridge):
    session, x, y, logits = model
    run_bridge()
    peer = Peer(broker.port)
    peer.send("in/cam1", json.dumps({"id": "f-1", "inputs": {"image": x[0:4].tolist()}}))
    peer.send("in/cam2", json.dumps({"id": 7, "inputs": x[4:6].tolist()}))
    peer.send("in/cam1", json.dumps(x[6:7].tolist()))
    peer.send("in/cam3", npy(x[7:12]))
    buf = io.BytesIO()
    np.savez(buf, image=x[12:16])
    peer.send("in/cam3", buf.getvalue())
    results = [doc(m) for m in peer.take(5, "out")]
    assert [(r["id"], r["topic"]) for r in results] == [("f-1", "in/cam1"), (7, "in/cam2"), (None, "in/cam1"),
                                                       (None, "in/cam3"), (None, "in/cam3")]
    assert {r["model"] for r in results} == {"tflite:int8"}
    got = np.concatenate([np.asarray(r["outputs"]["logits"], np.float32) for r in results])
    np.testing.assert_allclose(got, logits, rtol=0, atol=1e-5)
    top1 = sum((r["top1"] for r in results), [])
    assert top1 == np.argmax(logits, axis=1).tolist()
    assert np.mean(np.asarray(top1) == y) >= 0.9  # the committed artifact is ~97% on these digits
    peer.close()


def test_v5_correlation_data_and_response_topic(broker, model, run_bridge):
    session, x, y, logits = model
    run_bridge()
    peer = Peer(broker.port)
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = b"req-42"
    props.ResponseTopic = "reply/dev9"
    peer.send("in/dev9", npy(x[:1]), props)
    (m,) = peer.take(1, "reply/#")
    assert m.topic == "reply/dev9" and m.properties.CorrelationData == b"req-42"
    r = doc(m)
    assert r["id"] == "req-42" and r["top1"] == [int(np.argmax(logits[0]))]
    peer.close()


def test_malformed_payloads_are_reported_and_the_stream_goes_on(broker, model, run_bridge):
    session, x, y, logits = model
    bridge = run_bridge(max_payload=4096)
    peer = Peer(broker.port)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = [
        (b"{not json", "InputError", "payload is not valid JSON"),
        (json.dumps({"id": "bad-shape", "inputs": [[1.0, 2.0]]}).encode(), "InputError", "got shape (1, 2)"),
        (npy(x[:1].astype(np.int32)), "InputError", "got dtype int32"),
        (b"\x00" * 10_000, "PayloadTooLarge", "payload is 10000 bytes, over the 4096-byte limit"),
        (b"", "InputError", "payload is empty"),
        (pickled.getvalue(), "InputError", "object arrays are refused"),
        # An int8 model would quantize NaN to some integer and publish a plausible answer.
        (npy(np.where(np.arange(x[:1].size).reshape(x[:1].shape) == 3, np.nan, x[:1]).astype(np.float32)), "InputError",
         "input 'image' holds 1 NaN or infinite value(s)"),
    ]
    for i, (data, _, _) in enumerate(bad):
        peer.send("in/cam1", data)
        peer.send("in/cam1", json.dumps({"id": f"ok-{i}", "inputs": x[i : i + 1].tolist()}))
    errors = [doc(m) for m in peer.take(len(bad), "out/errors")]
    for err, (data, kind, text) in zip(errors, bad):
        assert err["type"] == kind and text in err["error"], err
        assert err["status"] == "bad_payload" and err["topic"] == "in/cam1" and err["bytes"] == len(data)
    assert errors[1]["id"] == "bad-shape"
    results = [doc(m) for m in peer.take(len(bad), "out")]
    assert [r["id"] for r in results] == [f"ok-{i}" for i in range(len(bad))]
    assert [r["top1"][0] for r in results] == np.argmax(logits[: len(bad)], axis=1).tolist()
    # The worker counts a message just after publishing its answer: wait for the counters to settle.
    wait_for(lambda: bridge.stats()["published"] == 2 * len(bad) and bridge.stats()["processed"] == len(bad), T,
             "PUBACKs and counters for every message")
    s = bridge.stats()
    assert (s["received"], s["processed"], s["bad_payload"], s["errors"], s["dropped"]) == (14, 7, 7, 0, 0)
    peer.close()


def test_broker_restart_mid_stream_reconnects_with_backoff(broker, model, run_bridge):
    session, x, y, logits = model
    bridge = run_bridge(backoff_min=0.1, backoff_max=0.8)
    peer = Peer(broker.port)
    for i in range(3):
        peer.send("in/a", json.dumps({"id": i, "inputs": x[i : i + 1].tolist()}))
    assert [doc(m)["id"] for m in peer.take(3, "out")] == [0, 1, 2]

    t0 = time.monotonic()  # before the kill: the bridge's back-off clock starts after this, never before
    broker.stop(kill=True)  # no clean goodbye: what a crashed or rebooted broker looks like
    wait_for(lambda: not bridge.conn.connected.is_set(), T, "the bridge to notice the lost broker")
    wait_for(lambda: bridge.stats()["connect_failures"] >= 3, T, "three failed reconnects")
    # Exponential back-off: attempts at >= d, 3d, 7d with d >= 0.1 s; a fixed 0.1 s retry would be at 0.3 s.
    assert time.monotonic() - t0 >= 0.65
    broker.start()
    wait_for(bridge.conn.subscribed.is_set, T, "the bridge to reconnect and resubscribe")
    wait_for(peer.subscribed.is_set, T, "the test client to resubscribe")
    for i in range(3, 6):
        peer.send("in/a", json.dumps({"id": i, "inputs": x[i : i + 1].tolist()}))
    after = [doc(m) for m in peer.take(3, "out")]
    assert [r["id"] for r in after] == [3, 4, 5]
    assert [r["top1"][0] for r in after] == np.argmax(logits[3:6], axis=1).tolist()
    wait_for(lambda: bridge.stats()["processed"] == 6, T, "the counters to catch up")  # counted after publishing
    s = bridge.stats()
    assert (s["reconnects"], s["disconnects"], s["processed"], s["errors"]) == (1, 1, 6, 0)
    peer.close()


def test_flood_keeps_the_queue_bounded_and_drops_the_oldest(broker, model, run_bridge):
    session, x, y, logits = model
    bridge = run_bridge(queue_size=4)
    peer = Peer(broker.port)
    with bridge.run_lock:  # the model is busy: nothing leaves the queue
        peer.send("in/a", json.dumps({"id": 0, "inputs": x[:1].tolist()}))
        wait_for(lambda: bridge.stats()["received"] == 1 and bridge.conn.inbox.qsize() == 0, T,
                 "the inference thread to take message 0")
        for i in range(1, 50):
            peer.send("in/a", json.dumps({"id": i, "inputs": x[i % 16 : i % 16 + 1].tolist()}))
        wait_for(lambda: bridge.stats()["received"] == 50, T, "all 50 messages at the bridge")
        s = bridge.stats()
        assert bridge.conn.inbox.qsize() == 4 and s["queue_peak"] == 4 and s["dropped"] == 45
    results = [doc(m) for m in peer.take(5, "out")]
    assert [r["id"] for r in results] == [0, 46, 47, 48, 49]  # the first (already taken) and the newest four
    assert [r["top1"][0] for r in results] == [int(np.argmax(logits[i % 16])) for i in (0, 46, 47, 48, 49)]
    wait_for(lambda: bridge.stats()["processed"] == 5, T, "the counters to catch up")  # counted after publishing
    s = bridge.stats()
    assert (s["processed"], s["dropped"], s["queue_peak"]) == (5, 45, 4)
    peer.close()


def test_mqtt_3_1_1_round_trip(broker, model, run_bridge):
    session, x, y, logits = model
    run_bridge(protocol="3.1.1")
    peer = Peer(broker.port)
    peer.send("in/old", npy(x[:2]))
    (m,) = peer.take(1, "out")
    assert doc(m)["top1"] == np.argmax(logits[:2], axis=1).tolist()
    peer.close()


def test_config_is_checked_before_any_connection():
    assert parse_broker("mqtts://broker.lan") == ("broker.lan", 8883, True)
    for kwargs, text in [
        (dict(input_topic="plant/#", output_topic="plant/results"), "would answer its own messages"),
        (dict(input_topic="in", output_topic="out/+"), "has a wildcard"),
        (dict(input_topic="in", output_topic="out", session_expiry=60), "needs a fixed client_id"),
        (dict(input_topic="in", output_topic="out", backoff_min=5, backoff_max=1), "0 < min <= max"),
        (dict(input_topic="in", output_topic="out", certfile="c.pem"), "need tls=True"),
    ]:
        with pytest.raises(InputError, match=text):
            MqttConfig(**kwargs)
    assert "secret" not in repr(MqttConfig(username="u", password="secret"))


def test_first_connection_gives_up_with_the_reason(model):
    port = free_port()  # nobody listens there
    bridge = Bridge(model[0], MqttConfig(port=port, input_topic="in", output_topic="out", backoff_min=0.1,
                                         connect_timeout=0.5))
    with pytest.raises(BrokerError, match=rf"cannot connect to the MQTT broker mqtt://127.0.0.1:{port}: ConnectionRefusedError"):
        bridge.start()


# -- the CLI as a subprocess ---------------------------------------------------------------------
# `edgekit mqtt` once the lead registers it in edgekit.cli; until then the same click Group around it.
_CLI = ("import sys; from edgekit.cli import main; from edgekit.cli.common import Group; from edgekit.cli.mqtt import mqtt\n"
        "g = main if 'mqtt' in main.commands else Group(commands={'mqtt': mqtt})\n"
        "g(prog_name='edgekit')")


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CLI, "mqtt", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_cli_answers_exports_metrics_and_stops_on_sigterm(broker, model):
    session, x, y, logits = model
    peer = Peer(broker.port)
    args = [str(DATA), "--broker", broker.address, "--in", "in/+", "--out", "out", "--status", "status",
            "--threads", "1"]
    try:
        import prometheus_client  # noqa: F401

        args += ["--metrics-port", "0"]
    except ImportError:
        prometheus_client = None
    proc = _cli(*args)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    try:
        ready = lines.get(timeout=30)
        assert ready.startswith("edgekit mqtt: tflite:int8 (") and f"on mqtt://{broker.address}" in ready, ready
        assert [m.payload for m in peer.take(1, "status")] == [b"online"]
        peer.send("in/cam1", json.dumps({"id": "a", "inputs": x[:3].tolist()}))
        peer.send("in/cam1", b"[[oops")
        assert doc(peer.take(1, "out")[0])["top1"] == np.argmax(logits[:3], axis=1).tolist()
        assert doc(peer.take(1, "out/errors")[0])["type"] == "InputError"
        if prometheus_client is not None:
            url = ready.rsplit("metrics on ", 1)[1].strip()

            def scraped() -> bytes | None:
                body = urllib.request.urlopen(url, timeout=5).read()
                return body if b'edgekit_requests_total{endpoint="mqtt",status="bad_payload"} 1.0' in body else None

            body = wait_for(scraped, T, "both messages in /metrics")
            assert b'edgekit_requests_total{endpoint="mqtt",status="ok"} 1.0' in body
            assert b'target="tflite:int8"' in body
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err
    rest = [lines.get_nowait() for _ in range(lines.qsize())]
    assert len(rest) == 1 and rest[0].startswith("stopped: {"), rest
    stats = json.loads(rest[0].removeprefix("stopped: "))
    assert (stats["received"], stats["processed"], stats["bad_payload"], stats["errors"], stats["dropped"]) == (2, 1, 1, 0, 0)
    assert stats["published"] >= 2  # both answers (plus the retained status) were acknowledged
    assert [m.payload for m in peer.take(1, "status")] == [b"offline"]
    peer.close()


def test_cli_bad_broker_and_missing_model_fail_in_one_line(tmp_path):
    closed = free_port()
    runs = {
        "refused": _cli(str(DATA), "--broker", f"127.0.0.1:{closed}", "--in", "i", "--out", "o", "--connect-timeout", "0.5",
                        "--backoff-min", "0.1"),
        "malformed": _cli(str(DATA), "--broker", "localhost:notaport", "--in", "i", "--out", "o"),
        "model": _cli(str(tmp_path / "nope"), "--broker", f"127.0.0.1:{closed}", "--in", "i", "--out", "o"),
    }
    results = {k: (p.wait(60), p.stderr.read().strip().splitlines()) for k, p in runs.items()}
    for p in runs.values():
        p.stdout.close()
        p.stderr.close()
    for name, (rc, err) in results.items():
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (name, err)
    assert f"cannot connect to the MQTT broker mqtt://127.0.0.1:{closed}: ConnectionRefusedError" in results["refused"][1][0]
    assert "broker address 'localhost:notaport' is not host[:port]" in results["malformed"][1][0]
    assert "nope" in results["model"][1][0]


def test_mqtt_modules_import_without_tensorflow_and_need_paho():
    code = ("import sys, json\n"
            "import edgekit.runtime.mqtt, edgekit.cli.mqtt\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf_keras'})\n"
            "lazy = not any(m.split('.')[0] == 'paho' for m in sys.modules)\n"
            "for name in ('paho', 'paho.mqtt', 'paho.mqtt.client'): sys.modules[name] = None  # as if not installed\n"
            "from edgekit.errors import MissingDependencyError\n"
            "try:\n"
            "    edgekit.runtime.mqtt.Connection(edgekit.runtime.mqtt.MqttConfig())\n"
            "    extra = None\n"
            "except MissingDependencyError as exc:\n"
            "    extra = exc.extra\n"
            "print(json.dumps({'heavy': heavy, 'lazy': lazy, 'extra': extra}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"heavy": [], "lazy": True, "extra": "mqtt"}


def test_iot_app_example_reads_and_publishes_mqtt(broker, model):
    from deploy_helpers import IOT_APP

    session, x, y, logits = model
    peer = Peer(broker.port, topics=("results",))
    proc = subprocess.Popen([sys.executable, str(IOT_APP), str(DATA), "--threads", "1",
                             "--source", f"mqtt://{broker.address}/frames/+", "--publish", f"mqtt://{broker.address}/results"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errs: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [errs.put(ln) for ln in proc.stderr], daemon=True)
    reader.start()
    try:
        wait_for(lambda: errs.get(timeout=30).startswith("INFO ready: "), 30, "the app's ready line")
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = b"corr-1"
        peer.send("frames/cam1", json.dumps({"id": "j-1", "inputs": x[:2].tolist()}))
        peer.send("frames/cam1", b"not json at all")
        peer.send("frames/cam2", npy(x[2:3]), props)
        results = [doc(m) for m in peer.take(2, "results")]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == 0
    assert [(r["id"], r["source"]) for r in results] == [("j-1", "mqtt:frames/cam1"), ("corr-1", "mqtt:frames/cam2")]
    got = np.concatenate([np.asarray(r["outputs"]["logits"], np.float32) for r in results])
    np.testing.assert_allclose(got, logits[:3], rtol=0, atol=1e-5)
    rest = [errs.get_nowait() for _ in range(errs.qsize())]
    assert any("skip mqtt:frames/cam1: payload is not valid JSON" in ln for ln in rest), rest
    stats = json.loads(next(ln for ln in rest if ln.startswith('{"event": "stats"')))
    assert (stats["processed"], stats["errors"], stats["published"], stats["publish_failed"], stats["dropped"]) == (2, 1, 2, 0, 0)
    peer.close()
