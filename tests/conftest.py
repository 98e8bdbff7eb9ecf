"""Shared fixtures: real TensorFlow and LiteRT on tiny models, no mocks.

The trained zoo model and one converted output folder are built once per test run, also across
pytest-xdist workers (``make test`` runs on every core): they live in the run's ``EDGEKIT_CACHE``,
which the workers inherit, and the first worker to need one builds it under a lock while the
others wait. Tests that need their own variants build tiny models in code, and tests that change a
shared folder copy it first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep the user's ~/.cache out of tests and the tests out of it.
os.environ.setdefault("EDGEKIT_CACHE", tempfile.mkdtemp(prefix="edgekit-test-cache-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("EDGEKIT_RESULTS", os.path.join(os.environ["EDGEKIT_CACHE"], "results.sqlite"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ["EDGEKIT_CACHE"]) / "fixtures"
TFLITE_TARGETS = ("tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16")


@pytest.fixture(scope="session")
def digits_model():
    """The zoo's digits-cnn, trained on the bundled digits data (seeded, ~3 s)."""
    from edgekit.zoo import train

    return train("digits-cnn")


def shared_folder(name: str, build) -> Path:
    """``SHARED/name``, filled once per test run by ``build(path)`` (whichever worker comes first)."""
    from edgekit.locks import file_lock

    path = SHARED / name
    done = SHARED / f"{name}.complete"  # outside the folder: tests may list every file in it
    with file_lock(path):
        if not done.exists():
            if path.exists():  # a worker died half-way: start again
                import shutil

                shutil.rmtree(path)
            path.mkdir(parents=True)
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def digits_out(digits_model):
    """An output folder with the four TFLite targets of digits-cnn, converted and validated (read-only:
    copy it to change it)."""
    from edgekit.api import convert
    from edgekit.manifest import Manifest

    out = shared_folder("digits-out", lambda p: convert({"model": "digits-cnn", "targets": list(TFLITE_TARGETS)}, p, force=True))
    return out, Manifest.load(out)


@pytest.fixture(scope="session")
def digits_eval():
    from edgekit.calibration import digits

    return digits("eval")


def pytest_collection_modifyitems(config, items):
    """The zoo's tests start first: training the whole zoo is the longest chain of the run.

    ``make test`` schedules whole modules per worker (``--dist loadscope``), so a module's fixtures are
    built once; zoo modules on different workers share the training through the cache lock.
    """
    zoo = [i for i in items if Path(str(i.fspath)).relative_to(REPO / "tests").parts[0] == "zoo"]
    first = set(zoo)
    items[:] = zoo + [i for i in items if i not in first]
