"""edgekit: convert Keras models for the edge, validate every artifact, bench it on the device.

The package root stays import-light: ``import edgekit`` pulls in neither TensorFlow nor an
inference engine. The heavy half lives in :mod:`edgekit.convert`; the slim half in
:mod:`edgekit.runtime`; :func:`edgekit.api.convert` converts a file or a zoo model
(:mod:`edgekit.zoo`) by name, as ``edgekit convert`` does.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
