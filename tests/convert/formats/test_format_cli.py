"""`edgekit convert --list-targets`: the capability table users read before converting; the new
modules' docstring examples run.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import subprocess
import sys

import pytest

from edgekit.convert.exporters import exporter_names, get_exporter


def edgekit(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def test_list_targets_needs_no_model_or_output_and_shows_every_cell():
    r = edgekit("convert", "--list-targets")
    assert r.returncode == 0, r.stderr
    for fmt in exporter_names():
        for p in get_exporter(fmt).precisions:
            assert f"{fmt}:{p}" in r.stdout
    assert "CoreML runs only on macOS" in r.stdout
    assert "onnx:int8" in r.stdout and "calibration" in r.stdout
    if get_exporter("tensorrt").unavailable_reason():
        assert "pip install 'edgekit[tensorrt]'" in r.stdout  # rich markup must not eat [tensorrt]
    if get_exporter("tftrt").unavailable_reason():
        assert "Dockerfile.jetson" in r.stdout
    assert "Traceback" not in r.stderr and "oneDNN" not in r.stdout + r.stderr


def test_list_targets_json_is_the_same_table_as_data():
    r = edgekit("convert", "--list-targets", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    by = {row["target"]: row for row in rows}
    assert by["onnx:int8"]["needs_calibration"] is True and "calibration" in by["onnx:int8"]["options"]
    assert by["onnx:fp32"]["options"] == ["opset"]
    assert by["coreml:palettized"]["suffix"] == ".mlpackage"
    assert by["onnx:fp32"]["convert"] is None and by["onnx:fp32"]["run"] is None
    assert by["coreml:fp32"]["run"] == ("CoreML runs only on macOS" if sys.platform != "darwin" else None)
    assert len(rows) == sum(len(get_exporter(f).precisions) for f in exporter_names())


def test_convert_without_output_folder_is_a_one_line_error():
    r = edgekit("convert", "digits-cnn", "-t", "onnx:fp32")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: give an output folder with -o/--out")


@pytest.mark.parametrize("module", [
    "edgekit.manifest",
    "edgekit.convert._files",
    "edgekit.convert.capabilities",
    "edgekit.convert.exporters._tf2onnx",
    "edgekit.convert.exporters.onnx",
    "edgekit.convert.exporters.coreml",
    "edgekit.convert.exporters.tftrt",
    "edgekit.convert.exporters.tensorrt",
    "edgekit.runtime.loader",
    "edgekit.runtime.backends.onnxruntime",
    "edgekit.runtime.backends.coreml",
    "edgekit.runtime.backends.tftrt",
    "edgekit.runtime.backends.tensorrt",
])
def test_format_module_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
