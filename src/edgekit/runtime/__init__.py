"""The slim runtime: load an artifact (or an edgekit output folder) and run it. numpy in, numpy out.

Never imports TensorFlow (the tests check it in a subprocess); each engine is imported lazily by
its backend.

Example:
    >>> import numpy as np, edgekit.runtime as rt
    >>> session = rt.load("out/")                                   # doctest: +SKIP
    >>> session.run(np.zeros((1, 8, 8, 1), np.float32))["logits"].shape  # doctest: +SKIP
    (1, 10)
    >>> rt.load("out/", choose="measure").info["chosen"]          # doctest: +SKIP
    'tflite:int8: measured fastest here (p50 2.31 ms vs tflite:fp32 4.46 ms); batch 1, 2 threads; ...'

The measured choice itself is :func:`edgekit.runtime.pick.pick` (the submodule keeps the name, so
it is not re-exported here as a function); its result is a :class:`Pick`.
"""

from __future__ import annotations

from edgekit.errors import BackendError, InputError, ModelError
from edgekit.manifest import Artifact, Manifest, TensorSpec
from edgekit.runtime.choose import Pick
from edgekit.runtime.loader import choose_artifact, load
from edgekit.runtime.quantize import dequantize, quantize
from edgekit.runtime.session import Session, run_batched

__all__ = [
    "Artifact",
    "BackendError",
    "InputError",
    "Manifest",
    "ModelError",
    "Pick",
    "Session",
    "TensorSpec",
    "choose_artifact",
    "dequantize",
    "load",
    "quantize",
    "run_batched",
]
