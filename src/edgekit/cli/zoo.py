"""``edgekit zoo list | train | export``: the model zoo from the command line.

Importing this module imports click only; TensorFlow loads inside the commands that build models.

Example:
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(zoo, ["list", "--no-params"]).output.count("digits")  >= 12
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgekit.checks import positive_int
from edgekit.cli.common import Group, Progress
from edgekit.errors import InputError


def _shape(entry: Any) -> str:
    return ", ".join(f"{n}[{'x'.join(map(str, s))}] {d}" for n, s, d in entry.inputs)


@click.group(cls=Group)
def zoo() -> None:
    """The model zoo: tutorial architectures, trained on bundled data, convertible by name.

    \b
    Examples:
      edgekit zoo list
      edgekit zoo train text-lstm --epochs 5
      edgekit zoo export resnet-custom -o resnet.keras
      edgekit convert mobilenetv2 -t tflite:int8 -o out/
    """


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the zoo as JSON.")
@click.option("--no-params", is_flag=True, help="Skip building each model to count its parameters (no TensorFlow).")
def list_(as_json: bool, no_params: bool) -> None:
    """Every zoo model: name, description, parameters, input shape and the data it trains on."""
    from edgekit.zoo import ZOO

    rows = []
    for entry in ZOO.values():
        params = None
        if not no_params:
            from edgekit.zoo.training import build_model

            params = int(build_model(entry.name, seed=0).count_params())
        rows.append({"name": entry.name, "description": entry.description, "params": params,
                     "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in entry.inputs],
                     "data": entry.data, "train_data": entry.train_data, "epochs": entry.epochs,
                     "min_accuracy": entry.min_accuracy})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from edgekit.cli.table import render

    render(["name", "params", "input", "data", "description"],
           [[r["name"], "-" if r["params"] is None else f"{r['params']:,}", _shape(ZOO[r["name"]]), r["data"],
             r["description"]] for r in rows],
           title="edgekit zoo (train: edgekit zoo train NAME; convert: edgekit convert NAME -t ... -o out/)")


@zoo.command()
@click.argument("name")
@click.option("--epochs", type=int, help="Training epochs (default: the zoo entry's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (same seed, same weights).")
@click.option("--no-cache", is_flag=True, help="Retrain even when a cached model exists (and do not cache).")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def train(name: str, epochs: int | None, seed: int, no_cache: bool, as_json: bool, quiet: bool) -> None:
    """Train zoo model NAME on its bundled data and print its accuracy on the eval split."""
    if epochs is not None:  # not given: the entry's own
        positive_int(epochs, "--epochs", error=InputError)
    from edgekit.zoo import get_entry
    from edgekit.zoo.training import cache_path, evaluate, train_model

    entry = get_entry(name)
    used = entry.epochs if epochs is None else epochs
    model = train_model(name, seed=seed, epochs=used, cache=not no_cache, progress=Progress(quiet))
    result = {"name": name, "seed": seed, "epochs": used, "params": int(model.count_params()),
              "data": entry.data, **evaluate(name, model)}
    if not no_cache:
        result["cached"] = str(cache_path(name, seed, used))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    ink = f", ink MAE {result['ink_mae']:.4f}" if "ink_mae" in result else ""
    click.echo(f"{name}: eval accuracy {result['accuracy']:.2f}% on {result['eval_data']} ({result['samples']} samples; "
               f"{result['data']}){ink}; {used} epochs, seed {seed}, {result['params']:,} params")
    if "cached" in result:
        click.echo(f"cached: {result['cached']}")


@zoo.command()
@click.argument("name")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="The .keras file to write.")
@click.option("--epochs", type=int, help="Training epochs (default: the zoo entry's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def export(name: str, out: str, epochs: int | None, seed: int, force: bool, quiet: bool) -> None:
    """Write trained zoo model NAME as a Keras 3 .keras file (custom layers load after importing edgekit)."""
    path = Path(out)
    if path.suffix != ".keras":
        raise InputError(f"zoo export writes Keras 3 .keras files; got {out!r}: use e.g. -o {path.stem or name}.keras")
    if path.exists() and not force:
        raise InputError(f"{out} exists: pass --force to overwrite it, or pick another -o")
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist: create it first")
    from edgekit.zoo.training import train_model

    model = train_model(name, seed=seed, epochs=epochs, progress=Progress(quiet))
    model.save(path)
    click.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {int(model.count_params()):,} params); "
               f"convert it with: edgekit convert {path} -t tflite:fp32 -o out/")
