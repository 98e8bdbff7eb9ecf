"""``edgekit mqtt``: answer MQTT messages with a model (see :mod:`edgekit.runtime.mqtt`)."""

from __future__ import annotations

import json
import logging
import sys
import time

import click

from edgekit.cli.common import choose_option


@click.command()
@click.argument("path", type=click.Path())
@click.option("--broker", default="127.0.0.1:1883", show_default=True,
              help="Broker host[:port]; mqtts://host[:port] for TLS (port 8883 by default).")
@click.option("--in", "input_topic", required=True, help="Topic filter to subscribe to, e.g. sensors/+/frame.")
@click.option("--out", "output_topic", required=True, help="Topic for results (a v5 Response Topic on a request wins).")
@click.option("--errors", "error_topic", help="Topic for bad-payload reports.  [default: <out>/errors]")
@click.option("--status", "status_topic", help="Retained online/offline topic (offline is also the will).")
@click.option("--client-id", help="MQTT client id.  [default: edgekit-<hostname>-<random>]")
@click.option("--qos", type=click.IntRange(0, 2), default=1, show_default=True, help="QoS of the subscription and of every publish.")
@click.option("--keepalive", type=int, default=60, show_default=True, help="Seconds between pings when idle.")
@click.option("--queue-size", type=int, default=32, show_default=True, help="Messages waiting for inference; past it the oldest is dropped.")
@click.option("--max-payload", default="1MiB", show_default=True, help="Largest payload; bigger ones get an error report.")
@click.option("--max-pending", type=int, default=1000, show_default=True, help="Unacknowledged publishes held (e.g. while offline).")
@click.option("--backoff-min", type=float, default=1.0, show_default=True, help="First reconnect delay, seconds (doubles each try).")
@click.option("--backoff-max", type=float, default=60.0, show_default=True, help="Longest reconnect delay, seconds.")
@click.option("--connect-timeout", type=float, default=30.0, show_default=True, help="Give up if the first connection takes longer (0: never).")
@click.option("--session-expiry", type=int, default=0, show_default=True,
              help="Seconds the broker keeps our session and queues QoS>0 inputs while we are away (needs --client-id).")
@click.option("--mqtt-version", type=click.Choice(["5", "3.1.1"]), default="5", show_default=True)
@click.option("--tls", is_flag=True, help="Use TLS (implied by mqtts://).")
@click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle (default: the system's).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="Client certificate (mutual TLS).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="Client key (mutual TLS).")
@click.option("--tls-insecure", is_flag=True, help="Do not check the broker's host name (testing only).")
@click.option("--username", help="MQTT user name.")
@click.option("--password", envvar="EDGEKIT_MQTT_PASSWORD", show_envvar=True,
              help="MQTT password; prefer the environment variable (command lines show up in ps).")
@click.option("--metrics-port", type=int, help="Expose Prometheus /metrics on this port (0: a free one).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for /metrics.")
@click.option("--target", help="Which artifact of a folder (format:precision); default: the best validated one here.")
@click.option("--threads", type=int, help="Engine threads (default: all cores).")
@choose_option
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("-v", "--verbose", is_flag=True, help="Log connects and retries too, not only warnings.")
def mqtt(path: str, broker: str, input_topic: str, output_topic: str, error_topic: str | None, status_topic: str | None,
         client_id: str | None, qos: int, keepalive: int, queue_size: int, max_payload: str, max_pending: int,
         backoff_min: float, backoff_max: float, connect_timeout: float, session_expiry: int, mqtt_version: str,
         tls: bool, ca_certs: str | None, certfile: str | None, keyfile: str | None, tls_insecure: bool,
         username: str | None, password: str | None, metrics_port: int | None, metrics_host: str,
         target: str | None, threads: int | None, choose: str, no_verify: bool, verbose: bool) -> None:
    """Answer MQTT messages on --in with PATH (a model file or an edgekit output folder), results on --out.

    Payloads are JSON ({"id": ..., "inputs": {name: [[...]]}} or a bare nested list) or .npy/.npz
    bytes, as for `edgekit serve`. Bad payloads get one JSON report on --errors and the bridge goes
    on; lost brokers are reconnected with exponential back-off. SIGINT/SIGTERM stop it after the
    queued messages and print a `stopped: {...}` line with the counters.

    \b
    Examples:
      edgekit mqtt out/ --broker 127.0.0.1:1883 --in plant/+/frame --out plant/results
      mosquitto_pub -t plant/cam1/frame -m '{"id": "f-1", "inputs": [[...]]}'
      edgekit mqtt model.tflite --broker mqtts://broker.lan --in in --out out --username dev1 --metrics-port 9100
    """
    from edgekit.runtime.loader import load
    from edgekit.runtime.mqtt import Bridge, MqttConfig, parse_broker
    from edgekit.runtime.serve import parse_size

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port, scheme_tls = parse_broker(broker)
    # Checked before the model loads: a typo in a flag should not cost a model load to find out.
    config = MqttConfig(host=host, port=port, input_topic=input_topic, output_topic=output_topic, error_topic=error_topic,
                        status_topic=status_topic, client_id=client_id, qos=qos, keepalive=keepalive,
                        queue_size=queue_size, max_payload=parse_size(max_payload), max_pending=max_pending,
                        backoff_min=backoff_min, backoff_max=backoff_max, connect_timeout=connect_timeout,
                        session_expiry=session_expiry, protocol=mqtt_version, tls=tls or scheme_tls, ca_certs=ca_certs,
                        certfile=certfile, keyfile=keyfile, tls_insecure=tls_insecure, username=username,
                        password=password)
    t = time.perf_counter()
    session = load(path, target=target, num_threads=threads, verify=not no_verify, choose=choose)
    load_s = time.perf_counter() - t
    metrics = metrics_server = None
    if metrics_port is not None:
        from edgekit.runtime.metrics import Metrics, model_info

        metrics = Metrics(model_info(session), load_seconds=load_s)
        metrics_server = metrics.serve(metrics_host, metrics_port)
    bridge = Bridge(session, config, metrics=metrics)
    info = session.info

    def ready() -> None:
        extra = f", metrics on {metrics_server.url}/metrics" if metrics_server is not None else ""
        click.echo(f"edgekit mqtt: {bridge.target} ({info.get('engine')} {info.get('engine_version')}, "
                   f"{info.get('num_threads')} threads) on {config.broker} as {bridge.conn.client_id}: "
                   f"{config.input_topic} -> {config.output_topic} (errors: {config.error_topic}){extra}")
        sys.stdout.flush()

    try:
        stats = bridge.run_forever(on_ready=ready)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
    click.echo("stopped: " + json.dumps(stats))
