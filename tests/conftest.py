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
# (pytest itself; xdist workers inherit it) removes it at the end: each run's trained zoo models.
OWN_CACHE = None
if "EDGEKIT_CACHE" not in os.environ:
    OWN_CACHE = os.environ["EDGEKIT_CACHE"] = tempfile.mkdtemp(prefix="edgekit-test-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("EDGEKIT_RESULTS", os.path.join(os.environ["EDGEKIT_CACHE"], "results.sqlite"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ["EDGEKIT_CACHE"]) / "fixtures"

if OWN_CACHE is not None:
    # The trained zoo, committed (tests/data/zoo-seed, tools/zoo_seed.py): a fresh cache starts with
    # it instead of training the twelve models again (~120 CPU-s of the suite's budget), where its
    # key (zoo code, ZOO_VERSION, TF/Keras minor) matches; else the models train and the summary says why.
    # EDGEKIT_TEST_TRAIN_ZOO=1 trains them anyway (the whole road from builder to accuracy floor).
    from edgekit.cache import cache_dir
    from tools.zoo_seed import TRAIN_ANYWAY, seed_cache

    train_anyway = os.environ.get("EDGEKIT_TEST_TRAIN_ZOO") == "1"
    os.environ["EDGEKIT_TEST_ZOO_SEED"] = TRAIN_ANYWAY if train_anyway else seed_cache(cache_dir("zoo")) or "used"

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


# Seconds each heavy module took in one `make test` run (2-core EPYC, zoo seeded; junit: setup + call +
# teardown), heaviest first. make test hands whole modules to the workers in collection order
# (--no-loadscope-reorder: xdist's default reorders them by test count, which put the 2-test,
# 74-second arm64 module last), so sorting by cost is longest-first scheduling and the run does not
# end with one worker alone on a long module. Unlisted modules are quick and keep their order.
MODULE_SECONDS = {
    "zoo/test_zoo_coverage.py": 63,
    "convert/stages/test_multi_worker.py": 43,
    "deploy/test_arm64.py": 31,
    "convert/test_accuracy_aware_e2e.py": 25,
    "zoo/test_zoo_builders.py": 25,
    "runtime/test_runtime_fuzz.py": 23,
    "convert/stages/test_stage_qat.py": 22,
    "deploy/test_attack.py": 21,
    "convert/test_source_models.py": 18,
    "convert/stages/test_stage_cli.py": 18,
    "convert/formats/test_onnx_routes.py": 18,
    "convert/test_cli_convert.py": 17,
    "convert/stages/test_stage_prune.py": 14,
    "test_packaging.py": 13,
    "runtime/test_pick.py": 12,
    "zoo/test_zoo_cli.py": 12,
    "zoo/test_zoo_seed.py": 12,  # pretrain spawns two trainers
    "deploy/test_deploy_runtime_only.py": 11,
    "convert/test_pipeline.py": 10,
    "convert/formats/test_format_matrix.py": 9,
    "convert/formats/test_format_cli.py": 9,
    "runtime/test_cli_bench.py": 8,
    "deploy/test_serve_hostile.py": 8,
    "convert/formats/test_format_coreml.py": 7,
    "deploy/test_mqtt.py": 7,
    "zoo/test_zoo_recurrent.py": 6,
    "convert/stages/test_stage_digits.py": 6,
    "test_format_plugin.py": 6,
    "runtime/test_report_html.py": 6,
    "runtime/test_probe.py": 5,
    "convert/stages/test_stage_keras2.py": 5,
}


def pytest_terminal_summary(terminalreporter):
    """One line on where the zoo came from (the header is hidden under ``make test``'s ``-q``)."""
    seed = os.environ.get("EDGEKIT_TEST_ZOO_SEED")
    if seed:
        terminalreporter.write_line(f"zoo seed: {seed}")


def pytest_unconfigure(config):
    if OWN_CACHE is not None:
        import shutil

        shutil.rmtree(OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Modules in order of :data:`MODULE_SECONDS`, heaviest first (a stable sort keeps each together)."""

    def cost(item) -> int:
        return -MODULE_SECONDS.get(Path(str(item.fspath)).relative_to(REPO / "tests").as_posix(), 0)

    items.sort(key=cost)
