"""The distribution promises: slim base install, the extras, one console script, docs that run."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
REPO = Path(__file__).resolve().parents[1]


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_base_dependencies_are_slim_and_extras_exist():
    p = _project()
    names = sorted(re.split(r"[<>=!~ \[]", d)[0].lower() for d in p["dependencies"])
    assert names == ["click", "numpy"]
    extras = p["optional-dependencies"]
    assert {"tflite", "convert", "all", "dev"} <= set(extras)
    assert [re.split(r"[<>=!~ ]", d)[0] for d in extras["tflite"]] == ["ai-edge-litert"]
    convert = " ".join(extras["convert"])
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization"):
        assert dist in convert
    assert p["requires-python"] == ">=3.10"
    assert p["scripts"]["edgekit"] == "edgekit.cli:main"


def test_readme_commands_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: venv$", makefile, re.M) and re.search(r"^demo: venv$", makefile, re.M)


@pytest.mark.parametrize("module", [
    "edgekit.manifest",
    "edgekit.errors",
    "edgekit._table",
    "edgekit._quiet",
    "edgekit._cli_util",
    "edgekit.registry",
    "edgekit.convert",
    "edgekit.convert.recipe",
    "edgekit.convert.validate",
    "edgekit.convert.exporters.base",
    "edgekit.convert.exporters.tflite",
    "edgekit.runtime.session",
    "edgekit.runtime.loader",
    "edgekit.runtime.device",
    "edgekit.runtime.backends.base",
    "edgekit.models",
])
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
