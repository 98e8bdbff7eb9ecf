"""The committed trained zoo (tests/data/zoo-seed) that a test run's cache starts from: current with
the zoo's code, whole, and what the current code trains."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edgekit.manifest import sha256_file
from edgekit.zoo import get_entry, zoo_names
from edgekit.zoo.training import ZOO_VERSION, cache_path
from tools import zoo_seed

INDEX = zoo_seed.read_index()


def test_the_seed_is_current_with_the_zoo_code_and_whole():
    assert INDEX is not None, "no tests/data/zoo-seed: run make zoo-seed"
    # A builder, trainer or data edit without `make zoo-seed` fails here (the suite then trains the
    # models itself, so the other tests still hold): the seed never stands in for other code.
    assert INDEX["key"]["fingerprint"] == zoo_seed.fingerprint(), "the zoo's code changed: run make zoo-seed"
    assert INDEX["key"]["zoo_version"] == ZOO_VERSION, "ZOO_VERSION changed: run make zoo-seed"
    assert sorted(INDEX["models"]) == zoo_names()
    for name, entry in INDEX["models"].items():
        assert entry["file"] == cache_path(name, 0, get_entry(name).epochs).name
        assert sha256_file(zoo_seed.SEED_DIR / entry["file"]) == entry["sha256"], name
        assert entry["accuracy"] >= get_entry(name).min_accuracy, (name, entry)


def test_this_run_started_from_the_seed_or_says_why_not():
    state = os.environ.get("EDGEKIT_TEST_ZOO_SEED")
    if state is None:
        pytest.skip("EDGEKIT_CACHE was set from outside: the suite leaves that cache as it is")
    trained = os.environ.get("EDGEKIT_TEST_TRAIN_ZOO") == "1"
    assert state == (zoo_seed.TRAIN_ANYWAY if trained else zoo_seed.stale_reason(INDEX) or "used"), state


def test_the_seed_is_what_the_current_code_trains_in_two_processes(tmp_path, monkeypatch):
    # pretrain's spawned workers, as the suite ran them before the seed, on the two models that
    # train in ~2 s, into a cache of their own; then loaded from it as every test loads the zoo.
    from edgekit.zoo.training import evaluate, pretrain, train_model

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    names = ["digits-small-cnn", "mnist-mlp"]
    pretrain(names, workers=2)
    for name in names:
        path = cache_path(name, 0, get_entry(name).epochs)
        written = path.stat().st_mtime_ns
        trained = evaluate(name, train_model(name))["accuracy"]
        assert path.stat().st_mtime_ns == written  # loaded, not trained again
        # Same code, same seed: bit-identical weights on one CPU (measured: equal accuracy); another
        # CPU's float rounding may move a sample or two of the 359.
        assert abs(trained - INDEX["models"][name]["accuracy"]) <= 1.0, (name, trained, INDEX["models"][name])


def test_a_stale_or_damaged_seed_is_not_used(tmp_path):
    seed = tmp_path / "seed"
    shutil.copytree(zoo_seed.SEED_DIR, seed)
    index = json.loads((seed / zoo_seed.INDEX).read_text())
    if zoo_seed.stale_reason(index):
        pytest.skip(zoo_seed.stale_reason(index))

    cache = tmp_path / "zoo"
    assert zoo_seed.seed_cache(cache, seed) is None
    assert sorted(p.name for p in cache.iterdir()) == sorted(e["file"] for e in index["models"].values())

    damaged = dict(index["models"]["digits-cnn"])
    (seed / damaged["file"]).write_bytes(b"not a model")
    fresh = tmp_path / "fresh"
    assert zoo_seed.seed_cache(fresh, seed) == f"seed file {damaged['file']} does not match its sha256 in seed.json: make zoo-seed"
    assert not fresh.exists()  # all or nothing
    (seed / damaged["file"]).unlink()
    assert zoo_seed.seed_cache(fresh, seed) == f"seed file {damaged['file']} does not match its sha256 in seed.json: make zoo-seed"

    index["key"]["keras"] = "2.0"
    (seed / zoo_seed.INDEX).write_text(json.dumps(index))
    reason = zoo_seed.seed_cache(tmp_path / "other", seed)
    assert reason.startswith("seed is stale (keras '2.0' != ") and reason.endswith("): make zoo-seed")
    assert not (tmp_path / "other").exists()
    assert zoo_seed.seed_cache(tmp_path / "none", tmp_path / "missing") == "no seed (make zoo-seed writes one)"
    (seed / zoo_seed.INDEX).write_text('{"key": ')  # cut short
    assert zoo_seed.seed_cache(tmp_path / "cut", seed) == "seed.json is unreadable (JSONDecodeError): make zoo-seed"
    assert not (tmp_path / "cut").exists()
