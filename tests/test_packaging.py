"""The distribution promises: slim base install, the extras, one console script, docs that run."""

from __future__ import annotations

import doctest
import importlib
import re
import sys
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
    # One LiteRT line per platform (environment markers: arm64 takes a release that runs there).
    assert {re.split(r"[<>=!~ ;]", d)[0] for d in extras["tflite"]} == {"ai-edge-litert"}
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


def _package_modules() -> list[str]:
    """Every module of the package, from the file tree (importing them here would load TensorFlow at collection)."""
    src = REPO / "src"
    names = []
    for f in sorted((src / "edgekit").rglob("*.py")):
        parts = f.relative_to(src).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [n for n in names if not n.endswith("__main__")]


# Every public function carries a runnable example: all of them run, in every module.
@pytest.mark.parametrize("module", _package_modules())
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


# --- The distribution archives: what `python -m build` makes, and a fresh install of the wheel ----------------

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# What an sdist may hold besides src/: the files setuptools generates (PKG-INFO, setup.cfg with the
# egg_info tag) and the project's top-level docs; license files where the project has them.
SDIST_TOP = {"PKG-INFO", "setup.cfg", "pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in"}
NETWORK_ERRORS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
                  "Max retries exceeded", "No matching distribution found", "Could not fetch URL", "ConnectTimeout")


def _checkout_copy(dest: Path) -> Path:
    """The files a clean checkout has (tracked, plus new files git does not ignore), copied to ``dest``.

    Building from a copy keeps the test from seeing build/, *.egg-info or stray files of this working
    tree, and from racing other builds in it.
    """
    import shutil
    import subprocess

    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the archives are built from the files git knows")
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():  # a deleted-but-tracked file is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _setuptools_ok() -> str | None:
    """Why the installed setuptools cannot build this project without isolation, or ``None``."""
    from importlib import metadata

    want = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    floor = next((r.split(">=")[1] for r in want if r.startswith("setuptools>=")), "0")
    try:
        have = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return "setuptools is not installed"
    as_tuple = lambda v: tuple(int(p) for p in re.findall(r"\d+", v)[:3])  # noqa: E731
    return None if as_tuple(have) >= as_tuple(floor) else f"setuptools {have} < {floor} ([build-system] requires)"


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """The sdist and the wheel of this checkout: ``(sdist, wheel)`` paths.

    ``python -m build`` without ``--sdist/--wheel`` builds the sdist, then the wheel *from the sdist*:
    an sdist that lost a package file fails here. Without isolation (no network) when the installed
    setuptools can build the project; otherwise isolated, which needs the package index.
    """
    import subprocess

    pytest.importorskip("build", reason="python -m build: pip install build (in the dev extra)")
    root = tmp_path_factory.mktemp("dist")
    tree = _checkout_copy(root / "tree")
    why_not = _setuptools_ok()
    cmd = [sys.executable, "-m", "build", "--outdir", str(root / "out")] + ([] if why_not else ["--no-isolation"])
    p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and why_not and any(e in p.stdout + p.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"{why_not}, and an isolated build cannot reach the package index: "
                    f"{(p.stdout + p.stderr).strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (sdist,) = (root / "out").glob("*.tar.gz")
    (wheel,) = (root / "out").glob("*.whl")
    return sdist, wheel, tree


def _package_files(tree: Path) -> set[str]:
    return {str(p.relative_to(tree / "src")) for p in (tree / "src" / "edgekit").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_holds_the_package_and_its_data_only(dist):
    import zipfile

    _, wheel, tree = dist
    assert wheel.name == f"edgekit-{VERSION}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    info = f"edgekit-{VERSION}.dist-info/"
    package = {n for n in names if not n.startswith(info)}
    # exactly the package's files: every module, py.typed, nothing from tests/benchmarks/tools/examples
    assert package == _package_files(tree)
    assert "edgekit/py.typed" in package and "edgekit/runtime/bench/timing.py" in package
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "tools", "examples", "docs")]
    assert {n[len(info):] for n in names if n.startswith(info)} >= {"METADATA", "WHEEL", "RECORD", "entry_points.txt"}
    zf = zipfile.ZipFile(wheel)
    assert "edgekit = edgekit.cli:main" in zf.read(info + "entry_points.txt").decode()
    meta = zf.read(info + "METADATA").decode()
    assert f"Version: {VERSION}" in meta and "License-Expression: Apache-2.0" in meta
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
    assert sorted(r.split(">=")[0] for r in requires if "extra ==" not in r) == ["click", "numpy"]
    assert any(r.startswith("ai-edge-litert") and "extra == \"tflite\"" in r for r in requires)


