"""Manifest and eval-data hygiene: size cap, deep JSON, bad numbers, wrong types, schema version,
eval_data.file containment and regular files. Every failure is one ModelError line naming the field."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import ModelError
from edgekit.manifest import MAX_MANIFEST_BYTES, Manifest


@pytest.fixture
def folder(digits_out, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(digits_out[0], out)
    return out


def _edit(folder: Path, change) -> None:
    doc = json.loads((folder / "manifest.json").read_text())
    change(doc)
    (folder / "manifest.json").write_text(json.dumps(doc))


def _error(folder: Path) -> str:
    with pytest.raises(ModelError) as ei:
        Manifest.load(folder)
    msg = str(ei.value)
    assert "\n" not in msg and "manifest.json" in msg, msg
    return msg


def _art(doc, target="tflite:int8"):
    return next(a for a in doc["artifacts"] if a["target"] == target)


def test_deep_json_is_one_line(folder):
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _error(folder)


@pytest.mark.parametrize("field,value,expect", [
    ("bytes", "1e999", "field 'artifacts[2].bytes': expected a non-negative integer or null, got inf"),
    ("bytes", "-5", "field 'artifacts[2].bytes': expected a non-negative integer or null, got -5"),
    ("bytes", "12.5", "artifacts[2].bytes"),
    ("bytes", '"173440"', "artifacts[2].bytes"),
    ("bytes", "true", "artifacts[2].bytes"),
    ("sha256", '"abc"', "field 'artifacts[2].sha256': expected 64 lowercase hex digits or null"),
    ("path", "42", "field 'artifacts[2].path'"),
    ("status", "null", "field 'artifacts[2].status': expected a string"),
    ("inputs", '"x"', "field 'artifacts[2].inputs'"),
    ("seconds", "NaN", "field 'artifacts[2].seconds': expected a finite number or null, got nan"),
])
def test_bad_artifact_fields_name_the_field(folder, field, value, expect):
    text = (folder / "manifest.json").read_text()
    doc = json.loads(text)
    assert doc["artifacts"][2]["target"] == "tflite:int8"
    doc["artifacts"][2][field] = "@@VALUE@@"
    (folder / "manifest.json").write_text(json.dumps(doc).replace('"@@VALUE@@"', value))
    msg = _error(folder)
    assert "is not a valid edgekit manifest" in msg and expect in msg, msg
    with pytest.raises(ModelError):  # and the loader says the same
        rt.load(folder, target="tflite:int8")


@pytest.mark.parametrize("value,expect", [
    ("1e999", "expected a non-negative integer or null, got inf"),
    ("-3", "got -3"),
    ("8.5", "got 8.5"),
    ("9" * 5000, "exceeds the limit"),  # Python refuses to parse 5,000-digit integers
])
def test_bad_shapes_are_refused(folder, value, expect):
    doc = json.loads((folder / "manifest.json").read_text())
    doc["artifacts"][2]["inputs"][0]["shape"][1] = "@@V@@"
    (folder / "manifest.json").write_text(json.dumps(doc).replace('"@@V@@"', value))
    msg = _error(folder)
    assert expect in msg.lower() or expect in msg, msg
    if value != "9" * 5000:
        assert "artifacts[2].inputs[0].shape[1]" in msg


@pytest.mark.parametrize("version,expect", [
    (7, "reads manifest schema version 1, got 7"), ("1", "got '1'"), (None, "got none"), (True, "got True"),
])
def test_unknown_or_missing_schema_version_is_refused(folder, version, expect):
    def change(doc):
        if version is None:
            del doc["schema_version"]
        else:
            doc["schema_version"] = version
    _edit(folder, change)
    msg = _error(folder)
    assert "field 'schema_version'" in msg and expect in msg and "upgrade edgekit" in msg, msg


def test_wrong_section_types(folder):
    _edit(folder, lambda d: d.__setitem__("artifacts", {"a": 1}))
    assert "field 'artifacts': expected a list of artifacts" in _error(folder)
    _edit(folder, lambda d: d.__setitem__("artifacts", []) or d.__setitem__("eval_data", ["x"]))
    assert "field 'eval_data': expected an object" in _error(folder)


def test_oversized_manifest_is_refused_before_reading(folder):
    with open(folder / "manifest.json", "r+b") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: costs no disk, and nothing should read it
    t = time.perf_counter()
    msg = _error(folder)
    assert f"{MAX_MANIFEST_BYTES + 1} bytes, over the {MAX_MANIFEST_BYTES}-byte limit for a manifest" in msg
    assert time.perf_counter() - t < 1.0


def test_manifest_that_is_a_fifo_is_refused(folder):
    os.unlink(folder / "manifest.json")
    os.mkfifo(folder / "manifest.json")
    msg = _error(folder)
    assert "is a FIFO (named pipe), not a regular file" in msg


def test_written_manifests_still_load(digits_out):
    m = Manifest.load(digits_out[0])
    assert m.schema_version == 1 and len(m.artifacts) == 4
    assert Manifest.load(Path(__file__).parents[1] / "data" / "digits-int8").artifacts[0].target == "tflite:int8"


def _bench_eval_error(folder: Path) -> str:
    from edgekit.runtime.bench import BenchConfig, bench_path

    with pytest.raises(ModelError) as ei:
        bench_path(folder, BenchConfig(warmup=0, runs=1), target="tflite:int8")
    assert "\n" not in str(ei.value)
    return str(ei.value)


def test_eval_file_outside_the_folder_is_refused(folder, tmp_path):
    shutil.copy(folder / "eval.npz", tmp_path / "outside.npz")
    _edit(folder, lambda d: d["eval_data"].__setitem__("file", "../outside.npz"))
    assert "manifest eval_data.file '../outside.npz' points outside" in _bench_eval_error(folder)


def test_eval_file_must_be_a_regular_file(folder):
    os.unlink(folder / "eval.npz")
    os.mkfifo(folder / "eval.npz")
    msg = _bench_eval_error(folder)
    assert "eval.npz is a FIFO (named pipe), not a regular file" in msg


@pytest.mark.parametrize("content", [b"PK\x03\x04" + b"\x00" * 200, b"not a zip at all", b""])
def test_corrupt_eval_file_is_a_one_line_model_error(folder, content):
    (folder / "eval.npz").write_bytes(content)
    msg = _bench_eval_error(folder)
    assert "eval data eval.npz (manifest eval_data.file) is unreadable" in msg, msg


def test_intact_eval_file_still_gives_accuracy(folder):
    from edgekit.runtime.bench import BenchConfig, bench_path

    res = bench_path(folder, BenchConfig(warmup=0, runs=2), target="tflite:int8")
    assert res[0].status == "ok" and res[0].accuracy is not None and res[0].accuracy > 50
    assert np.isfinite(res[0].accuracy)


def test_eval_zip_bomb_is_refused_before_unpacking(folder, monkeypatch):
    # 64 MB of zeros compress to ~64 KB: the limit is checked on the archive's declared sizes.
    from edgekit.runtime.bench import sweep

    np.savez_compressed(folder / "eval.npz", image=np.zeros((250_000, 8, 8, 1), np.float32), labels=np.zeros(250_000, np.int64))
    assert (folder / "eval.npz").stat().st_size < 1 << 20
    monkeypatch.setattr(sweep, "MAX_EVAL_BYTES", 32 << 20)
    msg = _bench_eval_error(folder)
    assert "eval data eval.npz (manifest eval_data.file) unpacks to 66000" in msg and "over the 33554432-byte limit" in msg, msg
