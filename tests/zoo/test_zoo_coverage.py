"""The coverage matrix: zoo models x registered targets, every cell with a status and a reason.

The slow test runs every zoo model against a representative subset of targets (at least one per
format; int8 where the quantizers break); ``make coverage`` runs the full matrix into
docs/coverage.md, which the fast tests check is in step with the registries.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from edgekit.convert.exporters import exporter_names, get_exporter
from edgekit.manifest import ERROR, FAILED, NOT_VALIDATED, PASSED, STATUSES, UNSUPPORTED
from edgekit.zoo import zoo_names
from tools.coverage import BLAMES, Cell, CoverageRun, all_targets, blame_for, converter_name
from tools.coverage_report import render
from edgekit.runtime.backends import get_backend

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "coverage.md"
# One cell per format, plus TFLite int8 (where quantizers break first): enough to catch a regression
# in any exporter on any zoo model within the test budget. The full 19 targets: `make coverage`.
# Measured: ~45 s for these 72 cells in two workers once the models are trained (~80 s in one).
SUBSET = ["tflite:fp32", "tflite:int8", "onnx:fp32", "coreml:fp32", "tftrt:fp32", "tensorrt:fp32"]


def expected_status(target: str) -> str:
    """What this machine can honestly say about a cell whose conversion works."""
    fmt = target.split(":")[0]
    if get_exporter(fmt).unavailable_reason():
        return UNSUPPORTED
    if get_backend(fmt).unavailable_reason():
        return NOT_VALIDATED
    return PASSED


def test_subset_has_every_format():
    assert {t.split(":")[0] for t in SUBSET} == set(exporter_names())
    assert set(SUBSET) <= set(all_targets())
    assert len(all_targets()) == sum(len(get_exporter(f).precisions) for f in exporter_names())


@pytest.fixture(scope="module")
def coverage_run(trained_zoo):
    from tools.coverage import run

    t0 = time.perf_counter()
    # trained_zoo has put every model in the session cache: this run only converts and validates.
    # Two worker processes: both cores busy, and fresh processes convert faster than this long-lived one.
    result = run(targets=SUBSET, eval_limit=100, calib_limit=50, workers=2)
    result.settings["test_seconds"] = round(time.perf_counter() - t0, 1)
    return result


@pytest.mark.slow
def test_every_zoo_model_converts_to_every_format(coverage_run):
    run = coverage_run
    assert run.models == zoo_names() and run.targets == SUBSET
    assert len(run.cells) == len(zoo_names()) * len(SUBSET)
    for c in run.cells:
        assert c.status in STATUSES
        want = expected_status(c.target)
        assert c.status == want, (c.model, c.target, c.status, c.reason)
        if c.status == PASSED:
            assert c.blame is None and c.reason is None
            assert c.accuracy is not None and c.reference_accuracy >= 85.0
            if c.target.endswith("fp32"):
                assert c.max_abs_err < 1e-4 and c.accuracy == c.reference_accuracy, c
            else:  # int8 within the default tolerance: at most 2 points of accuracy
                assert c.reference_accuracy - c.accuracy <= 2.0 and c.snr_db >= 12.0, c
        else:
            assert c.reason and c.blame in BLAMES
        if c.status == NOT_VALIDATED:
            assert c.blame == "platform" and c.bytes > 0 and "CoreML runs only on macOS" in c.reason
        if c.status == UNSUPPORTED:
            assert c.blame == "engine" and c.bytes is None
    assert run.counts()["edgekit"] == 0  # no cell fails because of edgekit


@pytest.mark.slow
def test_the_report_of_a_real_run(coverage_run, tmp_path):
    doc = render(coverage_run)
    for name in zoo_names():
        assert re.search(rf"^\| {re.escape(name)} \| \d+\.\d \| ✅ \d+\.\d \|", doc, re.M), name
    assert "| model | ref | " + " | ".join(f"`{t}`" for t in SUBSET) + " |" in doc
    counts = coverage_run.counts()
    assert f"- ✅ passed: **{counts['passed']}**" in doc
    assert "- 🐞 errors attributable to edgekit (our bugs): **0**" in doc
    print(f"coverage subset: {len(coverage_run.cells)} cells in {coverage_run.settings['test_seconds']} s; "
          f"per model {coverage_run.seconds}")


class ToyExporter:
    """A format's exporter as the table names it; the matrix needs only its precisions."""

    format = "toy"
    precisions = ("fp32", "int8")


def test_a_format_only_in_the_formats_table_is_a_column_and_in_the_header(monkeypatch):
    import importlib.metadata

    from edgekit import formats
    from tools.coverage import machine

    spec = formats.FormatSpec("toy", f"{__name__}:ToyExporter", f"{__name__}:ToyBackend", (".toy",), "toy",
                              engines=(formats.EngineModule("toy_engine", ("toy-engine",)),))
    monkeypatch.setitem(formats.FORMATS, "toy", spec)
    assert [t for t in all_targets() if t.startswith("toy:")] == ["toy:fp32", "toy:int8"]
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "9.9" if d == "toy-engine" else real(d))
    assert machine()["toy-engine"] == "9.9"