def test_the_sdist_holds_the_package_pyproject_and_docs_only(dist):
    import tarfile

    sdist, _, tree = dist
    assert sdist.name == f"edgekit-{VERSION}.tar.gz"
    top = f"edgekit-{VERSION}/"
    with tarfile.open(sdist) as tf:
        files = {m.name[len(top):] for m in tf.getmembers() if m.isfile()}
    outside_src = {f for f in files if not f.startswith("src/")}
    licenses = {f for f in outside_src if re.match(r"(LICEN[CS]E|COPYING|NOTICE)", f)}
    assert outside_src - licenses <= SDIST_TOP, sorted(outside_src - licenses - SDIST_TOP)
    assert {"PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md"} <= outside_src
    in_src = {f[len("src/"):] for f in files if f.startswith("src/")}
    assert {f for f in in_src if not f.startswith("edgekit.egg-info/")} == _package_files(tree)


def _pip_failed_offline(p) -> str | None:
    text = p.stdout + p.stderr
    return next((line.strip() for line in text.splitlines()[::-1] if any(e in line for e in NETWORK_ERRORS)), None)


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_benches(dist, tmp_path):
    """``pip install edgekit-*.whl[tflite]`` into a new venv (no system site-packages), then the CLI from there.

    The wheel's dependencies (numpy, click, ai-edge-litert and its own) come from the package index
    pip is configured with (its cache makes repeats fast); without one the test skips saying so.
    """
    import json
    import os
    import subprocess
    import time

    _, wheel, _ = dist
    venv = tmp_path / "venv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    py = venv / "bin" / "python"
    t1 = time.perf_counter()
    p = subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{wheel}[tflite]"], capture_output=True,
                       text=True, timeout=900)
    t2 = time.perf_counter()
    if p.returncode != 0:
        offline = _pip_failed_offline(p)
        if offline:
            pytest.skip(f"pip cannot reach the package index for the wheel's dependencies: {offline}")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    print(f"fresh venv: create {t1 - t0:.1f} s, pip install wheel[tflite] {t2 - t1:.1f} s")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["EDGEKIT_RESULTS"] = str(tmp_path / "results.sqlite")
    run = lambda *args: subprocess.run([str(venv / "bin" / "edgekit"), *map(str, args)], capture_output=True,  # noqa: E731
                                       text=True, timeout=300, cwd=tmp_path, env=env)
    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"edgekit, version {VERSION}", v.stdout + v.stderr
    where = subprocess.run([str(py), "-c", "import edgekit, importlib.util as u; print(edgekit.__file__); "
                            "print(u.find_spec('tensorflow') is None)"], capture_output=True, text=True, cwd=tmp_path,
                           env=env, timeout=120)
    file, no_tf = where.stdout.split()
    assert Path(file).is_relative_to(venv) and no_tf == "True"  # the installed wheel, and no TensorFlow came along

    b = run("bench", REPO / "tests" / "data" / "digits-int8", "--runs", "5", "--json", "-")
    assert b.returncode == 0, b.stderr
    doc = json.loads(b.stdout)
    assert doc["schema"] == "edgekit.bench/1"
    (r,) = doc["results"]
    assert r["target"] == "tflite:int8" and r["status"] == "ok" and r["validation"] == "passed"
    assert r["engine"] == "ai-edge-litert" and r["runs"] == 5 and len(r["samples_ms"]) == 5
    assert 0 < r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
    assert r["accuracy"] >= 95.0 and r["accuracy_samples"] > 0
    assert (tmp_path / "results.sqlite").is_file()  # the history store works from the installed wheel
