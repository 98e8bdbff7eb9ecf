#!/usr/bin/env python3
"""Embed the edgekit runtime in a long-running IoT app: read inputs, infer, publish, never fall over.

Needs only ``pip install 'edgekit[tflite]'`` (numpy, click, LiteRT): no TensorFlow.

Sources (``--source``):

* ``stdin``: one JSON document per line, ``{"id": "cam-1/42", "inputs": {"image": [[...]]}}`` or, for
  a one-input model, ``{"id": ..., "inputs": [[...]]}`` or a bare nested list. Ends at EOF.
* ``folder``: ``.npy`` (one array) or ``.npz`` (named arrays) files dropped into ``--watch DIR``.
  Producers should write to a temporary name and rename into the folder; files are only taken once
  their size has stayed the same for one poll, so slow writers are safe too. Handled files move to
  ``DIR/processed/`` (or are deleted with ``--delete``), bad ones to ``DIR/failed/``. Runs until
  SIGINT/SIGTERM.
* ``mqtt://host[:port]/topic/filter`` (``mqtts://`` for TLS): each message on the filter (``+``/``#``
  allowed), as JSON or raw ``.npy``/``.npz`` bytes like ``edgekit serve`` takes; ``id`` from the
  JSON or the MQTT v5 Correlation Data. The broker is reconnected with exponential back-off. Runs
  until SIGINT/SIGTERM. (``edgekit mqtt`` is the full bridge: error topic, metrics, TLS options.)

Results (``--publish``): ``stdout`` (one JSON line each), an ``http://`` / ``https://`` URL that
receives each result as a JSON POST (urllib; a failed POST is logged and dropped, never retried
forever, so memory stays bounded), or ``mqtt://host[:port]/topic`` (QoS 1; held across a broker
restart up to 1000 unacknowledged results, dropped and counted past that).

Memory is bounded: a reader thread feeds a ``queue.Queue(maxsize=--queue-size)`` (a full queue
makes the reader wait: back-pressure; for MQTT, whose network thread must not wait, the oldest
queued message is dropped instead and counted in ``dropped``), the folder watcher looks at no more
than ``--queue-size`` candidate files per poll, and nothing accumulates per input. A bad input (malformed JSON, wrong
shape or dtype, unreadable file) is logged to stderr as one ``skip`` line and skipped. SIGINT and
SIGTERM stop the loop after the current input; the app prints one ``stats`` JSON line to stderr
and exits 0.

Example:
    $ python examples/iot_app.py tests/data/digits-int8 --source stdin < samples.jsonl
    $ python examples/iot_app.py out/ --source folder --watch /var/spool/frames --publish http://127.0.0.1:9000/results
    $ python examples/iot_app.py out/ --source mqtt://127.0.0.1:1883/plant/+/frame --publish mqtt://127.0.0.1:1883/plant/results
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import edgekit.runtime as rt
from edgekit.errors import EdgekitError, InputError
from edgekit.runtime import mqtt
from edgekit.runtime.serve import payload

log = logging.getLogger("iot_app")
_EOF = object()  # the stdin reader's end marker on the queue
MAX_LINE = 16 << 20  # characters; longer stdin lines are skipped as errors


class Item:
    """One unit of work: where it came from and its content (a JSON line, a file path or MQTT bytes)."""

    __slots__ = ("source", "data", "path", "error", "raw", "ident", "ctype")

    def __init__(self, source: str, data: str | None = None, path: Path | None = None, error: str | None = None,
                 raw: bytes | None = None, ident: str | None = None, ctype: str | None = None) -> None:
        self.source, self.data, self.path, self.error = source, data, path, error
        self.raw, self.ident, self.ctype = raw, ident, ctype

    @classmethod
    def from_mqtt(cls, msg: mqtt.Inbound) -> "Item":
        """An MQTT message (see :class:`edgekit.runtime.mqtt.Inbound`) as an Item."""
        return cls(f"mqtt:{msg.topic}", raw=msg.payload, error=msg.error, ident=msg.correlation_text, ctype=msg.content_type)


def read_stdin(q: "queue.Queue[Any]", stop: threading.Event, stream: Any = None, max_line: int = MAX_LINE) -> None:
    """Put each non-empty stdin line on ``q`` (blocking when it is full); ``_EOF`` at the end.

    A line longer than ``max_line`` characters is dropped as it is read (never held whole) and
    queued as an error item, so one runaway producer cannot exhaust memory.

    Example:
        >>> import io; q = queue.Queue(4); read_stdin(q, threading.Event(), io.StringIO('[1]\\n\\n[2]\\n'))
        >>> [q.get().data for _ in range(2)], q.get() is _EOF
        (['[1]\\n', '[2]\\n'], True)
    """
    stream = stream or sys.stdin
    n = 0
    while not stop.is_set():
        line = stream.readline(max_line + 1)
        if not line:
            break
        n += 1
        if len(line) > max_line and not line.endswith("\n"):
            while True:
                rest = stream.readline(1 << 16)
                if not rest or rest.endswith("\n"):
                    break
            _put(q, Item(f"stdin:{n}", error=f"line is longer than {max_line} characters"), stop)
        elif line.strip():
            _put(q, Item(f"stdin:{n}", data=line), stop)
    _put(q, _EOF, stop)


def _put(q: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def stable_files(folder: Path, limit: int, seen: dict[str, int]) -> Iterator[Path]:
    """The oldest ``limit`` ``.npy``/``.npz`` files whose size did not change since the last poll.

    ``seen`` (name -> size at the last poll) is rebuilt each call from at most ``limit`` files, so
    it stays bounded however many files pile up.

    Example:
        >>> import tempfile, numpy as np; d = Path(tempfile.mkdtemp()); np.save(d / "a.npy", np.zeros(2)); seen = {}
        >>> list(stable_files(d, 8, seen)), [p.name for p in stable_files(d, 8, seen)]
        ([], ['a.npy'])
    """
    try:
        with os.scandir(folder) as it:
            entries = [(e.stat().st_mtime, e.name, e.stat().st_size) for e in it
                       if e.is_file() and e.name.endswith((".npy", ".npz")) and not e.name.startswith(".")]
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
        return
    oldest = heapq.nsmallest(limit, entries)
    previous = dict(seen)
    seen.clear()
    for _, name, size in oldest:
        seen[name] = size
        if previous.get(name) == size:
            yield folder / name


def watch_folder(folder: Path, q: "queue.Queue[Any]", stop: threading.Event, poll: float, limit: int,
                 inflight: set[str], lock: threading.Lock) -> None:
    """Poll ``folder`` and queue stable files not already queued (``inflight`` is bounded by the queue)."""
    seen: dict[str, int] = {}
    while not stop.is_set():
        for path in stable_files(folder, limit, seen):
            with lock:
                # The main loop moves a file before it leaves `inflight`: "not in flight" and "still
                # there" together mean "not handled yet", even if the listing is a poll old.
                if path.name in inflight or not path.exists():
                    continue
                inflight.add(path.name)
            _put(q, Item(f"file:{path.name}", path=path), stop)
        stop.wait(poll)


def decode(item: Item, session: rt.Session) -> tuple[str | None, Any]:
    """(id, feeds) for one item; raises EdgekitError (InputError) on anything malformed."""
    if item.error:
        raise InputError(item.error)
    if item.raw is not None:
        ident, parsed = mqtt.parse_payload(item.raw, content_type=item.ctype, max_unpacked=64 << 20)
        return (item.ident if ident is None else str(ident)), mqtt.to_feeds(parsed, session)
    if item.path is not None:
        data = item.path.read_bytes()
        if item.path.suffix == ".npz":
            return item.path.stem, payload.feeds_from_arrays(payload.load_npz(data, 64 << 20, what="file"), session.inputs)
        return item.path.stem, payload.feeds_from_arrays(payload.load_npy(data, what="file"), session.inputs)
    doc = payload.parse_json(item.data.encode(), what="line")
    ident = doc.get("id") if isinstance(doc, dict) else None
    return (None if ident is None else str(ident)), payload.feeds_from_json(doc, session.inputs, quantize_io=session.quantize_io)


class Publisher:
    """Sends each result to stdout (JSON lines), POSTs it to a URL or publishes it on an MQTT topic."""

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        if target != "stdout" and not target.startswith(("http://", "https://", "mqtt://", "mqtts://")):
            raise SystemExit(f"error: --publish must be 'stdout', an http(s):// URL or mqtt://host[:port]/topic, got {target!r}")
        self.target, self.timeout = target, timeout
        self.sent = self.failed = 0
        self.mqtt: mqtt.Connection | None = None
        if target.startswith(("mqtt://", "mqtts://")):
            host, port, tls, self.topic = mqtt.parse_url(target)
            self.mqtt = mqtt.Connection(mqtt.MqttConfig(host=host, port=port, tls=tls, output_topic=self.topic))
            self.mqtt.start()  # BrokerError (one line) if the broker cannot be reached

    def close(self) -> None:
        """Wait (a few seconds at most) for the broker to acknowledge what was published, disconnect."""
        if self.mqtt is not None:
            self.mqtt.stop(drain_seconds=5.0)
            s = self.mqtt.stats()
            # "published" means acknowledged by the broker; refused or still unacknowledged ones failed.
            self.sent, self.failed = s["acked"], s["publish_failed"] + max(0, s["sent"] - s["acked"])

    def __call__(self, result: dict[str, Any]) -> None:
        line = json.dumps(result)
        if self.mqtt is not None:
            # QoS 1; paho holds it across a reconnect. A full paho queue is counted at close().
            self.sent += self.mqtt.publish(self.topic, line.encode())
            return
        if self.target == "stdout":
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            self.sent += 1
            return
        req = urllib.request.Request(self.target, data=line.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
            self.sent += 1
        except (urllib.error.URLError, OSError) as exc:
            self.failed += 1
            log.warning("publish failed for %s: %s (result dropped)", result.get("source"), exc)


def finish(item: Item, ok: bool, folder: Path | None, delete: bool) -> None:
    """Move (or delete) a handled file so it is not taken again."""
    if item.path is None or folder is None:
        return
    try:
        if ok and delete:
            item.path.unlink()
        else:
            dest = folder / ("processed" if ok else "failed")
            dest.mkdir(exist_ok=True)
            os.replace(item.path, dest / item.path.name)
    except OSError as exc:
        log.warning("cannot move %s: %s", item.path, exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="edgekit output folder (manifest.json) or a model file")
    p.add_argument("--source", default="stdin", help="stdin, folder, or mqtt://host[:port]/topic/filter")
    p.add_argument("--watch", type=Path, help="folder to watch (--source folder)")
    p.add_argument("--publish", default="stdout",
                   help="'stdout', an http(s):// URL to POST each result to, or mqtt://host[:port]/topic")
    p.add_argument("--target", help="artifact of the folder, e.g. tflite:int8 (default: best validated here)")
    p.add_argument("--threads", type=int, help="engine threads (default: all cores)")
    p.add_argument("--choose", choices=("rules", "measure"), default="rules",
                   help="folders: the rule table's pick, or the artifact measured fastest here (cached)")
    p.add_argument("--queue-size", type=int, default=32, help="bounded input queue (back-pressure)")
    p.add_argument("--poll", type=float, default=0.5, help="folder poll interval, seconds")
    p.add_argument("--delete", action="store_true", help="delete handled files instead of moving them to processed/")
    p.add_argument("--metrics-port", type=int, help="expose Prometheus /metrics on this port (pip install 'edgekit[metrics]')")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics (default 127.0.0.1)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    source_mqtt = args.source.startswith(("mqtt://", "mqtts://"))
    if args.source not in ("stdin", "folder") and not source_mqtt:
        p.error(f"--source must be stdin, folder or mqtt://host[:port]/topic, got {args.source!r}")
    if args.source == "folder" and (args.watch is None or not args.watch.is_dir()):
        p.error("--source folder needs --watch DIR (an existing folder)")
    if args.queue_size < 1:
        p.error("--queue-size must be >= 1")
    if source_mqtt and args.publish.startswith(("mqtt://", "mqtts://")):
        try:
            src, dst = mqtt.parse_url(args.source), mqtt.parse_url(args.publish)
        except EdgekitError as exc:
            p.error(str(exc))
        if src[:2] == dst[:2] and mqtt.topic_matches(src[3], dst[3]):
            p.error(f"--publish topic {dst[3]!r} matches the --source filter {src[3]!r}: the app would answer its own results")

    q: queue.Queue[Any] = queue.Queue(maxsize=args.queue_size)
    source: mqtt.Connection | None = None
    try:
        session = rt.load(args.model, target=args.target, num_threads=args.threads, choose=args.choose)
        publish = Publisher(args.publish)
        if source_mqtt:
            host, port, tls, topic = mqtt.parse_url(args.source)
            # The Connection puts messages straight on `q` (drop-oldest when it is full).
            source = mqtt.Connection(mqtt.MqttConfig(host=host, port=port, tls=tls, input_topic=topic,
                                                     queue_size=args.queue_size), inbox=q)
            source.start()
        metrics = metrics_server = None
        if args.metrics_port is not None:
            from edgekit.runtime.metrics import Metrics, model_info

            # The same series `edgekit serve` exposes, endpoint "frame": a fleet dashboard reads both.
            metrics = Metrics(model_info(session))
            metrics_server = metrics.serve(args.metrics_host, args.metrics_port)
            log.info("metrics on %s/metrics", metrics_server.url)
    except EdgekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    inflight: set[str] = set()
    lock = threading.Lock()
    reader: threading.Thread | None = None
    if source_mqtt:
        pass  # paho's network thread is the reader
    elif args.source == "stdin":
        reader = threading.Thread(target=read_stdin, args=(q, stop), daemon=True, name="stdin")
    else:
        reader = threading.Thread(target=watch_folder, daemon=True, name="watch",
                                  args=(args.watch, q, stop, args.poll, args.queue_size, inflight, lock))
    if reader is not None:
        reader.start()
    log.info("ready: %s on %s, source %s, publishing to %s", session.artifact.target if session.artifact else session.path,
             session.info.get("engine"), args.source, args.publish)

    done = errors = 0
    started = time.monotonic()
    while not stop.is_set():
        try:
            item = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is _EOF:
            break
        if isinstance(item, mqtt.Inbound):
            item = Item.from_mqtt(item)
        t = time.perf_counter()
        try:
            ident, feeds = decode(item, session)
            outputs = session.run(feeds)
            ms = (time.perf_counter() - t) * 1e3
        except (EdgekitError, OSError) as exc:
            errors += 1
            log.warning("skip %s: %s", item.source, exc)
            finish(item, False, args.watch, args.delete)
            if metrics is not None:
                metrics.observe("frame", "bad_input", time.perf_counter() - t)
        else:
            done += 1
            publish({"id": ident, "source": item.source, "outputs": payload.outputs_to_json(outputs),
                     "top1": payload.top1(outputs), "latency_ms": round(ms, 3)})
            finish(item, True, args.watch, args.delete)
            if metrics is not None:
                metrics.observe("frame", "ok", time.perf_counter() - t)
        finally:
            if item.path is not None:
                with lock:
                    inflight.discard(item.path.name)
    stop.set()
    if source is not None:
        source.stop(drain_seconds=0)
    if metrics_server is not None:
        metrics_server.shutdown()
    publish.close()
    stats = {"event": "stats", "processed": done, "errors": errors, "published": publish.sent,
             "publish_failed": publish.failed, "uptime_s": round(time.monotonic() - started, 2)}
    if source is not None:
        stats["dropped"] = source.stats()["dropped"]
    print(json.dumps(stats), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
