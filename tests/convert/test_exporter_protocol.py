"""The exporter protocol read off the FORMATS table: one option declaration that is enforced and
listed, typed unavailability, the int8-search protocol, and the stage registry. No conversions."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from edgekit.checks import positive_int
from edgekit.convert.capabilities import capabilities, short
from edgekit.convert.exporters import (ExporterBase, Int8Search, Option, check_target, exporter_names, get_exporter,
                                       supports_int8_search)
from edgekit.errors import MissingDependencyError, RecipeError, UnsupportedError
from edgekit.formats import FORMATS, FormatSpec
from edgekit.manifest import Artifact, Manifest


class ToyExporter(ExporterBase):
    """An exporter written in the test, registered through the table alone."""

    format = "toy"
    precisions = ("fp32", "int8")
    options: ClassVar[tuple[Option, ...]] = (
        Option("bits", (4, 8), ("int8",), default=8),
        Option("max_batch", check=positive_int, default=4),
    )

    def unavailable(self):
        return MissingDependencyError("toyengine", "toy", "toy artifacts")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(FORMATS, "toy", FormatSpec("toy", f"{__name__}:ToyExporter", "nowhere:Backend", (".toy",), "toy"))
    return "toy"


def test_a_format_added_to_the_table_is_a_target_with_its_declared_options(toy):
    assert toy in exporter_names()
    exp = check_target("toy", "int8", {"bits": 4})
    assert exp.suffix == ".toy"  # from the table, not declared twice
    with pytest.raises(RecipeError, match="toy option bits=4 does not apply to toy:fp32; it applies to: toy:int8"):
        check_target("toy", "fp32", {"bits": 4})
    with pytest.raises(RecipeError, match="toy option bits=3 is not one of 4, 8"):
        check_target("toy", "int8", {"bits": 3})
    with pytest.raises(RecipeError, match="toy option max_batch must be a positive integer, got 0"):
        check_target("toy", "fp32", {"max_batch": 0})
    with pytest.raises(RecipeError, match=r"toy has no option 'bit' \(did you mean 'bits'\?\)"):
        check_target("toy", "int8", {"bit": 4})


def test_capabilities_list_every_format_with_per_precision_options_and_typed_reasons(toy):
    rows = [r for r in capabilities() if r.format == "toy"]
    assert [(r.target, r.options, r.suffix) for r in rows] == [("toy:fp32", ("max_batch",), ".toy"),
                                                              ("toy:int8", ("bits", "max_batch"), ".toy")]
    assert isinstance(rows[0].convert_error, MissingDependencyError) and rows[0].convert_error.extra == "toy"
    assert rows[0].convert == "toyengine is not installed (needed for toy artifacts): pip install 'edgekit[toy]'"
    assert rows[0].convert_cell == "⛔ missing: pip install 'edgekit[toy]'"
    assert {r.format for r in capabilities()} == set(FORMATS)
    assert "convert_error" not in rows[0].to_dict()  # the JSON listing stays plain data


def test_short_cells_come_from_the_typed_error():
    assert short(None) == "✅ available"
    assert short(MissingDependencyError("onnxruntime", "onnx")) == "⛔ missing: pip install 'edgekit[onnx]'"
    assert short(UnsupportedError("CoreML runs only on macOS")) == "⛔ CoreML runs only on macOS"
    assert short(UnsupportedError("TF-TRT needs an NVIDIA GPU visible to TensorFlow and none is: ...")) == \
        "⛔ needs an NVIDIA GPU (see below)"


def test_unavailable_reason_is_the_text_of_unavailable(toy):
    exp = get_exporter("toy")
    assert exp.unavailable_reason() == str(exp.unavailable())
    for fmt in exporter_names():
        e = get_exporter(fmt)
        err = e.unavailable()
        assert e.unavailable_reason() == (None if err is None else str(err))


@pytest.mark.parametrize("target, options, msg", [
    ("fp32", {"keep_float": ["dense"]}, "keep_float=.* does not apply to tflite:fp32"),
    ("fp32", {"keep_float": "x"}, "keep_float=x does not apply to tflite:fp32"),
    ("int8", {"io": "int8", "keep_float": ["dense"]}, "contradicts io=int8: drop io or give io=float"),
    ("int8", {"io": "uint8", "keep_float": ["dense"]}, "contradicts io=uint8"),
    ("int8", {"keep_float": [1, 2]}, "keep_float must be a list of layer"),
    ("fp16", {"io": "float"}, "io=float does not apply to tflite:fp16; it applies to: tflite:int8"),
])
def test_tflite_options_are_enforced_per_precision(target, options, msg):
    with pytest.raises(RecipeError, match=msg):
        check_target("tflite", target, options)


def test_keep_float_alone_and_with_float_io_is_accepted():
    check_target("tflite", "int8", {"keep_float": ["dense"]})
    check_target("tflite", "int8", {"keep_float": ["dense"], "io": "float"})
    check_target("tflite", "int16x8", {"keep_float": ("dense",)})


def test_int8_search_flag_is_true_exactly_for_exporters_implementing_the_protocol():
    for fmt in exporter_names():
        exp = get_exporter(fmt)
        assert FORMATS[fmt].int8_search == supports_int8_search(exp) == isinstance(exp, Int8Search), fmt
    # The search needs a keep_float option on int8 to act on what the ranking returns.
    for fmt in (f for f in exporter_names() if FORMATS[f].int8_search):
        assert get_exporter(fmt).option("keep_float").applies("int8")


def test_artifact_error_fields_round_trip_and_old_manifests_load(tmp_path):
    from pathlib import Path

    a = Artifact("tflite:fp32,select_tf_ops=True", "tflite", "fp32", "error", error="validation could not run: x",
                 error_kind="engine", notes=("uses Select TF ops",))
    m = Manifest(recipe={}, source={}, artifacts=(a,))
    m.save(tmp_path)
    back = Manifest.load(tmp_path).artifacts[0]
    assert back == a and back.notes == ("uses Select TF ops",) and back.error_tool is None
    with pytest.raises(ValueError, match="error_kind 'oops'"):
        dataclasses.replace(a, error_kind="oops")
    old = Manifest.load(Path(__file__).resolve().parents[1] / "data" / "digits-int8")
    assert all(x.error_kind is None and x.notes == () for x in old.artifacts)


def test_stage_kinds_come_from_the_registry(monkeypatch):
    from edgekit.convert.stages import base, parse_stages

    assert base.stage_kinds() == ["prune", "qat"]
    with pytest.raises(RecipeError, match=r"unknown stage 'qatt'; did you mean 'qat'\?"):
        parse_stages([{"qatt": {}}])
    # A stage registered by its lazy string alone parses (its config) and is found for apply_stages.
    monkeypatch.setitem(base.STAGE_CLASSES, "noop", f"{__name__}:NoopStage")
    (cfg,) = parse_stages([{"noop": {"factor": 2}}])
    assert cfg == NoopConfig(factor=2) and isinstance(base.get_stage("noop"), base.Stage)


@dataclasses.dataclass(frozen=True)
class NoopConfig:
    kind: ClassVar[str] = "noop"
    factor: int = 1

    @classmethod
    def from_value(cls, value):
        return cls(**(value or {}))

    def to_value(self):
        return {self.kind: {"factor": self.factor}}


class NoopStage:
    kind: ClassVar[str] = "noop"
    config: ClassVar[type] = NoopConfig

    def apply(self, model, cfg, ctx):
        return model, {}
