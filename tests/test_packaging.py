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
    "edgekit.quiet",
    "edgekit.registry",
    "edgekit.api",
    "edgekit.cli",
    "edgekit.cli.common",
    "edgekit.cli.table",
    "edgekit.convert",
    "edgekit.convert.flags",
    "edgekit.convert.source",
    "edgekit.convert.tf_env",
    "edgekit.convert.recipe",
    "edgekit.convert.validate",
    "edgekit.convert.exporters.base",
    "edgekit.convert.exporters.tflite",
    "edgekit.convert.int8_aware",
    "edgekit.convert.stages.base",
    "edgekit.convert.stages.config",
    "edgekit.runtime.session",
    "edgekit.runtime.loader",
    "edgekit.runtime.device",
    "edgekit.runtime.backends.base",
    "edgekit.runtime.choose",
    "edgekit.runtime.doctor",
    "edgekit.runtime.bench.config",
    "edgekit.runtime.bench.timing",
    "edgekit.runtime.bench.sweep",
    "edgekit.runtime.bench.document",
    "edgekit.runtime.bench.gate",
    "edgekit.runtime.bench.history",
    "edgekit.runtime.serve.state",
    "edgekit.zoo",
    "edgekit.zoo.resolve",
])
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_wheel_holds_the_package_not_the_repository_tools():
    # The coverage matrix and the fuzzing harness are repository tools (tools/, run by make targets,
    # benchmarks and tests): packages are found under src/ only, so they never ship in the wheel.
    setuptools = pytest.importorskip("setuptools")
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find == {"where": ["src"]}
    packages = setuptools.find_packages(where=str(REPO / "src"))
    assert {"edgekit", "edgekit.cli", "edgekit.zoo", "edgekit.convert", "edgekit.runtime"} <= set(packages)
    assert all(p == "edgekit" or p.startswith("edgekit.") for p in packages), packages
    shipped = {p.stem for p in (REPO / "src" / "edgekit").rglob("*.py")}
    assert not shipped & {"coverage", "coverage_report", "fuzz"}
    assert (REPO / "tools" / "__init__.py").is_file() and (REPO / "tools" / "coverage.py").is_file()
