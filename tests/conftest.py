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

# Keep the user's ~/.cache out of tests and the tests out of it. The process that makes the folder
# (pytest itself; xdist workers inherit it) removes it at the end: 27 MB of trained zoo models a run.
OWN_CACHE = None
if "EDGEKIT_CACHE" not in os.environ:
    OWN_CACHE = os.environ["EDGEKIT_CACHE"] = tempfile.mkdtemp(prefix="edgekit-test-cache-")
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


# Seconds each heavy module took in one `make test` run (2 cores, junit times: setup + call +
# teardown), heaviest first. make test hands whole modules to the workers in collection order
# (--no-loadscope-reorder: xdist's default reorders them by test count, which put the 2-test,
# 74-second arm64 module last), so sorting by cost is longest-first scheduling and the run does not
# end with one worker alone on a long module. Unlisted modules are quick and keep their order.
MODULE_SECONDS = {
    "zoo/test_zoo_coverage.py": 425,  # trains the whole zoo (in two processes) first: the longest chain
    "zoo/test_zoo_builders.py": 248,
    "convert/formats/test_onnx_routes.py": 121,
    "convert/test_accuracy_aware_e2e.py": 100,
    "convert/stages/test_multi_worker.py": 100,  # measured alone (new this round): two 2-process clusters
    "convert/stages/test_stage_cli.py": 83,
    "convert/formats/test_format_matrix.py": 76,
    "deploy/test_arm64.py": 74,
    "convert/stages/test_stage_qat.py": 72,
    "convert/test_cli_convert.py": 55,
    "runtime/test_runtime_fuzz.py": 48,
    "test_packaging.py": 46,
    "zoo/test_zoo_cli.py": 39,
    "convert/formats/test_format_coreml.py": 37,
    "convert/stages/test_stage_prune.py": 34,
    "deploy/test_attack.py": 33,
    "runtime/test_probe.py": 32,
    "zoo/test_zoo_recurrent.py": 31,
    "convert/test_pipeline.py": 30,
    "deploy/test_deploy_runtime_only.py": 29,
    "test_format_plugin.py": 29,
    "convert/stages/test_stage_digits.py": 28,
    "convert/formats/test_format_cli.py": 24,
    "runtime/test_runtime_loader.py": 21,
    "runtime/test_runtime_session.py": 21,
    "convert/test_source_models.py": 20,
    "runtime/formats/test_backend_onnxruntime.py": 19,
    "runtime/test_cli_bench.py": 18,
}


def pytest_unconfigure(config):
    if OWN_CACHE is not None:
        import shutil

        shutil.rmtree(OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Modules in order of :data:`MODULE_SECONDS`, heaviest first (a stable sort keeps each together)."""

    def cost(item) -> int:
        return -MODULE_SECONDS.get(Path(str(item.fspath)).relative_to(REPO / "tests").as_posix(), 0)

    items.sort(key=cost)
