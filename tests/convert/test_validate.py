"""The numbers validation reports, on hand-made arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.convert.recipe import Tolerance
from edgekit.convert.validate import SNR_CAP_DB, compare, judge, snr_db
from edgekit.errors import InputError


def test_snr_known_values():
    ref = np.array([3.0, 4.0])  # power 25
    assert snr_db(ref, ref) == SNR_CAP_DB
    assert snr_db(ref, ref + np.array([0.5, 0.0])) == pytest.approx(10 * np.log10(25 / 0.25))
    assert snr_db(np.zeros(2), np.ones(2)) == -SNR_CAP_DB


def test_compare_accuracy_agreement_and_errors():
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 4.0], [5.0, 0.0, 0.0]], np.float32)
    act = ref.copy()
    act[3] = [0.0, 6.0, 0.0]  # flips sample 3's class
    labels = np.array([0, 1, 2, 1])
    m = compare([ref], [act], labels=labels, names=["logits"])
    assert m["top1_agreement"] == 0.75
    assert m["reference_accuracy"] == 75.0 and m["accuracy"] == 100.0 and m["accuracy_drop"] == -25.0
    assert m["max_abs_err"] == 6.0
    assert m["rel_max_abs_err"] == pytest.approx(6.0 / 5.0)
    assert m["outputs"]["logits"]["mean_abs_err"] == pytest.approx(11.0 / 12)
    assert m["samples"] == 4


def test_regression_output_has_no_top1():
    ref = [np.linspace(0, 1, 10, dtype=np.float32).reshape(10, 1)]
    m = compare(ref, [ref[0] * 1.01], labels=np.arange(10))
    assert m["top1_agreement"] is None and m["accuracy"] is None
    assert m["snr_db"] == pytest.approx(40.0, abs=1e-3)


def test_nan_outputs_fail_loudly():
    ref = [np.ones((4, 3), np.float32)]
    act = [ref[0].copy()]
    act[0][1, 2] = np.nan
    m = compare(ref, act)
    assert m["nonfinite"] == 1 and m["snr_db"] == -SNR_CAP_DB
    assert judge(m, Tolerance())[0] == "1 NaN/inf output values where the reference is finite"


def test_shape_and_count_mismatch():
    with pytest.raises(InputError, match="shape"):
        compare([np.zeros((2, 3))], [np.zeros((2, 4))])
    with pytest.raises(InputError, match="2 outputs but the reference has 1"):
        compare([np.zeros((2, 3))], [np.zeros((2, 3)), np.zeros((2, 3))])


def test_judge_each_check_and_scaled_abs_err():
    m = {"max_abs_err": 0.5, "rel_max_abs_err": 0.05, "snr_db": 25.0, "top1_agreement": 0.9, "accuracy_drop": 3.0}
    assert judge(m, Tolerance()) == []
    why = judge(m, Tolerance(max_abs_err=0.01, min_snr_db=30, min_top1_agreement=0.95, max_accuracy_drop=2.0))
    assert len(why) == 4
    assert why[0].startswith("max abs err 0.5 (relative 0.05) > 0.01")
    assert "accuracy drop 3.00 points > 2" in why[3]
