"""Datasets from a generator, an iterable or a zero-argument callable returning one.

Item rules (the same for every item of one source):

* ``x`` or ``(x, y)``: a **tuple of length 2** is always ``(inputs, labels)``;
* ``x`` is one array, a **list** of arrays (several model inputs, in order) or a **dict**
  name -> array (several inputs, in insertion order);
* whether an item is a batch (leading sample axis, concatenated along axis 0) or a single
  sample (stacked) is decided once, from the first item, unless ``batched`` says so: a first
  item with a scalar label means single samples; otherwise items are batches. That is the
  convention of TFLite's ``representative_dataset`` (which yields batches of 1), so such a
  generator can be passed as is.

Example:
    >>> import numpy as np
    >>> def rep():
    ...     for _ in range(100):
    ...         yield [np.zeros((1, 4), "float32")]
    >>> ds = from_generator(rep, limit=10)
    >>> len(ds), ds.inputs[0].shape
    (10, (10, 4))
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from edgekit.calibration._util import as_numeric
from edgekit.checks import positive_int
from edgekit.calibration.dataset import Dataset
from edgekit.errors import DataError

_ITEM_FORMS = "yield x or (x, y), where x is an array, a list of arrays or a dict of arrays"


def _split_item(item: Any, k: int, name: str) -> tuple[list[np.ndarray], Any]:
    """``(list of input arrays, raw labels or None)`` for item number ``k``."""
    y = None
    if isinstance(item, tuple):
        if len(item) != 2:
            raise DataError(
                f"{name} item {k} is a tuple of {len(item)} elements but tuples mean (x, y): {_ITEM_FORMS} "
                f"(use a list for several inputs)"
            )
        item, y = item
    if isinstance(item, Mapping):
        parts = list(item.values())
    elif isinstance(item, list):
        parts = item
    else:
        parts = [item]
    if not parts:
        raise DataError(f"{name} item {k} has no input arrays: {_ITEM_FORMS}")
    xs = [as_numeric(p, f"{name} item {k} input {j}") for j, p in enumerate(parts)]
    return xs, y


def _as_batch(
    xs: list[np.ndarray], y: Any, batched: bool, k: int, name: str
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The item as arrays with a leading sample axis, all of the same length."""
    labels = None if y is None else as_numeric(y, f"{name} item {k} labels")
    if not batched:
        return [x[None] for x in xs], None if labels is None else labels[None]
    for j, x in enumerate(xs):
        if x.ndim == 0:
            raise DataError(
                f"{name} item {k} input {j} is a scalar but items are batches: yield arrays with a leading "
                f"sample axis, or pass batched=False"
            )
    sizes = {len(x) for x in xs} | (set() if labels is None else {len(labels) if labels.ndim else -1})
    if len(sizes) != 1:
        got = [len(x) for x in xs] + ([] if labels is None else [len(labels) if labels.ndim else "scalar"])
        raise DataError(
            f"{name} item {k} has batch sizes {got} for its inputs and labels: every array in an item needs the "
            f"same leading axis (or pass batched=False if items are single samples)"
        )
    return xs, labels


def _iterate(gen_or_callable: Any, name: str) -> Iterable[Any]:
    source = gen_or_callable
    # A generator *function* is callable but not iterable; call it for a fresh generator.
    if callable(source) and not hasattr(source, "__iter__"):
        source = source()
    try:
        return iter(source)
    except TypeError:
        raise DataError(
            f"{name}: expected a generator, an iterable or a zero-argument callable returning one, got "
            f"{type(source).__name__}: pass e.g. a generator function"
        ) from None


def from_generator(
    gen_or_callable: Iterable[Any] | Callable[[], Iterable[Any]],
    limit: int | None = None,
    name: str = "generator",
    *,
    batched: bool | None = None,
) -> Dataset:
    """A dataset from a generator, iterable or zero-argument callable (see the module rules).

    Args:
        gen_or_callable: The source; a callable is called once with no arguments.
        limit: Stop after this many samples (needed for infinite generators); ``None`` = all.
        name: Description used in messages.
        batched: ``True``: items have a leading sample axis; ``False``: items are single
            samples; ``None``: decide from the first item (scalar label -> samples, else batches).

    Raises:
        DataError: Nothing yielded, malformed or inconsistent items, or mismatched shapes.

    Example:
        >>> import numpy as np
        >>> pairs = [(np.full((2, 2), i), i) for i in range(3)]  # single samples with labels
        >>> ds = from_generator(pairs)
        >>> ds.inputs[0].shape, ds.labels.tolist()
        ((3, 2, 2), [0, 1, 2])
    """
    if limit is not None:
        limit = positive_int(limit, "limit", fix="pass how many samples to read, or None for all of them", error=DataError)
    if batched is not None and not isinstance(batched, bool):
        raise DataError(f"batched must be True, False or None, got {batched!r}: pass batched=True for batches")
    inputs: list[list[np.ndarray]] = []
    labels: list[np.ndarray] = []
    first: tuple[int, bool, list[tuple[int, ...]]] | None = None  # (n inputs, has labels, sample shapes)
    count = 0
    for k, item in enumerate(_iterate(gen_or_callable, name)):
        xs, y = _split_item(item, k, name)
        if first is None and batched is None:
            # A scalar label can only belong to one sample; anything else follows representative_dataset.
            batched = y is None or np.ndim(y) > 0
        xs, ys = _as_batch(xs, y, bool(batched), k, name)
        shapes = [x.shape[1:] for x in xs] + ([] if ys is None else [ys.shape[1:]])  # labels last
        if first is None:
            first = (len(xs), ys is not None, shapes)
            inputs = [[] for _ in xs]
        elif (len(xs), ys is not None) != first[:2]:
            raise DataError(
                f"{name} item {k} has {len(xs)} input(s) and {'labels' if ys is not None else 'no labels'} but item 0 "
                f"had {first[0]} and {'labels' if first[1] else 'no labels'}: yield the same structure every time"
            )
        elif shapes != first[2]:
            raise DataError(
                f"{name} item {k} has per-sample shapes {shapes} but item 0 had {first[2]}: yield samples of one shape"
            )
        for store, x in zip(inputs, xs):
            store.append(x)
        if ys is not None:
            labels.append(ys)
        count += len(xs[0])
        if limit is not None and count >= limit:
            break  # do not pull more items: the source may be infinite
    if count == 0:
        raise DataError(
            f"{name} yielded no samples: make sure it yields at least one item "
            f"(a fresh generator, not an exhausted one)"
        )
    stop = count if limit is None else min(count, limit)
    xs_all = tuple(np.concatenate(parts)[:stop] for parts in inputs)
    y_all = np.concatenate(labels)[:stop] if labels else None
    return Dataset(xs_all, y_all, name)
