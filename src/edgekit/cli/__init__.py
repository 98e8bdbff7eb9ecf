"""The ``edgekit`` command: one module per command, each importing its heavy half inside the function,
so ``edgekit bench`` on a Raspberry Pi never touches TensorFlow.

* :mod:`.convert`: ``edgekit convert`` (flags -> :class:`edgekit.convert.flags.ConvertFlags` -> recipe)
* :mod:`.bench`: ``edgekit bench``; :mod:`.pick`: ``edgekit pick`` (the artifact measured fastest here); :mod:`.doctor`: ``edgekit doctor``; :mod:`.serve`: ``edgekit serve``
* :mod:`.mqtt`: ``edgekit mqtt`` (an MQTT input topic -> the model -> an output topic)
* :mod:`.zoo`: ``edgekit zoo list | train | export``
* :mod:`.common`: the one error -> exit-code wrapper (:class:`~.common.Group`), progress lines;
  :mod:`.table`: tables

Exit codes: 0 all good; 1 an artifact failed validation / export (the others are still written);
2 bad input (missing file, bad recipe, unsupported target, data that does not fit the model).

Example:
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(main, ["--version"]).output
    'edgekit, version 0.1.0\\n'
"""

from __future__ import annotations

import click

from edgekit import __version__
from edgekit.cli.bench import bench
from edgekit.cli.common import Group
from edgekit.cli.convert import convert
from edgekit.cli.doctor import doctor
from edgekit.cli.mqtt import mqtt
from edgekit.cli.pick import pick
from edgekit.cli.serve import serve
from edgekit.cli.zoo import zoo


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def main() -> None:
    """edgekit: convert Keras models for the edge, validate every artifact, bench them on the device."""


for _command in (convert, bench, pick, doctor, serve, mqtt, zoo):
    main.add_command(_command)

__all__ = ["main"]
