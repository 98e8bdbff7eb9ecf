"""Data for calibration, validation and evaluation, as one :class:`Dataset` type.

Sources: arrays in memory, ``.npz``/``.npy`` files, image folders, generators, the digits set
bundled with scikit-learn, and random smoke data. :func:`open_dataset` turns a CLI or recipe
value into a dataset.

Only numpy is imported here: scikit-learn and Pillow load inside the functions that need them,
and TensorFlow never, so the slim runtime can read data too.

Example:
    >>> import numpy as np
    >>> from edgekit.manifest import TensorSpec
    >>> ds = from_arrays(np.zeros((10, 8, 8, 1)), y=np.arange(10))
    >>> ds = ds.check_against([TensorSpec("image", (None, 8, 8, 1), "float32")])
    >>> ds.inputs[0].dtype, len(ds.take(4))
    (dtype('float32'), 4)
"""

from edgekit.calibration.arrays import from_arrays, from_npy, from_npz
from edgekit.calibration.builtin import digits, random_like
from edgekit.calibration.dataset import Dataset
from edgekit.calibration.generator import from_generator
from edgekit.calibration.images import from_image_folder
from edgekit.calibration.opening import DEFAULT_LIMIT, open_dataset

__all__ = [
    "DEFAULT_LIMIT",
    "Dataset",
    "digits",
    "from_arrays",
    "from_generator",
    "from_image_folder",
    "from_npy",
    "from_npz",
    "open_dataset",
    "random_like",
]
