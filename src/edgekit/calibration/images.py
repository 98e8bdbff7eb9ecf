"""Datasets from a folder of images (Pillow, imported only when a folder is read).

Two layouts, as in Keras' ``image_dataset_from_directory``:

* class sub-folders (``root/cat/*.png``, ``root/dog/*.png``): labels are the index of the
  sub-folder's name in sorted order; every non-hidden sub-folder is a class, so indices stay
  stable even if one class folder is empty;
* a flat folder of images: no labels.

Only images directly inside ``root`` (flat) or directly inside each class folder are read.

Example:
    >>> import os, tempfile, numpy as np
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for cls in ("cat", "dog"):
    ...     os.mkdir(os.path.join(root, cls))
    ...     Image.new("RGB", (6, 4)).save(os.path.join(root, cls, "a.png"))
    >>> ds = from_image_folder(root)
    >>> ds.inputs[0].shape, ds.labels.tolist(), ds.classes
    ((2, 4, 6, 3), [0, 1], ('cat', 'dog'))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekit.calibration.dataset import Dataset, sample_indices, subset_name
from edgekit.errors import DataError, MissingDependencyError

COLORS = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}
DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _images_in(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in extensions
    )


def _discover(root: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """Image files, their labels (``None`` for a flat folder) and the class names."""
    top = _images_in(root, extensions)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = [_images_in(d, extensions) for d in class_dirs]
    if not any(per_class):
        if not top:
            raise DataError(
                f"{root} has no images ({', '.join(extensions)}) at its top or in class sub-folders: "
                f"put images in it, or pass extensions=(...) for other file types"
            )
        return top, None, ()
    if top:
        raise DataError(
            f"{root} has images both at its top ({top[0].name}, ...) and in class sub-folders: "
            f"move the top-level images into a class folder, or point at a folder with one layout"
        )
    files = [f for fs in per_class for f in fs]
    labels = [i for i, fs in enumerate(per_class) for _ in fs]
    return files, labels, tuple(d.name for d in class_dirs)


def _per_channel(value: float | Sequence[float], what: str, channels: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size not in (1, channels):
        raise DataError(
            f"{what} has {arr.size} values but the images have {channels} channel(s): pass one number or {channels}"
        )
    return arr


def _size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)
    )
    if not ok:
        raise DataError(f"size must be (height, width) in pixels, got {size!r}: pass e.g. size=(224, 224)")
    return int(size[0]), int(size[1])


def from_image_folder(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    color: str = "rgb",
    scale: float = 1 / 255,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """A dataset from a folder of images, as float32 ``(pixel * scale - mean) / std``.

    Args:
        path: The folder (class sub-folders give labels, a flat folder gives none).
        size: ``(height, width)`` to resize every image to (bilinear); required when the images
            differ in size.
        color: ``"rgb"`` -> ``(N, H, W, 3)`` or ``"grayscale"`` -> ``(N, H, W, 1)``. Alpha is dropped.
        scale: Multiplies the raw 0..255 pixels first.
        mean: Subtracted after scaling; one number or one per channel.
        std: Divides last; one number or one per channel.
        extensions: File suffixes to read (case-insensitive); other files are ignored.
        limit: Decode only a seeded subset of this many images, the same subset
            ``Dataset.take(limit, seed)`` keeps of the whole folder; ``None`` decodes all.
        seed: Seed for that subset.

    Raises:
        MissingDependencyError: Pillow is not installed.
        DataError: Missing or empty folder, mixed layouts, unreadable image, sizes differ without
            ``size``, bad options.

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> Image.new("L", (5, 5), color=255).save(os.path.join(root, "white.png"))
        >>> ds = from_image_folder(root, size=(2, 3), color="grayscale")
        >>> ds.inputs[0].shape, float(ds.inputs[0].max()), ds.labels is None
        ((1, 2, 3, 1), 1.0, True)
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingDependencyError("pillow", "images", "image folders") from None

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root} does not exist: pass a folder of images (or of class sub-folders)")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass a folder of images, or use a .npz/.npy file source")
    if color not in COLORS:
        raise DataError(f"color must be one of {sorted(COLORS)}, got {color!r}: pass color='rgb' or 'grayscale'")
    mode, channels = COLORS[color]
    hw = _size(size)
    mean_arr = _per_channel(mean, "mean", channels)
    std_arr = _per_channel(std, "std", channels)
    if not np.all(std_arr != 0):
        raise DataError(f"std must be non-zero, got {std!r}: pass e.g. std=1.0")
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)

    files, labels, classes = _discover(root, exts)
    total = len(files)
    # Choose before decoding: a 10,000-image folder with --eval-limit 1000 decodes 1,000 images
    # (600 MB at 224x224), not all of them (6 GB) to keep a tenth.
    idx = sample_indices(total, limit, seed)
    if idx is not None:
        files = [files[i] for i in idx]
        labels = None if labels is None else [labels[i] for i in idx]
    # Each image is normalised as it is decoded, into one preallocated array: peak memory is the
    # dataset itself, not a list of decoded images plus the stacked copy and the temporaries of
    # the normalisation (4x the data at 224x224). Same float operations per pixel as on the stack.
    x: np.ndarray | None = None
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert(mode)  # forces a full decode, so truncated files fail here
                if hw is not None:
                    img = img.resize((hw[1], hw[0]), Image.BILINEAR)  # PIL wants (width, height)
                arr = np.asarray(img, dtype=np.float32)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"cannot read image {f}: {exc}: remove or replace the file") from None
        if arr.ndim == 2:  # grayscale images come back as (H, W)
            arr = arr[..., None]
        if x is None:
            x = np.empty((len(files), *arr.shape), np.float32)
        elif arr.shape != x.shape[1:]:
            raise DataError(
                f"images in {root} have different sizes ({x.shape[2]}x{x.shape[1]} in {files[0].name}, "
                f"{arr.shape[1]}x{arr.shape[0]} in {f.name}): pass size=(h, w) to resize them"
            )
        x[i] = (arr * np.float32(scale) - mean_arr) / std_arr
    assert x is not None  # _discover refuses a folder without images
    name = root.name or str(root)
    if classes:
        name = f"{name} (classes: {', '.join(classes)})"
    if idx is not None:
        name = subset_name(name, len(files), total, seed)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    return Dataset((x,), y, name, classes)
