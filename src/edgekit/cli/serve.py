"""``edgekit serve``: a model file or an output folder over HTTP (see :mod:`edgekit.runtime.serve`)."""

from __future__ import annotations

import click

from edgekit.cli.common import choose_option


@click.command()
@click.argument("path", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it (no authentication).")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port; 0 picks a free one (printed).")
@click.option("--target", help="Which artifact of a folder (format:precision); default: the best validated one here.")
@click.option("--threads", type=int, help="Engine threads (default: all cores).")
@choose_option
@click.option("--max-body", default="16MiB", show_default=True, help="Largest request body (413 above it), e.g. 1MiB.")
@click.option("--max-connections", type=int, default=64, show_default=True, help="Open connections served at once (503 above).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("--no-metrics", is_flag=True, help="Turn off Prometheus GET /metrics (on when edgekit[metrics] is installed).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def serve(path: str, host: str, port: int, target: str | None, threads: int | None, choose: str, max_body: str,
          max_connections: int, no_verify: bool, no_metrics: bool, verbose: bool) -> None:
    """Serve PATH (a model file or an edgekit output folder) over HTTP: /healthz, /metadata, /predict, /metrics.

    \b
    Examples:
      edgekit serve out/ --port 8080
      curl -s localhost:8080/predict -H 'Content-Type: application/json' -d '{"inputs": {"image": [[...]]}}'
      edgekit serve model.tflite --port 0 --max-body 1MiB
      curl -s localhost:8080/metrics   # Prometheus text; needs pip install 'edgekit[metrics]'
    """
    from edgekit.runtime.serve import parse_size, serve as run_serve

    run_serve(path, host=host, port=port, target=target, num_threads=threads, choose=choose, max_body=parse_size(max_body),
              max_connections=max_connections, verify=not no_verify, log_requests=verbose,
              metrics=not no_metrics)
