"""``edgekit doctor``: what this device is, which engines it has, and how to get the rest."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
def doctor(as_json: bool) -> None:
    """What this device is, which engines it has, which targets it can run, and how to get the rest."""
    from edgekit.runtime.doctor import diagnose

    d = diagnose()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    dev = d["device"]
    click.echo(f"device   {dev['cpu']} · {dev['cores']} cores · {dev['machine']} · {dev['system']} {dev['release']}")
    if dev.get("board"):
        click.echo(f"board    {dev['board']}" + (f" · L4T {dev['l4t']}" if dev.get("l4t") else ""))
    click.echo(f"isa      {', '.join(dev['cpu_flags']) or '-'}")
    click.echo(f"gpus     {', '.join(dev['gpus']) or 'none'}")
    click.echo(f"python   {d['python']}")
    click.echo("engines  " + (", ".join(f"{k} {v}" for k, v in dev["engines"].items()) or "none"))
    if d["onnx_providers"]:
        click.echo(f"onnxruntime providers  {', '.join(d['onnx_providers'])}")
    if d["throttling"]:
        click.echo(f"warning  {', '.join(d['throttling'])}")
    click.echo("")
    for fmt, b in d["backends"].items():
        if b["available"]:
            click.echo(f"  ✅ {fmt:<9} can run here")
        else:
            click.echo(f"  ❌ {fmt:<9} {b['reason']}" + (f"\n     install: {b['install']}" if b["install"] else ""))
