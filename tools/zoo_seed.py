"""The trained zoo, committed as the seed of the test suite's model cache.

A repository tool (``make zoo-seed`` writes ``tests/data/zoo-seed/``), not part of the wheel.

Training the twelve zoo models at their default epochs is ~120 CPU-seconds, a third of what the
whole suite may spend on two cores, and every run trained the same seeded models again. The seed is
that training's output, written once by :func:`write` (which also holds each model to its entry's
``min_accuracy``) and keyed by what the weights depend on:

- ``fingerprint``: the sha256 of the zoo's builders, trainers and registry and of the digits data
  code (:data:`SOURCES`), so an edit there makes the seed stale instead of silently wrong;
- ``zoo_version``: :data:`edgekit.zoo.training.ZOO_VERSION`, the user cache's key;
- the TensorFlow and Keras ``major.minor`` that trained them.

:func:`seed_cache` copies the files into a fresh cache only when the whole key matches; otherwise
the suite trains as before and says why. ``tests/zoo/test_zoo_seed.py`` fails on a stale seed, and
retrains two of the models (in pretrain's two processes) to check the seed is what the code trains.

Example:
    >>> sorted(key())  # doctest: +SKIP
    ['fingerprint', 'keras', 'tensorflow', 'zoo_version']
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError
from edgekit.manifest import atomic_open, sha256_file

REPO = Path(__file__).resolve().parents[1]
SEED_DIR = REPO / "tests" / "data" / "zoo-seed"
INDEX = "seed.json"
# What the run says when EDGEKIT_TEST_TRAIN_ZOO=1 asked it to train the zoo whatever the seed.
TRAIN_ANYWAY = "not used (EDGEKIT_TEST_TRAIN_ZOO=1): the run trains the zoo"
# What a trained zoo model's weights are made of: every zoo module (builders, registry, trainers)
# and the code that cuts and shapes the bundled digits data they train on.
SOURCES = ("src/edgekit/zoo/*.py", "src/edgekit/calibration/builtin.py", "src/edgekit/calibration/digit_forms.py")


def fingerprint() -> str:
    """sha256 over the :data:`SOURCES` files, by repository path and content.

    Example:
        >>> len(fingerprint())
        64
    """
    h = hashlib.sha256()
    for path in sorted(p for pattern in SOURCES for p in REPO.glob(pattern)):
        h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _minor(dist: str) -> str:
    try:
        return ".".join(importlib.metadata.version(dist).split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def key() -> dict[str, Any]:
    """What the seed's weights depend on, read without importing TensorFlow.

    Example:
        >>> key()["zoo_version"] >= 4
        True
    """
    from edgekit.zoo.training import ZOO_VERSION  # the module imports Keras only when it trains

    return {"zoo_version": ZOO_VERSION, "fingerprint": fingerprint(),
            "tensorflow": _minor("tensorflow"), "keras": _minor("keras")}


def read_index(seed: Path = SEED_DIR) -> dict[str, Any] | None:
    """The seed's ``seed.json``, or None where there is none."""
    try:
        return json.loads((seed / INDEX).read_text())
    except FileNotFoundError:
        return None


def stale_reason(index: dict[str, Any] | None) -> str | None:
    """Why a seed with this index may not be used here, or None when its key matches.

    Example:
        >>> stale_reason(None)
        'no seed (make zoo-seed writes one)'
    """
    if index is None:
        return "no seed (make zoo-seed writes one)"
    have = index.get("key", {})
    diff = [f"{k} {have.get(k)!r} != {v!r}" for k, v in key().items() if have.get(k) != v]
    return f"seed is stale ({'; '.join(diff)}): make zoo-seed" if diff else None


def seed_cache(zoo_cache: Path, seed: Path = SEED_DIR) -> str | None:
    """Copy the seed's trained models into ``zoo_cache`` (files already there are kept).

    Returns:
        None when the seed was used, else the one-line reason it was not (the models then train).

    Example:
        >>> seed_cache(Path(tempfile.mkdtemp()))  # doctest: +SKIP
    """
    try:
        index = read_index(seed)
    except (OSError, ValueError) as exc:  # conftest calls this at start-up: a reason, never a crash
        return f"{INDEX} is unreadable ({type(exc).__name__}): make zoo-seed"
    reason = stale_reason(index)
    if reason:
        return reason
    for entry in index["models"].values():  # all or nothing: a damaged seed is not used at all
        try:
            digest = sha256_file(seed / entry["file"])
        except (OSError, EdgekitError):
            digest = None
        if digest != entry["sha256"]:
            return f"seed file {entry['file']} does not match its sha256 in {INDEX}: make zoo-seed"
    zoo_cache.mkdir(parents=True, exist_ok=True)
    for entry in index["models"].values():
        src, dst = seed / entry["file"], zoo_cache / entry["file"]
        if dst.exists():
            continue
        with open(src, "rb") as fin, atomic_open(dst) as fout:  # whole files only: a test worker may be loading
            shutil.copyfileobj(fin, fout)
    return None


def write(seed: Path = SEED_DIR, workers: int = 2) -> dict[str, Any]:
    """Train every zoo model at its defaults (seed 0) in a fresh cache and write the seed from it.

    Each model must reach its entry's ``min_accuracy`` on the eval split, as the suite holds it to.

    Example:
        >>> write(Path(tempfile.mkdtemp()))["key"]["zoo_version"]  # doctest: +SKIP
        4
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-zoo-seed-") as cache:
        os.environ["EDGEKIT_CACHE"] = cache
        from edgekit.zoo import get_entry, zoo_names
        from edgekit.zoo.training import cache_path, evaluate, pretrain, train_model

        pretrain(workers=workers)
        models: dict[str, Any] = {}
        staged = Path(cache) / "seed"
        staged.mkdir()
        for name in zoo_names():
            entry = get_entry(name)
            path = cache_path(name, 0, entry.epochs)
            accuracy = evaluate(name, train_model(name))["accuracy"]
            if accuracy < entry.min_accuracy:
                raise SystemExit(f"{name}: eval accuracy {accuracy} is under its min_accuracy {entry.min_accuracy}")
            shutil.copyfile(path, staged / path.name)
            models[name] = {"file": path.name, "sha256": sha256_file(path), "accuracy": accuracy}
        index = {"key": key(), "models": models}
        (staged / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        if seed.exists():
            shutil.rmtree(seed)
        shutil.copytree(staged, seed)
    return index


def main() -> int:
    index = write()
    for name, entry in index["models"].items():
        print(f"{name}: {entry['accuracy']} %  {(SEED_DIR / entry['file']).stat().st_size:,} bytes")
    print(f"wrote {SEED_DIR.relative_to(REPO)} ({index['key']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
