"""The :class:`Dataset` every data source returns: one array per model input, plus labels.

Calibration (int8 conversion), validation and evaluation all consume the same object, so the
checks that data fits a model live here too (:meth:`Dataset.check_against`).

Example:
    >>> import numpy as np
    >>> ds = Dataset((np.zeros((5, 8, 8, 1), "float32"),), np.arange(5), "zeros")
    >>> len(ds), ds.num_inputs, ds.take(2).labels.tolist()
    (5, 1, [3, 4])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgekit.calibration._util import as_input_array, as_numeric, cast_array, seed_int
from edgekit.checks import positive_int
from edgekit.errors import DataError
from edgekit.manifest import TensorSpec, atomic_open


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray | None:
    """The rows :meth:`Dataset.take` keeps of ``n``: sorted, seeded, without replacement; ``None`` = all.

    Sources that can skip reading rows (image folders decode only these files) draw the same
    subset as ``take`` would from the whole set.

    Example:
        >>> sample_indices(10, 3, seed=1).tolist() == sample_indices(10, 3, seed=1).tolist()
        True
        >>> sample_indices(10, None), sample_indices(10, 10)
        (None, None)
    """
    if limit is None:
        return None
    limit = positive_int(limit, "limit", fix="pass how many samples to use, or None for all of them", error=DataError)
    if limit >= n:
        return None
    return np.sort(np.random.default_rng(seed_int(seed)).choice(n, size=limit, replace=False))


def subset_name(name: str, kept: int, total: int, seed: int) -> str:
    """How a subset's name records what it was drawn from.

    Example:
        >>> subset_name("calib.npz", 3, 10, 0)
        'calib.npz (n=3 of 10, seed=0)'
    """
    return f"{name} (n={kept} of {total}, seed={seed})"


# eq=False: the fields hold numpy arrays, whose ``==`` is elementwise and cannot be a bool.
@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples for a model: one array per input, all with the same number of rows.

    Attributes:
        inputs: One array per model input, each shaped ``(N, ...)``.
        labels: ``(N,)`` integer class labels (or ``(N, ...)`` regression targets), or ``None``.
        name: Human description, e.g. ``"digits:eval"`` or ``"calib.npz"``.
        classes: Class names, index = label, where the source knows them (image folders, digits).

    Raises:
        DataError: No inputs, inputs with different row counts, zero rows, non-numeric data, or
            labels whose length is not ``N``.

    Example:
        >>> import numpy as np
        >>> ds = Dataset((np.ones((3, 2)),), None, "ones")
        >>> [x.shape for x in next(ds.samples())]
        [(1, 2)]
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None = None
    name: str = "data"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        inputs = self.inputs
        # A bare array is iterable row by row; tuple(x) would silently make N one-row inputs.
        if isinstance(inputs, np.ndarray) or not isinstance(inputs, (tuple, list)):
            raise DataError(
                f"Dataset inputs must be a tuple of arrays (one per model input), got {type(inputs).__name__}: "
                f"wrap a single array as (x,) or use from_arrays(x)"
            )
        if not inputs:
            raise DataError(f"{self.name} has no input arrays: pass at least one array of shape (N, ...)")
        arrays = tuple(as_input_array(x, f"{self.name} input {i}") for i, x in enumerate(inputs))
        n = len(arrays[0])
        for i, arr in enumerate(arrays[1:], start=1):
            if len(arr) != n:
                raise DataError(
                    f"{self.name} inputs have different sample counts ({n} in input 0, {len(arr)} in input {i}): "
                    f"every input needs one row per sample"
                )
        if n == 0:
            raise DataError(f"{self.name} has no samples (0 rows): pass data with at least one sample")
        labels = self.labels
        if labels is not None:
            labels = as_numeric(labels, f"{self.name} labels")
            if labels.ndim == 0 or len(labels) != n:
                got = "a scalar" if labels.ndim == 0 else f"{len(labels)} labels"
                raise DataError(
                    f"{self.name} has {n} samples but {got}: pass one label per sample, shape ({n},)"
                )
        object.__setattr__(self, "inputs", arrays)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return len(self.inputs[0])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{x.shape} {x.dtype}" for x in self.inputs)
        y = "none" if self.labels is None else f"{self.labels.shape} {self.labels.dtype}"
        return f"Dataset({self.name!r}, inputs=[{shapes}], labels={y})"

    @property
    def num_inputs(self) -> int:
        """How many model inputs the data feeds."""
        return len(self.inputs)

    def take(self, limit: int | None, seed: int = 0) -> "Dataset":
        """A seeded random subset of ``limit`` samples, drawn without replacement.

        The chosen indices are sorted, so the result depends only on ``(limit, seed)`` and keeps
        the source order.

        Args:
            limit: How many samples to keep; ``None`` or ``>= len(self)`` returns ``self``.
            seed: Seed for ``np.random.default_rng``.

        Returns:
            The subset (its name records ``n``, the total and the seed).

        Example:
            >>> import numpy as np
            >>> ds = Dataset((np.arange(10)[:, None],), np.arange(10), "ten")
            >>> ds.take(3, seed=1).labels.tolist() == ds.take(3, seed=1).labels.tolist()
            True
            >>> ds.take(None) is ds, len(ds.take(3))
            (True, 3)
        """
        idx = sample_indices(len(self), limit, seed)
        if idx is None:
            return self
        return replace(
            self,
            inputs=tuple(x[idx] for x in self.inputs),
            labels=None if self.labels is None else self.labels[idx],
            name=subset_name(self.name, len(idx), len(self), seed),
        )

    def batches(self, batch_size: int) -> Iterator[tuple[list[np.ndarray], np.ndarray | None]]:
        """Consecutive batches in order; the last one may be short.

        Example:
            >>> import numpy as np
            >>> ds = Dataset((np.arange(5)[:, None],), np.arange(5), "five")
            >>> [y.tolist() for _, y in ds.batches(2)]
            [[0, 1], [2, 3], [4]]
        """
        size = positive_int(batch_size, "batch_size", fix="pass e.g. batch_size=32", error=DataError)
        for start in range(0, len(self), size):
            stop = start + size
            xs = [x[start:stop] for x in self.inputs]
            yield xs, None if self.labels is None else self.labels[start:stop]

    def samples(self) -> Iterator[list[np.ndarray]]:
        """One sample at a time, each array with a leading batch axis of 1.

        This is the shape TFLite's ``representative_dataset`` expects from each yield.

        Example:
            >>> import numpy as np
            >>> ds = Dataset((np.zeros((2, 3)), np.ones((2, 4))), None, "two")
            >>> [[x.shape for x in s] for s in ds.samples()]
            [[(1, 3), (1, 4)], [(1, 3), (1, 4)]]
        """
        for i in range(len(self)):
            yield [x[i : i + 1] for x in self.inputs]

    def cast(self, dtypes: Sequence[str]) -> "Dataset":
        """Cast each input to a dtype, refusing casts that would round or overflow.

        Args:
            dtypes: One numpy dtype name per input, e.g. ``["float32"]``.

        Raises:
            DataError: Wrong number of dtypes, float -> int, or integer values that do not fit.

        Example:
            >>> import numpy as np
            >>> Dataset((np.zeros((2, 2)),), None, "z").cast(["float32"]).inputs[0].dtype
            dtype('float32')
        """
        if isinstance(dtypes, str) or len(dtypes) != self.num_inputs:
            raise DataError(
                f"cast() got {dtypes!r} for {self.num_inputs} input(s): pass a list with one dtype per input, "
                f"e.g. {['float32'] * self.num_inputs}"
            )
        new = tuple(cast_array(x, dt, f"{self.name} input {i}") for i, (x, dt) in enumerate(zip(self.inputs, dtypes)))
        return replace(self, inputs=new)

    def check_against(self, specs: Sequence[TensorSpec], what: str = "calibration data") -> "Dataset":
        """Check the data fits a model's inputs and cast it to their dtypes.

        Checks the number of inputs, the per-sample shape (``spec.shape[1:]``; ``None`` matches
        any size) and the dtype kind. Float or integer data for a float input is cast to the
        input's dtype; float data for an integer input is refused (it needs quantizing). Nothing
        is reshaped: a missing channel axis is reported with the fix, not added.

        Args:
            specs: The model's input specs, in order.
            what: What the data is for, used to start error messages.

        Returns:
            The dataset, cast where needed.

        Raises:
            DataError: One line naming the data's and the model input's shape and dtype, and a fix.

        Example:
            >>> import numpy as np
            >>> spec = TensorSpec("image", (None, 8, 8, 1), "float32")
            >>> ds = Dataset((np.zeros((4, 8, 8, 1)),), None, "z").check_against([spec])
            >>> ds.inputs[0].dtype
            dtype('float32')
        """
        from edgekit.calibration._check import check_inputs  # split out to keep this module short

        checked = check_inputs(self.inputs, tuple(specs), what)
        if all(a is b for a, b in zip(checked, self.inputs)):
            return self
        return replace(self, inputs=checked)

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write the data as ``.npz``: ``x`` (or ``x0``, ``x1``, ...), ``y`` and ``classes`` if known.

        :func:`~edgekit.calibration.from_npz` reads the file back as the same dataset.

        Example:
            >>> import os, tempfile, numpy as np
            >>> path = os.path.join(tempfile.mkdtemp(), "calib.npz")
            >>> Dataset((np.zeros((2, 3)),), np.array([0, 1]), "z").to_npz(path)
            >>> sorted(np.load(path).files)
            ['x', 'y']
        """
        path = Path(path)
        if self.num_inputs == 1:
            arrays = {"x": self.inputs[0]}
        else:
            arrays = {f"x{i}": x for i, x in enumerate(self.inputs)}
        if self.labels is not None:
            arrays["y"] = self.labels
        if self.classes:
            arrays["classes"] = np.asarray(self.classes, dtype=str)
        # Write beside the target and rename, so an interrupted write never leaves a truncated npz.
        try:
            with atomic_open(path) as f:
                np.savez(f, **arrays)
        except OSError as exc:  # no such folder, no permission, disk full: nothing half-written is left
            raise DataError(f"cannot write {path}: {exc.strerror}: create the folder or pick another path") from None