def test_blame_rules():
    # Blame follows the status, then the error's kind as recorded where it was raised (Artifact.error_kind):
    # a tf2onnx / onnxruntime.quantization / coremltools refusal is "converter", an engine that cannot run
    # the artifact (Flex ops in LiteRT) "engine", an unexpected exception (KeyError) or a model that
    # could not be converted at all "edgekit".
    assert blame_for(PASSED, None) is None
    assert blame_for(UNSUPPORTED, "unsupported") == "engine"
    assert blame_for(NOT_VALIDATED, None) == "platform"
    assert blame_for(FAILED, None) == "precision"
    assert blame_for(ERROR, "converter") == "converter"
    assert blame_for(ERROR, "engine") == "engine"
    assert blame_for(ERROR, "unsupported") == "engine"
    assert blame_for(ERROR, "edgekit") == "edgekit"
    assert blame_for(ERROR, None) == "edgekit"
    assert converter_name("converter", "TFLite converter") == "TFLite converter"
    assert converter_name("edgekit", None) is None


def test_cells_take_blame_and_tool_from_the_artifact():
    from edgekit.manifest import Artifact
    from tools.coverage import cell_from_artifact

    art = Artifact("onnx:int8", "onnx", "int8", ERROR, error="onnx:int8 failed: shape inference",
                   error_kind="converter", error_tool="onnxruntime.quantization")
    cell = cell_from_artifact("m", art)
    assert (cell.blame, cell.tool, cell.reason) == ("converter", "onnxruntime.quantization", art.error)
    bug = cell_from_artifact("m", Artifact("onnx:fp32", "onnx", "fp32", ERROR, error="KeyError: 'logits'",
                                           error_kind="edgekit"))
    assert (bug.blame, bug.tool) == ("edgekit", None)


def test_report_layout_notes_and_grouping():
    cells = [Cell("a", "x:fp32", PASSED, accuracy=97.5, reference_accuracy=97.5, snr_db=130.0, max_abs_err=1e-6,
                  bytes=2048, seconds=0.4),
             Cell("a", "y:fp32", UNSUPPORTED, "engine", "y is not installed"),
             Cell("b", "x:fp32", ERROR, "converter", "TFLite conversion failed: 'tf.Foo' op (add select_tf_ops=true)",
                  tool="TFLite converter"),
             Cell("b", "y:fp32", UNSUPPORTED, "engine", "y is not installed"),
             Cell("a", "z:int8", NOT_VALIDATED, "platform", "not validated: CoreML runs only on macOS", bytes=3 << 20),
             Cell("b", "z:int8", FAILED, "precision", "accuracy drop 4.00 points > 2", accuracy=90.0,
                  reference_accuracy=94.0)]
    run = CoverageRun(["a", "b"], ["x:fp32", "y:fp32", "z:int8"], cells, seconds={"a": 1.0, "b": 2.0},
                      settings={"eval_limit": 10, "calib_limit": 5, "seed": 0})
    doc = render(run)
    assert "| a | 97.5 | ✅ 97.5 | ⛔ [2] | ⚪ 3.0 MiB |" in doc
    assert "| b | 94.0 | 🛑 [1] | ⛔ [2] | ❌ 90.0 [3] |" in doc
    assert "1. **converter** (b: x:fp32): TFLite conversion failed: 'tf.Foo' op (add select_tf_ops=true)" in doc
    assert "2. **engine** (all models: y:fp32): y is not installed" in doc
    assert "3. **precision** (b: z:int8): accuracy drop 4.00 points > 2" in doc
    assert "- 🛑 errors in the converter/quantizer: **1** (TFLite converter 1)" in doc
    assert "| `x:fp32` | ✅ passed | 97.50 | 130.0 | 1e-06 | 2 KiB |" in doc
    assert render(run) == doc and "0.4" not in doc  # no timings: regenerating gives the same file
    assert run.counts() == {"passed": 1, "engine": 2, "platform": 1, "precision": 1, "converter": 1, "edgekit": 0}


def test_committed_coverage_doc_matches_the_registries():
    """docs/coverage.md is regenerated (make coverage) whenever a zoo model or a target is added."""
    text = DOC.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model | ref |"))
    assert header == "| model | ref | " + " | ".join(f"`{t}`" for t in all_targets()) + " |"
    rows = re.findall(r"^\| ([a-z0-9-]+) \| [\d.-]+ \|", text, re.M)
    assert rows == zoo_names()
    total = int(re.search(r"\*\*(\d+) cells\*\* \((\d+) models × (\d+) targets\)", text).group(1))
    assert total == len(zoo_names()) * len(all_targets())
    counted = [int(n) for n in re.findall(r"^- \S+ [^*]*\*\*(\d+)\*\*", text, re.M)]
    assert sum(counted) == total
    assert "🐞 errors attributable to edgekit (our bugs): **0**" in text
