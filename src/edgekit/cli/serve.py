"""``edgekit serve``: a model file or an output folder over HTTP (see :mod:`edgekit.runtime.serve`)."""

from __future__ import annotations

import click

from edgekit.cli.common import choose_option


@click.command()
@click.argument("path", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it (use --token then).")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port; 0 picks a free one (printed).")
@click.option("--target", help="Which artifact of a folder (format:precision); default: the best validated one here.")
@click.option("--threads", type=int, help="Engine threads (default: all cores).")
@choose_option
@click.option("--max-body", default="16MiB", show_default=True, help="Largest request body (413 above it), e.g. 1MiB.")
@click.option("--max-json-body", default="1MiB", show_default=True,
              help="Largest JSON body (413): JSON costs ~40x its size to parse; send big batches as .npy.")
@click.option("--max-decoded", default="64MiB", show_default=True,
              help="Largest .npy/.npz arrays after decoding, checked on their headers before allocating (413).")
@click.option("--max-batch", type=click.IntRange(min=1),
              help="Samples per request (413 above). Default: sized from the model (256 MiB of engine memory, at most 4096); /metadata shows it.")
@click.option("--max-connections", type=click.IntRange(min=1), default=64, show_default=True,
              help="Connections at once; when full an idle or slow one is closed, 503 only when all are busy.")
@click.option("--max-connections-per-client", type=click.IntRange(min=1),
              help="Connections one client address may hold (default: max-connections / 4, for remote addresses; loopback clients share one address and get --max-connections).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request may take to arrive, headers and body in total (slow senders are cut off; 408).")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--allow-nonfinite", is_flag=True, help="Accept NaN/Infinity in float inputs (400 by default).")
@click.option("--token", envvar="EDGEKIT_TOKEN", show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on all endpoints but /healthz (401 otherwise).")
@click.option("--allow-host", multiple=True, metavar="NAME",
              help="Host header names accepted besides localhost/127.0.0.1/[::1] when bound to loopback (DNS-rebinding guard; repeatable).")
@click.option("--reload", is_flag=True, help="Watch PATH; swap in a changed folder once it loads and verifies (else keep serving).")
@click.option("--reload-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between --reload polls (a change must be seen twice in a row).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest (at start; reloads always verify).")
@click.option("--no-metrics", is_flag=True, help="Turn off Prometheus GET /metrics (on when edgekit[metrics] is installed).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def serve(path: str, host: str, port: int, target: str | None, threads: int | None, choose: str, max_body: str,
          max_json_body: str, max_decoded: str, max_batch: int | None, max_connections: int,
          max_connections_per_client: int | None, request_timeout: float, idle_timeout: float, allow_nonfinite: bool,
          token: str | None, allow_host: tuple[str, ...], reload: bool, reload_interval: float, no_verify: bool, no_metrics: bool,
          verbose: bool) -> None:
    """Serve PATH (a model file or an edgekit output folder) over HTTP: /healthz, /metadata, /predict, /metrics.

    Every request is bounded: body bytes, JSON bytes, decoded array bytes and batch size (413),
    time to arrive (408), connections per client. Errors are one-line JSON. Bound to loopback,
    only localhost Host names are answered (403 otherwise).

    \b
    Examples:
      edgekit serve out/ --port 8080
      curl -s localhost:8080/predict -H 'Content-Type: application/json' -d '{"inputs": {"image": [[...]]}}'
      edgekit serve model.tflite --port 0 --max-body 1MiB --max-batch 64
      EDGEKIT_TOKEN=s3cret edgekit serve out/ --host 0.0.0.0 --reload
      curl -s localhost:8080/metrics -H 'Authorization: Bearer s3cret'   # Prometheus; pip install 'edgekit[metrics]'
    """
    from edgekit.runtime.serve import ServeLimits, parse_size, serve as run_serve

    limits = ServeLimits(max_body=parse_size(max_body), max_json_body=parse_size(max_json_body),
                         max_decoded=parse_size(max_decoded), max_batch=max_batch, max_connections=max_connections,
                         max_connections_per_client=max_connections_per_client, request_timeout=request_timeout,
                         idle_timeout=idle_timeout, allow_nonfinite=allow_nonfinite, token=token or None,
                         allowed_hosts=allow_host)
    run_serve(path, host=host, port=port, target=target, num_threads=threads, choose=choose, limits=limits,
              verify=not no_verify, log_requests=verbose, metrics=not no_metrics, reload=reload,
              reload_interval=reload_interval)
