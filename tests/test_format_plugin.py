"""A new format is one FormatSpec: registered in ``FORMATS`` alone, it is everywhere a format shows.

The toy ``npzmlp`` format (``tests/toy_format.py``: an exporter and a backend written against the
public plug-in bases only) is added with one ``FORMATS`` entry and no other edit. It must then show
up in ``edgekit convert --list-targets``, ``edgekit doctor``, the capability (format x precision)
matrix, the artifact chooser's per-device order, the manifest's versions and the coverage matrix —
and it must really work: the trained zoo MLP converts, validates against Keras with the same
accuracy, loads through ``edgekit.runtime`` and benches.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.formats import DEVICE_CLASSES, FORMATS, EngineModule, FormatSpec, preference

TOY = FormatSpec(
    "npzmlp", "toy_format:MLPExporter", "toy_format:MLPBackend", (".npzmlp",), extra="npzmlp",
    engines=(EngineModule("numpy", ("numpy",)),),
    # Ranked before everything on CPUs, so the chooser's pick proves it read the table.
    prefer={c: {"fp32": -2, "fp16": -1} for c in DEVICE_CLASSES},
)
TARGETS = ["npzmlp:fp32", "npzmlp:fp16"]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(FORMATS, TOY.name, TOY)
    return TOY


def test_unregistered_the_toy_is_nowhere():
    from edgekit.convert.exporters import exporter_names
    from edgekit.runtime.backends import SUFFIXES

    assert "npzmlp" not in exporter_names() and ".npzmlp" not in SUFFIXES


def test_list_targets_and_capabilities_show_it(toy):
    from edgekit.cli import main
    from edgekit.convert.capabilities import capabilities

    rows = {r.target: r for r in capabilities()}
    assert {"npzmlp:fp32", "npzmlp:fp16"} <= set(rows)
    assert rows["npzmlp:fp32"].convert_ok and rows["npzmlp:fp32"].run_ok and rows["npzmlp:fp32"].suffix == ".npzmlp"
    res = CliRunner().invoke(main, ["convert", "--list-targets", "--json"])
    assert res.exit_code == 0, res.output
    listed = {r["target"]: r for r in json.loads(res.output)}
    assert listed["npzmlp:fp16"]["convert"] is None and listed["npzmlp:fp16"]["run"] is None
    table = CliRunner().invoke(main, ["convert", "--list-targets"])
    assert table.exit_code == 0 and "npzmlp:fp32" in table.output


def test_doctor_reports_it(toy):
    from edgekit.cli import main
    from edgekit.runtime.device import engines
    from edgekit.runtime.doctor import diagnose

    assert diagnose()["backends"]["npzmlp"]["available"] is True
    res = CliRunner().invoke(main, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["backends"]["npzmlp"] == {"available": True, "reason": None, "install": None}
    assert engines()["numpy"] == np.__version__  # device detection reads the table's engines


def test_device_preference_and_versions_read_it(toy):
    from edgekit.formats import distributions, installed_versions

    assert preference("x86")[:2] == [("npzmlp", "fp32"), ("npzmlp", "fp16")]
    assert preference("arm")[0] == ("npzmlp", "fp32")
    assert "numpy" in distributions() and installed_versions()["numpy"] == np.__version__


def test_coverage_matrix_lists_it(toy):
    from tools.coverage import all_targets

    assert set(TARGETS) <= set(all_targets())


@pytest.fixture(scope="module")
def toy_out(tmp_path_factory):
    """The zoo MLP converted to the toy format (and tflite:fp32 beside it), with the toy registered."""
    from edgekit.api import convert

    mp = pytest.MonkeyPatch()
    mp.setitem(FORMATS, TOY.name, TOY)
    out = tmp_path_factory.mktemp("toy-out")
    try:
        manifest = convert({"model": "mnist-mlp", "targets": [*TARGETS, "tflite:fp32"], "eval_limit": 200}, out)
        yield out, manifest
    finally:
        mp.undo()


def test_the_toy_converts_validates_and_keeps_the_accuracy(toy_out):
    out, manifest = toy_out
    arts = {a.target: a for a in manifest.artifacts}
    fp32, fp16 = arts["npzmlp:fp32"], arts["npzmlp:fp16"]
    assert fp32.status == "passed" and fp16.status == "passed", (fp32.error, fp16.error)
    assert fp32.path.endswith(".npzmlp") and (out / fp32.path).stat().st_size == fp32.bytes
    v = fp32.validation
    assert v["max_abs_err"] <= 1e-4 and v["accuracy"] == pytest.approx(v["reference_accuracy"])
    assert v["reference_accuracy"] > 80  # a trained model on real digits, not random weights
    assert fp16.validation["accuracy_drop"] <= 1.0
    assert fp32.notes and "Dense layers" in fp32.notes[0]  # ExportResult.notes reach the manifest
    assert arts["tflite:fp32"].status == "passed"


def test_the_runtime_loads_chooses_and_benches_it(toy_out, toy):
    import edgekit.runtime as rt
    from edgekit.runtime.bench import BenchConfig, bench_path

    out, manifest = toy_out
    session = rt.load(out)  # the table ranks the toy first on every device class
    assert session.format == "npzmlp" and session.precision == "fp32"
    x = np.zeros((3, 784), np.float32)
    (logits,) = session.run({"pixels": x}).values()
    assert logits.shape == (3, 10)
    results = {r.target: r for r in bench_path(out, BenchConfig(warmup=1, runs=3))}
    assert results["npzmlp:fp32"].status == "ok"
    assert results["npzmlp:fp32"].accuracy == pytest.approx(manifest.artifacts[0].validation["accuracy"])


def test_a_coverage_run_converts_it(toy, tmp_path):
    from tools.coverage import run

    result = run(["mnist-mlp"], TARGETS, eval_limit=100, work_dir=tmp_path)
    cells = {c.target: c for c in result.cells}
    assert cells["npzmlp:fp32"].status == "passed" and cells["npzmlp:fp32"].blame is None
    assert cells["npzmlp:fp32"].accuracy == pytest.approx(cells["npzmlp:fp32"].reference_accuracy)
    # A zoo model the toy cannot store is a reasoned, typed refusal, never a crash.
    conv = run(["digits-cnn"], ["npzmlp:fp32"], eval_limit=50, work_dir=tmp_path / "cnn").cells[0]
    assert conv.status == "error" and "Dense layers only" in conv.reason
    assert conv.blame == "converter" and conv.tool == "npzmlp"  # the error's kind, recorded where raised
