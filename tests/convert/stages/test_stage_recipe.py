"""Stage configs are data: parsing, defaults, round trips, CLI merging and the errors users see."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit.convert.recipe import Recipe
from edgekit.convert.stages.config import FitConfig, PruneConfig, QatConfig, parse_stages
from edgekit.convert.flags import cli_stages
from edgekit.errors import RecipeError
from edgekit.manifest import Artifact, Manifest


def test_stage_forms_defaults_and_round_trip(tmp_path):
    stages = parse_stages([{"prune": {"sparsity": 0.8, "layer_types": "Dense", "fit": {"epochs": 3, "loss": "mse"}}},
                           "qat"])
    prune, qat = stages
    assert isinstance(prune, PruneConfig) and isinstance(qat, QatConfig)
    assert prune.target_sparsity == 0.8 and prune.layer_types == ("Dense",) and prune.m_by_n is None
    # Stage-specific fit defaults; keys not given keep them; aliases are stored canonically.
    assert prune.fit == FitConfig(epochs=3, learning_rate=1e-3, loss="mean_squared_error")
    assert qat.fit == FitConfig(epochs=1, learning_rate=1e-5) and qat.preserve_sparsity is None
    assert parse_stages([{"qat": None}]) == parse_stages(["qat"]) == parse_stages({"qat": {}})
    assert PruneConfig(structure="2:4").target_sparsity == 0.5 and PruneConfig().target_sparsity == 0.5
    assert PruneConfig(structure="2:4", sparsity=0.5).m_by_n == (2, 4)

    r = Recipe.from_dict({"model": "m.keras", "targets": ["tflite:int8"], "train": "train.npz", "train_limit": 500,
                          "stages": [s.to_value() for s in stages]})
    assert r.stages == stages and r.train_limit == 500
    d = r.to_dict()
    assert d["stages"][0]["prune"]["sparsity"] == 0.8 and d["stages"][1]["qat"]["fit"]["learning_rate"] == 1e-5
    assert Recipe.from_dict(d) == r
    assert Recipe.from_dict({"model": "m", "targets": ["tflite:fp32"]}).stages == ()

    # YAML, with the training data resolved against the recipe's folder like calib/eval.
    (tmp_path / "train.npz").write_bytes(b"")
    (tmp_path / "r.yaml").write_text(
        "model: digits-cnn\ntargets: [tflite:int8]\ntrain: train.npz\n"
        "stages:\n  - prune: {structure: '2:4', fit: {epochs: 1, strategy: mirrored}}\n  - qat: {skip: [dense]}\n"
    )
    ry = Recipe.from_yaml(tmp_path / "r.yaml")
    assert ry.train == str(tmp_path / "train.npz")
    assert ry.stages[0].structure == "2:4" and ry.stages[0].fit.strategy == "mirrored" and ry.stages[1].skip == ("dense",)


@pytest.mark.parametrize("stages, msg", [
    ([{"prun": {}}], r"unknown stage 'prun'; did you mean 'prune'\?"),
    ([{"prune": {"sparsty": 0.8}}], r"unknown prune key 'sparsty'; did you mean 'sparsity'\?"),
    ([{"qat": {"fit": {"epoch": 2}}}], r"unknown fit key 'epoch'; did you mean 'epochs'\?"),
    ([{"prune": {"sparsity": 1.5}}], r"prune sparsity must be in \(0, 1\), got 1.5"),
    ([{"prune": {"sparsity": True}}], "prune sparsity must be a number"),
    ([{"prune": {"structure": "4:2"}}], "is not 'M:N' with 0 < M < N"),
    ([{"prune": {"structure": "2-4"}}], "is not 'M:N'"),
    ([{"prune": {"structure": "2:4", "sparsity": 0.8}}], "structure 2:4 fixes sparsity at 0.5"),
    ([{"prune": {"schedule": "poly"}}], r"prune schedule 'poly' is not one of polynomial, constant \(did you mean 'polynomial'\?\)"),
    ([{"prune": {"sparsity": 0.5, "initial_sparsity": 0.6}}], "initial_sparsity .* must be below the target"),
    ([{"prune": {"begin_step": 10, "end_step": 5}}], r"end_step \(5\) must be after begin_step \(10\)"),
    ([{"prune": {"fit": {"strategy": "mirror"}}}], r"did you mean 'mirrored'\?"),
    ([{"prune": {"fit": {"loss": "crossentropy"}}}], "fit loss 'crossentropy' is not one of"),
    ([{"prune": {"fit": {"epochs": 0}}}], "fit epochs must be an integer >= 1"),
    ([{"prune": {"fit": {"learning_rate": -1}}}], "fit learning_rate must be in"),
    ([{"qat": {"preserve_sparsity": "yes"}}], "preserve_sparsity must be true, false or null"),
    ([{"qat": {"layers": 3}}], "qat layers must be a list of layer names"),
    ([{"qat": {"layers": ["d1"], "skip": ["d1"]}}], r"\['d1'\] are both selected \(layers\) and skipped"),
    (["qat", {"prune": {}}], "prune after qat is not supported"),
    ([{"prune": {}}, {"prune": {}}], "stage 'prune' is listed 2 times"),
    ([{"prune": {}, "qat": {}}], "must be one mapping like"),
])
def test_stage_errors_are_one_line_with_a_hint(stages, msg):
    with pytest.raises(RecipeError, match=msg) as e:
        Recipe.from_dict({"model": "m", "targets": ["tflite:int8"], "stages": stages})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key, value, msg", [
    ("train_limit", 0, "train_limit must be a positive integer or null"),
    ("trian", "x.npz", r"unknown recipe key 'trian'; did you mean 'train'\?"),
])
def test_recipe_train_keys_are_checked(key, value, msg):
    with pytest.raises(RecipeError, match=msg):
        Recipe.from_dict({"model": "m", "targets": ["tflite:int8"], key: value})


def test_schedule_is_resolved_from_the_fine_tuning_length():
    c = PruneConfig(sparsity=0.8, fit=FitConfig(epochs=3)).resolved(steps_per_epoch=40)
    # 70 % of 120 steps, rounded to whole update intervals so the last update hits the target.
    assert (c.begin_step, c.end_step, c.frequency) == (0, 80, 8)
    assert (c.end_step - c.begin_step) % c.frequency == 0
    explicit = PruneConfig(begin_step=10, end_step=50, frequency=5).resolved(steps_per_epoch=40)
    assert (explicit.begin_step, explicit.end_step, explicit.frequency) == (10, 50, 5)
    tiny = PruneConfig().resolved(steps_per_epoch=1)
    assert tiny.end_step >= 1 and tiny.frequency >= 1
    with pytest.raises(RecipeError, match="begin_step 100 is past the end of fine-tuning"):
        PruneConfig(begin_step=100).resolved(steps_per_epoch=10)


def test_cli_flags_build_and_override_stages():
    out = cli_stages([], prune=0.8, prune_epochs=3, qat=True, qat_epochs=2, strategy="mirrored")
    prune, qat = parse_stages(out)
    assert prune.target_sparsity == 0.8 and prune.fit.epochs == 3 and qat.fit.epochs == 2
    assert prune.fit.strategy == qat.fit.strategy == "mirrored"
    # Flags win over a recipe's values and keep the rest; --qat-skip adds to the recipe's skip list.
    base = [{"prune": {"sparsity": 0.5, "layer_types": ["Dense"], "fit": {"batch_size": 16}}}, {"qat": {"skip": ["a"]}}]
    prune, qat = parse_stages(cli_stages(base, prune=0.7, qat_skip=("b", "a")))
    assert prune.target_sparsity == 0.7 and prune.layer_types == ("Dense",) and prune.fit.batch_size == 16
    assert qat.skip == ("a", "b")
    # --prune-structure alone adds a prune stage, placed before QAT.
    assert [s.kind for s in parse_stages(cli_stages(["qat"], prune_structure="2:4"))] == ["prune", "qat"]
    assert cli_stages(base) == [s.to_value() for s in parse_stages(base)]


@pytest.mark.parametrize("kw, msg", [
    ({"prune_epochs": 3}, "--prune-epochs needs a prune stage: add --prune SPARSITY"),
    ({"qat_epochs": 3}, "--qat-epochs needs a qat stage: add --qat"),
    ({"qat_skip": ("x",)}, "--qat-skip needs a qat stage"),
    ({"strategy": "mirrored"}, "--strategy applies to training stages"),
    ({"prune": 0.8, "prune_structure": "2:4"}, "fixes sparsity at 0.5"),
    ({"prune": 2.0}, r"prune sparsity must be in \(0, 1\)"),
])
def test_cli_flag_errors(kw, msg):
    with pytest.raises(RecipeError, match=msg):
        cli_stages([], **kw)


def test_manifest_stages_and_sparsity_round_trip_and_old_manifests_load():
    a = Artifact("tflite:int8", "tflite", "int8", "passed", path="m.tflite", bytes=10, gzip_bytes=5,
                 sparsity={"weights": 10, "zeros": 8, "sparsity": 0.8})
    m = Manifest(recipe={}, source={}, artifacts=(a,), stages={"order": ["prune"], "prune": {"pruned": ["d1"]}})
    back = Manifest.from_dict(m.to_dict())
    assert back == m and back.artifacts[0].sparsity["sparsity"] == 0.8
    old = m.to_dict()
    del old["stages"]
    del old["artifacts"][0]["sparsity"]
    legacy = Manifest.from_dict(old)
    assert legacy.stages == {} and legacy.artifacts[0].sparsity is None


def test_stage_configs_do_not_import_tensorflow():
    code = ("import sys, edgekit.convert.stages, edgekit.convert.recipe, edgekit.cli; "
            "edgekit.convert.stages.parse_stages(['qat']); print('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize("module", ["edgekit.convert.stages", "edgekit.convert.stages.config", "edgekit.convert.flags",
                                    "edgekit.convert.stages.sparsity", "edgekit.convert.stages.prune",
                                    "edgekit.convert.stages.fit", "edgekit.convert.stages.keras2"])
def test_stage_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
