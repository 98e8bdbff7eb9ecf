"""The slim runtime: load an artifact (or an edgekit output folder) and run it. numpy in, numpy out.

Never imports TensorFlow (the tests check it in a subprocess); each engine is imported lazily by
its backend.

Example:
    >>> import numpy as np, edgekit.runtime as rt
    >>> session = rt.load("out/")                                   # doctest: +SKIP
    >>> session.run(np.zeros((1, 8, 8, 1), np.float32))["logits"].shape  # doctest: +SKIP
    (1, 10)
"""

from __future__ import annotations

from edgekit.errors import BackendError, InputError, ModelError
from edgekit.manifest import Artifact, Manifest, TensorSpec
from edgekit.runtime.loader import choose_artifact, load
from edgekit.runtime.session import Session, dequantize, quantize, run_batched

__all__ = [
    "Artifact",
    "BackendError",
    "InputError",
    "Manifest",
    "ModelError",
    "Session",
    "TensorSpec",
    "choose_artifact",
    "dequantize",
    "load",
    "quantize",
    "run_batched",
]
