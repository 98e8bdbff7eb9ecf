"""Recipes are data: parsing, round trips, tolerances, and the errors users see."""

from __future__ import annotations

import pytest

from edgekit.convert.exporters import check_target, exporter_names
from edgekit.convert.recipe import DEFAULT_TOLERANCES, Recipe, Target, Tolerance
from edgekit.errors import RecipeError, UnsupportedError


def test_target_parse_with_options_and_display():
    t = Target.parse("TFLite:INT8, io=float")
    assert (t.format, t.precision, t.opts) == ("tflite", "int8", {"io": "float"})
    assert t.display == "tflite:int8,io=float"
    assert t.label == "tflite-int8-io-float"
    assert Target.parse("tflite").precision == "fp32"


@pytest.mark.parametrize("bad", [":int8", "tflite:int8,io", "tflite:int8,=x"])
def test_target_parse_errors(bad):
    with pytest.raises(RecipeError, match="tflite:int8"):
        Target.parse(bad)


def test_recipe_round_trip_and_mapping_targets():
    r = Recipe.from_dict({
        "model": "digits-cnn",
        "targets": ["tflite:fp32", {"format": "tflite", "precision": "int8", "io": "float"}],
        "calib": "digits:calib",
        "tolerances": {"int8": {"max_accuracy_drop": 1.0}},
    })
    assert [t.display for t in r.targets] == ["tflite:fp32", "tflite:int8,io=float"]
    assert Recipe.from_dict(r.to_dict()) == r
    assert r.tolerance("int8").max_accuracy_drop == 1.0
    assert r.tolerance("fp32") == Tolerance.for_precision("fp32")


def test_recipe_unknown_key_has_hint():
    with pytest.raises(RecipeError, match=r"unknown recipe key 'target'; did you mean 'targets'\?"):
        Recipe.from_dict({"model": "m.keras", "target": ["tflite:fp32"]})


def test_recipe_unknown_tolerance_has_hint():
    with pytest.raises(RecipeError, match="did you mean 'min_snr_db'"):
        Recipe.from_dict({"model": "m", "targets": ["tflite:fp32"], "tolerances": {"int8": {"min_snr": 3}}})


@pytest.mark.parametrize("d, msg", [
    ({"targets": ["tflite:fp32"]}, "needs 'model'"),
    ({"model": "m"}, "no targets"),
    ({"model": "m", "targets": ["tflite:fp32", "tflite:fp32"]}, "more than once"),
    ({"model": "m", "targets": ["tflite:fp32"], "calib_limit": 0}, "calib_limit"),
    ({"model": "m", "targets": ["tflite:fp32"], "tolerances": {"int8": {"min_snr_db": -1}}}, "non-negative"),
])
def test_recipe_invalid(d, msg):
    with pytest.raises(RecipeError, match=msg):
        Recipe.from_dict(d)


def test_star_tolerance_applies_to_all_and_precision_wins():
    r = Recipe.from_dict({"model": "m", "targets": ["tflite:fp32"],
                          "tolerances": {"*": {"max_accuracy_drop": 5.0}, "int8": {"max_accuracy_drop": 0.5}}})
    assert r.tolerance("fp16").max_accuracy_drop == 5.0
    assert r.tolerance("int8").max_accuracy_drop == 0.5
    assert r.tolerance("int8").min_snr_db == DEFAULT_TOLERANCES["int8"]["min_snr_db"]


def test_from_yaml_resolves_relative_paths(tmp_path):
    (tmp_path / "calib.npz").write_bytes(b"placeholder")
    (tmp_path / "r.yaml").write_text("model: digits-cnn\ntargets: [tflite:fp32, 'tflite:int8,io=float']\ncalib: calib.npz\n")
    r = Recipe.from_yaml(tmp_path / "r.yaml")
    assert r.calib == str(tmp_path / "calib.npz")
    assert r.model == "digits-cnn"  # a zoo name, not a file: left alone
    assert r.targets[1].opts == {"io": "float"}


def test_from_yaml_errors(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        Recipe.from_yaml(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        Recipe.from_yaml(tmp_path / "list.yaml")


def test_capability_table_errors_name_what_is_supported():
    assert "tflite" in exporter_names()
    with pytest.raises(UnsupportedError, match="supported: fp32, fp16, dynamic, int8, int16x8"):
        check_target("tflite", "int4")
    with pytest.raises(UnsupportedError, match="did you mean 'tflite'"):
        check_target("tfilte", "fp32")
    with pytest.raises(RecipeError, match="no option 'bits'"):
        check_target("tflite", "int8", {"bits": 4})
    with pytest.raises(RecipeError, match="io='int4' is not one of int8, uint8, float"):
        check_target("tflite", "int8", {"io": "int4"})
