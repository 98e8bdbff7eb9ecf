"""``edgekit zoo list | train | export``, and zoo exports converting in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.zoo import zoo_names

from test_zoo_builders import PARAMS  # same folder: pytest puts it on sys.path

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_zoo_group_is_listed_and_documented():
    res = invoke("--help")
    assert res.exit_code == 0 and re.search(r"^\s+zoo\s+The model zoo", res.output, re.M)
    res = invoke("zoo", "--help")
    assert res.exit_code == 0 and all(c in res.output for c in ("list", "train", "export"))


def test_zoo_list_json_has_every_model_with_params_shapes_and_data():
    res = invoke("zoo", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert sorted(rows) == zoo_names()
    assert {n: r["params"] for n, r in rows.items()} == PARAMS
    assert rows["text-gru"]["inputs"] == [{"name": "tokens", "shape": [64], "dtype": "int32"}]
    assert rows["multi-input"]["inputs"][1] == {"name": "meta", "shape": [6], "dtype": "float32"}
    assert rows["cifar10-cnn"]["data"] == "digits upscaled to 32x32 RGB (CIFAR-10 is not bundled)"
    assert rows["mnist-mlp"]["train_data"] == "digits:train:28x28:flat"


def test_zoo_list_table_states_the_data():
    res = invoke("zoo", "list", "--no-params")
    assert res.exit_code == 0, res.output
    for text in ("mobilenetv2", "image[32x32x3] float32", "CIFAR-10 is not bundled", "MNIST is not bundled",
                 "tokens[64] int32", "ink = mean pixel intensity"):
        assert text in res.output, text


def test_zoo_train_prints_eval_accuracy():
    res = invoke("zoo", "train", "digits-small-cnn", "--epochs", "3", "--seed", "0", "-q")
    assert res.exit_code == 0, res.output
    m = re.match(r"digits-small-cnn: eval accuracy (\d+\.\d\d)% on digits:eval:flat \(359 samples; digits, flat "
                 r"64-pixel vectors\); 3 epochs, seed 0, 1,210 params\ncached: .*digits-small-cnn-seed0-e3-v\d+\.keras\n$",
                 res.output)
    assert m, res.output
    assert float(m.group(1)) >= 85.0  # measured 91.1 after 3 epochs
    res = invoke("zoo", "train", "multi-output", "--epochs", "1", "--json", "-q", "--no-cache")
    doc = json.loads(res.output)
    assert doc["name"] == "multi-output" and doc["epochs"] == 1 and "cached" not in doc
    assert 0 <= doc["accuracy"] <= 100 and doc["ink_mae"] > 0 and doc["eval_data"] == "digits:eval"


@pytest.mark.parametrize("args, message", [
    (["zoo", "train", "mobilenet"], "unknown zoo model 'mobilenet' (did you mean 'mobilenetv2'?)"),
    (["zoo", "train", "mnist-mlp", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["zoo", "export", "mnist-mlp", "-o", "model.h5"], "zoo export writes Keras 3 .keras files; got 'model.h5'"),
    (["zoo", "export", "mnist-mlp", "-o", "no/such/dir/m.keras"], "folder no/such/dir does not exist"),
])
def test_zoo_errors_exit_2_with_one_line(args, message):
    res = invoke(*args)
    assert res.exit_code == 2 and res.output.startswith("error: ") and message in res.output, res.output


def test_zoo_export_then_convert_in_process(tmp_path):
    path = tmp_path / "small.keras"
    res = invoke("zoo", "export", "digits-small-cnn", "-o", str(path), "--epochs", "3", "-q")
    assert res.exit_code == 0 and path.is_file() and f"wrote {path}" in res.output, res.output
    again = invoke("zoo", "export", "digits-small-cnn", "-o", str(path), "--epochs", "3", "-q")
    assert again.exit_code == 2 and "exists: pass --force" in again.output
    res = invoke("convert", str(path), "-t", "tflite:fp32", "--eval", "digits:eval:flat", "-o", str(tmp_path / "out"),
                 "--json", "-q")
    assert res.exit_code == 0, res.output
    art = json.loads(res.output)["artifacts"][0]
    assert art["status"] == "passed" and art["validation"]["accuracy"] >= 85.0


def test_subclassed_zoo_export_converts_in_a_fresh_process(tmp_path):
    # A new interpreter has not imported edgekit.zoo.multi: loading must register the class itself,
    # and the subclassed model must be wrapped from the input shape saved in the file.
    path = tmp_path / "mt.keras"
    res = invoke("zoo", "export", "multitask-subclassed", "-o", str(path), "--epochs", "2", "-q")
    assert res.exit_code == 0, res.output
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "edgekit.cli", "convert", str(path), "-t", "onnx:fp32", "--eval",
                           "digits:eval", "-o", str(tmp_path / "out"), "--json", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [o["name"] for o in doc["source"]["outputs"]] == ["digit", "ink"]
    art = doc["artifacts"][0]
    assert art["status"] == "passed" and art["validation"]["max_abs_err"] < 1e-4


def test_zoo_modules_import_without_tensorflow():
    code = ("import sys, edgekit.cli, edgekit.zoo, tools.coverage, tools.coverage_report, "
            "edgekit.cli.zoo; bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPO)  # tools/ is a repo-root folder, not part of the wheel
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", ["edgekit.zoo.registry", "edgekit.zoo.resolve", "tools.coverage",
                                    "tools.coverage_report", "edgekit.cli.zoo", "edgekit.zoo.training"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 1
