"""``edgekit doctor``: what this device is, which engines it has, and how to get the rest."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON.")
@click.option("--reprobe", is_flag=True, help="Probe every engine again, even where a verdict is cached.")
@click.option("--no-probe", is_flag=True,
              help="Do not load a model with each engine in a child process (availability checks only).")
def doctor(as_json: bool, reprobe: bool, no_probe: bool) -> None:
    """What this device is, which engines it has, which targets it can run, and how to get the rest.

    Each installed engine loads and runs a tiny model in a child process first, so one that crashes
    on this CPU is reported with its fix (cached per engine version and device; --reprobe redoes it).
    """
    from edgekit.runtime.doctor import diagnose

    d = diagnose(probe=not no_probe, reprobe=reprobe)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    dev = d["device"]
    click.echo(f"device   {dev['cpu']} · {dev['cores']} cores · {dev['machine']} · {dev['system']} {dev['release']}")
    if dev.get("cpu_core"):
        click.echo(f"cpu      {dev['cpu_core']}")
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
        p = d["probes"].get(fmt) or {}
        if b["available"]:
            probed = f"\n     probe: {p['verdict']}" + (f" [cached {p['created'][:10]}]" if p.get("cached") else "") \
                if p.get("status") == "runs" else ""
            click.echo(f"  ✅ {fmt:<9} can run here{probed}")
        else:
            click.echo(f"  ❌ {fmt:<9} {b['reason']}" + (f"\n     install: {b['install']}" if b["install"] else ""))
