"""The accuracy-aware search and calibration checks as logic, on hand-made inputs with known answers."""

from __future__ import annotations

import math

import numpy as np

from edgekit.calibration import from_arrays
from edgekit.convert.accuracy_aware import Candidate, search
from edgekit.convert.calib_checks import input_range_warnings, saturation
from edgekit.convert.sensitivity import LayerError, keep_float_set, rank_rows


def _layers(n: int, chain: bool = False) -> list[LayerError]:
    return [LayerError(f"l{i}", "FC", float(n - i), "rmse/scale", i + 1, (f"l{i + 1}",) if chain and i + 1 < n else ())
            for i in range(n)]


def _evaluate_needing(needed: set[str], calls: list):
    def evaluate(keep):
        calls.append(keep)
        drop = 0.3 if needed <= set(keep) else 20.0
        return Candidate(tuple(keep), "int8", {"accuracy_drop": drop}, 1000 + 10 * len(keep))
    return evaluate


def meets(c):
    return c.metrics["accuracy_drop"] <= 1.0


def test_plain_int8_meeting_the_budget_costs_nothing():
    calls: list = []
    r = search(_layers(10), _evaluate_needing(set(), calls), meets, first=Candidate((), "int8", {"accuracy_drop": 0.1}))
    assert r.best.keep_float == () and r.conversions == 0 and calls == []
    assert "nothing kept in float" in r.message


def test_binary_search_finds_the_smallest_prefix_with_log_conversions():
    for n, needed_rank in ((16, 3), (16, 1), (16, 15), (7, 5), (7, 6)):
        calls: list = []
        layers = _layers(n)
        needed = {f"l{needed_rank - 1}"}
        r = search(layers, _evaluate_needing(needed, calls), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}))
        assert r.best.keep_float == tuple(f"l{i}" for i in range(needed_rank)), (n, needed_rank)
        assert r.conversions == len(calls) <= 1 + math.ceil(math.log2(n)), (n, needed_rank, len(calls))
        assert r.tried[0].note == "plain int8" and r.tried[1].note == f"top {n - 1} of {n} ranked layers in float"
    # Needing every layer float is the float model: no int8 answer, and it is never converted.
    calls = []
    r = search(_layers(8), _evaluate_needing({"l7"}, calls), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}))
    assert r.best is None and "only keeping all 8 quantized layers in float" not in r.message
    assert "even with 7 of 8 quantized layers kept in float the budget is missed" in r.message


def test_producers_covering_everything_skip_the_float_model():
    # A chain where every layer is fed by the next: the float-heavy end would be the float model.
    calls: list = []
    layers = _layers(4, chain=True)
    r = search(layers, _evaluate_needing({"l3"}, calls), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}))
    assert r.best is None and "which is the float model" in r.message
    assert all(set(c) != {"l0", "l1", "l2", "l3"} for c in calls)


def test_producers_are_kept_float_with_their_consumer():
    layers = _layers(6, chain=True)  # l0 is fed by l1, l1 by l2, ...
    assert keep_float_set(layers, 1) == ("l0", "l1")
    assert keep_float_set(layers, 2) == ("l0", "l1", "l2")
    calls: list = []
    r = search(layers, _evaluate_needing({"l1"}, calls), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}))
    assert r.best.keep_float == ("l0", "l1")  # the top layer's producer came along: one layer deep was enough


def test_float_heavy_end_missing_stops_with_a_message_and_tries_int16x8():
    calls: list = []
    r = search(_layers(4), _evaluate_needing({"nope"}, calls), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}),
               try_int16x8=lambda: Candidate((), "int16x8", {"accuracy_drop": 0.4}, 1300))
    assert len(calls) == 1  # only the float-heavy end: no pointless binary search
    assert "even with 3 of 4 quantized layers kept in float the budget is missed" in r.message
    assert r.best.precision == "int16x8" and "int16x8" in r.message
    r2 = search(_layers(4), _evaluate_needing({"nope"}, []), meets, first=Candidate((), "int8", {"accuracy_drop": 20.0}))
    assert r2.best is None


def test_candidate_records_percent_int8():
    c = Candidate(("a", "b"), "int8", {"accuracy": 97.0, "accuracy_drop": 0.5}, 1234)
    d = c.to_dict(total_layers=8)
    assert d["layers_int8_pct"] == 75.0 and d["keep_float"] == ["a", "b"] and d["bytes"] == 1234


def test_rank_rows_uses_rmse_over_scale_and_keeps_known_producers():
    rows = [
        {"op_name": "CONV_2D", "tensor_name": "a", "mean_squared_error": "0.0001", "scale": "0.1"},  # 0.1
        {"op_name": "FULLY_CONNECTED", "tensor_name": "b", "mean_squared_error": "0.04", "scale": "0.05"},  # 4.0
        {"op_name": "FULLY_CONNECTED", "tensor_name": "c", "mean_squared_error": "0.0", "scale": "0.0"},
    ]
    ranked = rank_rows(rows, {"b": ("a", "input_not_quantized"), "a": ()})
    assert [(r.name, r.rank) for r in ranked] == [("b", 1), ("a", 2), ("c", 3)]
    assert ranked[0].score == 4.0 and ranked[0].metric == "rmse/scale" and ranked[0].producers == ("a",)


def test_saturation_counts_clipped_values_not_relu_zeros():
    q = np.array([-128, -128, 0, 127], np.int8)
    assert saturation(q) == 0.75
    assert saturation(q, zero_point=-128) == 0.25
    assert saturation(np.zeros(0, np.int8)) == 0.0


def test_input_range_warning_names_the_input_and_ranges():
    rng = np.random.default_rng(0)
    calib = from_arrays(rng.random((100, 4), dtype=np.float32) * 0.3)
    good = from_arrays(rng.random((50, 4), dtype=np.float32) * 0.3)
    bad = from_arrays(rng.random((50, 4), dtype=np.float32))
    assert input_range_warnings(calib, good, ["x"]) == []
    (w,) = input_range_warnings(calib, bad, ["x"])
    assert w.startswith("input 'x': ") and "outside the calibration data's range [" in w and "(eval: [" in w
    share = float(w.split("% of eval")[0].split(": ")[1])
    assert 60 < share < 80  # ~70 % of U[0,1) lies above 0.3


def test_input_range_share_is_counted_in_blocks_on_a_memory_mapped_eval_set(tmp_path, monkeypatch):
    # Counted a few rows at a time (no whole-array boolean temporaries: 290 MB at 1,000 samples of
    # 224x224x3), with the whole-array formula's result, also for a memory-mapped file.
    from edgekit.convert import calib_checks

    rng = np.random.default_rng(1)
    e = rng.normal(0.5, 0.4, (37, 6, 5)).astype(np.float32)
    np.save(tmp_path / "e.npy", e)
    mapped = np.load(tmp_path / "e.npy", mmap_mode="r")
    want = float(np.mean((e < 0.1) | (e > 0.9)))
    monkeypatch.setattr(calib_checks, "_BLOCK_VALUES", 64)  # 2 rows per block, the last one short
    assert calib_checks._share_outside(mapped, 0.1, 0.9) == want
    monkeypatch.setattr(calib_checks, "_BLOCK_VALUES", 1)  # a row bigger than a block: one row at a time
    assert calib_checks._share_outside(e, 0.1, 0.9) == want
