"""convert(): every artifact validated against the reference, failures recorded, nothing lost."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import digits, from_arrays
from edgekit.api import convert
from edgekit.convert.exporters import ExporterBase
from edgekit.convert.pipeline import EVAL_FILE
from edgekit.errors import DataError, InputError, MissingDependencyError, RecipeError, UnsupportedError
from edgekit.formats import FORMATS, FormatSpec
from edgekit.manifest import Manifest


def test_digits_four_targets_meet_the_skeleton_numbers(digits_out):
    out, m = digits_out
    assert [a.target for a in m.artifacts] == ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]
    assert all(a.status == "passed" for a in m.artifacts), [(a.target, a.error) for a in m.artifacts]
    fp32, dyn, int8, fp16 = m.artifacts
    # Done-means of the walking skeleton, measured on the real digits eval split.
    assert int8.bytes <= 0.30 * fp32.bytes
    assert dyn.bytes <= 0.30 * fp32.bytes
    assert fp16.bytes <= 0.55 * fp32.bytes
    assert int8.validation["accuracy_drop"] <= 2.0
    assert int8.validation["reference_accuracy"] >= 95.0
    assert fp32.validation["max_abs_err"] <= 1e-4
    assert fp32.validation["top1_agreement"] == 1.0
    assert int8.validation["samples"] == 359
    for a in m.artifacts:
        assert a.validation["snr_db"] >= a.validation["tolerance"]["min_snr_db"]


def test_manifest_records_everything(digits_out):
    out, m = digits_out
    on_disk = Manifest.load(out)
    assert on_disk == m
    assert on_disk.source["zoo"] == "digits-cnn" and on_disk.source["params"] > 100_000
    assert on_disk.recipe["targets"] == ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]
    assert {"edgekit", "tensorflow", "ai-edge-litert", "python"} <= set(on_disk.versions)
    assert on_disk.eval_data == {"source": "digits:eval", "samples": 359, "labels": True, "file": EVAL_FILE}
    for a in on_disk.artifacts:
        data = (out / a.path).read_bytes()
        assert a.bytes == len(data)
        assert a.sha256 == hashlib.sha256(data).hexdigest()
        assert 0 < a.gzip_bytes < a.bytes
        assert a.inputs[0].name == "image" and a.inputs[0].shape == (None, 8, 8, 1)
        assert a.outputs[0].name == "logits" and a.outputs[0].shape == (None, 10)
    int8 = on_disk.artifact("tflite:int8")
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].scale > 0
    assert int8.options == {"io": "int8"}
    assert on_disk.artifact("tflite:fp32").inputs[0].scale is None
    # No staging files left behind.
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    with np.load(out / EVAL_FILE) as z:
        assert z["x"].shape == (359, 8, 8, 1) and z["y"].shape == (359,)


def _write_npz(path: Path, x, y=None) -> str:
    from_arrays(x, y).to_npz(path)
    return str(path)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory, digits_model):
    p = tmp_path_factory.mktemp("model") / "digits.keras"
    digits_model.save(p)
    return p


def test_int8_float_io_and_file_model(tmp_path, digits_file):
    calib = _write_npz(tmp_path / "calib.npz", digits("calib").inputs[0])
    ev = digits("eval")
    evp = _write_npz(tmp_path / "eval.npz", ev.inputs[0], ev.labels)
    m = convert({"model": str(digits_file), "calib": calib, "eval": evp,
                 "targets": ["tflite:int8,io=float", "tflite:int16x8"]}, tmp_path / "out")
    a, b = m.artifacts
    assert a.target == "tflite:int8,io=float" and a.status == "passed"
    assert a.inputs[0].dtype == "float32" and a.outputs[0].dtype == "float32"
    assert b.status == "passed" and b.validation["accuracy_drop"] <= 2.0
    assert m.source["kind"] == "keras3"
    assert m.source["sha256"] == hashlib.sha256(digits_file.read_bytes()).hexdigest()


def test_int8_without_calibration_is_refused_before_work(tmp_path, digits_file):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"needs representative \(calibration\) data: pass --calib"):
        convert({"model": str(digits_file), "targets": ["tflite:fp32", "tflite:int8"]}, out)
    assert not out.exists() or not any(out.iterdir())


def test_wrong_calibration_shape_names_both_before_work(tmp_path, digits_file):
    calib = _write_npz(tmp_path / "c.npz", np.zeros((20, 8, 8), np.float32))
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        convert({"model": str(digits_file), "calib": calib, "targets": ["tflite:int8"]}, out)
    msg = str(e.value)
    assert "(8, 8)" in msg and "(8, 8, 1)" in msg and "image" in msg
    assert not out.exists() or not any(out.iterdir())


def test_empty_calibration_data_is_refused(tmp_path, digits_file):
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="no samples"):
        convert({"model": str(digits_file), "calib": str(calib), "targets": ["tflite:int8"]}, tmp_path / "out")


def test_unsupported_pair_and_unknown_format_refused_up_front(tmp_path):
    with pytest.raises(UnsupportedError, match="supported: fp32, fp16, dynamic, int8, int16x8"):
        convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int4"]}, tmp_path / "o")
    with pytest.raises(UnsupportedError, match="unknown format 'tensorrtt'"):
        convert({"model": "digits-cnn", "targets": ["tensorrtt:fp16"]}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_non_empty_output_needs_force_and_force_keeps_user_files(tmp_path, digits_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="not empty: pass --force"):
        convert({"model": "digits-cnn", "targets": ["tflite:fp32"]}, out)
    m = convert({"model": "digits-cnn", "targets": ["tflite:fp32"]}, out, force=True)
    assert m.ok and (out / "notes.txt").read_text() == "mine"
    m2 = convert({"model": "digits-cnn", "targets": ["tflite:fp16"]}, out, force=True)
    assert [a.target for a in Manifest.load(out).artifacts] == ["tflite:fp16"] and m2.ok
    assert not (out / "tflite-fp32.tflite").exists()  # the previous run's artifact was replaced


def test_failed_target_is_recorded_and_others_are_kept(tmp_path, digits_model):
    # An impossible tolerance on int8 fails that artifact only; the file is still written.
    m = convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8"],
                 "tolerances": {"int8": {"min_snr_db": 199.0}}}, tmp_path / "out")
    fp32, int8 = m.artifacts
    assert fp32.status == "passed"
    assert int8.status == "failed" and "snr" in int8.error and "< 199 dB" in int8.error
    assert (tmp_path / "out" / int8.path).is_file()
    assert not m.ok


class BrokenExporter(ExporterBase):
    """A real plug-in that fails, to prove one broken target never discards the others."""

    format = "broken"
    precisions = ("fp32",)

    def export(self, source, precision, options, calib, out):
        Path(out).write_bytes(b"half a file")
        raise RuntimeError("converter exploded\nwith a multi-line message")


class AbsentExporter(BrokenExporter):
    format = "absent"

    def unavailable(self):
        return MissingDependencyError("engine X", "x")


def _toy_format(monkeypatch, name: str, exporter: str) -> None:
    # Registered through the FORMATS table alone: no other registry is edited.
    monkeypatch.setitem(FORMATS, name, FormatSpec(name, f"{__name__}:{exporter}", "nowhere:Backend", (".bin",), name))


def test_export_error_and_unavailable_engine_are_recorded(tmp_path, digits_model, monkeypatch):
    _toy_format(monkeypatch, "broken", "BrokenExporter")
    _toy_format(monkeypatch, "absent", "AbsentExporter")
    out = tmp_path / "out"
    m = convert({"model": "digits-cnn", "targets": ["broken:fp32", "absent:fp32", "tflite:fp32"]}, out)
    broken, absent, good = m.artifacts
    assert broken.status == "error" and broken.error == "RuntimeError: converter exploded with a multi-line message"
    assert broken.path is None
    assert absent.status == "unsupported" and "pip install 'edgekit[x]'" in absent.error
    assert good.status == "passed"
    assert sorted(p.name for p in out.iterdir()) == ["eval.npz", "manifest.json", "tflite-fp32.tflite"]
    saved = json.loads((out / "manifest.json").read_text())
    assert [a["status"] for a in saved["artifacts"]] == ["error", "unsupported", "passed"]
    # Who each error is down to travels with it, typed: an unhandled exception is ours.
    assert [a["error_kind"] for a in saved["artifacts"]] == ["edgekit", "unsupported", None]


def test_in_memory_model_without_eval_data_uses_random_inputs(tmp_path):
    from testutil import tiny_keras_model

    m = convert({"model": "api", "targets": ["tflite:fp32", "tflite:fp16"]}, tmp_path / "o", model=tiny_keras_model())
    assert all(a.status == "passed" for a in m.artifacts)
    assert m.eval_data["file"] is None and "random" in m.eval_data["source"]
    assert m.artifacts[0].validation["accuracy"] is None  # no labels, no accuracy claim


def test_image_folder_calibration_and_eval_take_size_and_colour_from_the_model(tmp_path, digits_file):
    from PIL import Image

    # Real digits written as 16x16 grey PNGs in class folders: the model's 8x8x1 input decides the resize.
    ev = digits("eval")
    root = tmp_path / "imgs"
    for i, (img, label) in enumerate(zip(ev.inputs[0][:120], ev.labels[:120])):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        px = (img[..., 0] * 255).round().astype(np.uint8)
        Image.fromarray(px, "L").resize((16, 16), Image.NEAREST).save(root / str(label) / f"{i}.png")
    m = convert({"model": str(digits_file), "calib": str(root), "eval": str(root),
                 "targets": ["tflite:int8"], "images": {"scale": 1 / 255}}, tmp_path / "out")
    a = m.artifacts[0]
    assert a.status == "passed", a.error
    assert a.validation["samples"] == 120
    assert a.validation["reference_accuracy"] >= 90.0 and a.validation["accuracy_drop"] <= 2.0
    assert m.recipe["images"] == {"scale": 1 / 255}


def test_converter_refusal_and_exporter_notes_keep_their_type_in_the_manifest(tmp_path, digits_model, monkeypatch):
    from edgekit.convert.exporters.tflite import TFLiteExporter

    class Refusing:
        def convert(self):
            raise ValueError("'tf.Foo' op is neither a custom op nor a flex op")

    real = TFLiteExporter.converter
    monkeypatch.setattr(TFLiteExporter, "converter",
                        lambda self, source, precision, *a, **kw: Refusing() if precision == "fp16" else real(self, source, precision, *a, **kw))
    m = convert({"model": "digits-cnn", "targets": ["tflite:fp16", "tflite:fp32,select_tf_ops=true"]}, tmp_path / "o")
    refused, flex = m.artifacts
    assert refused.status == "error" and refused.error.startswith("TFLite conversion failed: 'tf.Foo' op")
    assert (refused.error_kind, refused.error_tool) == ("converter", "TFLite converter")
    assert flex.status == "passed" and flex.error_kind is None
    assert any("Select TF ops" in n and "Flex delegate" in n for n in flex.notes)  # the exporter's warning reaches users
    assert Manifest.load(tmp_path / "o").artifact("tflite:fp32,select_tf_ops=True").notes == flex.notes
