"""edgekit.runtime.pick and ``edgekit pick``: a measured artifact choice, cached per device (real LiteRT, no mocks).

Which precision wins is the benchmark's business; these tests check that the choice is one that was
really timed, lies within the tie rule of the fastest figure of the same run, and that the caches are
used, invalidated and ignored when they should be.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgekit.runtime as rt
from edgekit.errors import InputError, ModelError
from edgekit.manifest import Manifest, sha256_file
from edgekit.runtime.device import device_info, device_key
from edgekit.runtime.pick import PICK_NAME, TIE, accuracy_drop_bound, pick, user_cache_file

BUDGET = 0.3


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty user cache of this test's own."""
    d = tmp_path / "user-cache"
    monkeypatch.setenv("EDGEKIT_CACHE", str(d))
    return d


def _copy(digits_out, tmp_path: Path, name: str = "out") -> Path:
    dst = tmp_path / name
    shutil.copytree(digits_out[0], dst)
    return dst


def _cli():
    from edgekit.cli import main

    return main


def _passed(manifest: Manifest) -> set[str]:
    return {a.target for a in manifest.artifacts if a.status == "passed" and a.path}


# ------------------------------------------------------------------ the measured choice


def test_measure_chooses_a_timed_candidate_within_the_tie_of_the_fastest(digits_out, cache):
    out, manifest = digits_out
    t0 = time.perf_counter()
    p = pick(out, budget=BUDGET)
    wall = time.perf_counter() - t0
    assert not p.cached and p.measured
    assert {t.target for t in p.timings} == _passed(manifest)  # every validated, runnable artifact was timed
    assert [t.prior for t in p.timings] == list(range(len(p.timings)))  # in the rule table's order
    assert p.rules_choice == p.timings[0].target == rt.choose_artifact(manifest)[0].target
    for t in p.timings:
        assert t.p50_ms > 0 and t.p90_ms > 0 and t.first_ms > 0 and t.load_ms > 0
        assert len(t.round_p50_ms) >= 3 and t.runs >= len(t.round_p50_ms)
        assert min(t.round_p50_ms) <= t.p50_ms <= max(t.round_p50_ms)
    chosen = p.timing(p.chosen)
    fastest = min(t.p50_ms for t in p.timings)
    assert chosen.p50_ms <= fastest * (1 + TIE)
    # Tie rule: nobody within the tie comes earlier in the rule table's order than the chosen one.
    assert all(t.prior >= chosen.prior for t in p.timings if t.p50_ms <= fastest * (1 + TIE))
    assert f"p50 {chosen.p50_ms:.2f} ms" in p.reason
    assert p.batch_size == 1 and p.num_threads == device_info()["cores"]
    assert p.device_key == device_key() and p.budget_s == BUDGET
    assert p.artifacts == {a.target: a.sha256 for a in manifest.artifacts}
    assert wall < BUDGET * 2 + 3  # bounded: budget (+ loading four tiny models)
    assert Path(p.source) == user_cache_file(p.key) and Path(p.source).is_file()


def test_second_call_uses_the_cache_without_timing_again(digits_out, cache):
    out, _ = digits_out
    first = pick(out, budget=BUDGET)
    t0 = time.perf_counter()
    second = pick(out, budget=BUDGET)
    wall = time.perf_counter() - t0
    assert second.cached and not first.cached
    assert second.chosen == first.chosen
    assert second.timings == first.timings and second.created == first.created  # the stored figures, not new ones
    assert second.source == first.source
    assert wall < 0.25 * BUDGET and second.took_s < 0.25 * BUDGET
    assert "cached" in second.explain() and second.source in second.explain()
    forced = pick(out, budget=BUDGET, force=True)
    assert not forced.cached and forced.created >= first.created and forced.timings != first.timings


def test_batch_threads_and_filters_are_part_of_the_key(digits_out, cache):
    out, _ = digits_out
    base = pick(out, budget=BUDGET)
    assert not pick(out, budget=BUDGET, batch_size=4).cached
    assert not pick(out, budget=BUDGET, num_threads=1).cached
    assert pick(out, budget=BUDGET).cached
    assert base.key != pick(out, batch_size=4).key
    assert pick(out, batch_size=4).batch_size == 4


def test_no_cache_measures_and_stores_nothing(digits_out, cache):
    out, _ = digits_out
    pick(out, budget=BUDGET)
    p = pick(out, budget=BUDGET, use_cache=False)
    assert not p.cached and p.source is None
    assert len(list((cache / "pick").glob("*.json"))) == 1


# ------------------------------------------------------------------ pick.json beside the manifest


def test_written_pick_json_serves_load_measure_with_an_empty_user_cache(digits_out, tmp_path, monkeypatch):
    out = _copy(digits_out, tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "measuring-device"))
    written = pick(out, budget=BUDGET, write=True)
    doc = json.loads((out / PICK_NAME).read_text())
    assert [e["key"] for e in doc["picks"]] == [written.key]
    fresh = tmp_path / "identical-device"
    monkeypatch.setenv("EDGEKIT_CACHE", str(fresh))
    s = rt.load(out, choose="measure", budget=BUDGET)
    assert s.artifact.target == written.chosen
    info = s.info["pick"]
    assert info["cached"] is True and info["source"] == str(out / PICK_NAME)
    assert [t["p50_ms"] for t in info["timings"]] == [t.p50_ms for t in written.timings]
    assert s.info["chosen"].startswith(f"{written.chosen}: ") and f"from {out / PICK_NAME}" in s.info["chosen"]
    assert not list(fresh.rglob("*.json"))  # read from the folder: nothing measured, nothing stored
    x = rt.load(out, target="tflite:fp32").run(__import__("numpy").zeros((1, 8, 8, 1), "float32"))
    assert s.run(__import__("numpy").zeros((1, 8, 8, 1), "float32"))["logits"].shape == x["logits"].shape


def test_a_different_device_ignores_pick_json_with_a_note(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    pick(out, budget=BUDGET, write=True, use_cache=False)
    other = {**device_info(), "cpu": "Some Other CPU 9000"}
    p = pick(out, budget=BUDGET, device=other)
    assert not p.cached and p.device_key == device_key(other) != device_key()
    assert any("measured on other devices" in n for n in p.notes), p.notes
    # Both devices' decisions can live in one pick.json.
    pick(out, budget=BUDGET, device=other, write=True, force=True)
    keys = {e["device_key"] for e in json.loads((out / PICK_NAME).read_text())["picks"]}
    assert keys == {device_key(), device_key(other)}
    assert pick(out, budget=BUDGET, device=other).cached


def test_a_changed_artifact_makes_the_cached_pick_stale(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    first = pick(out, budget=BUDGET, write=True)
    assert pick(out, budget=BUDGET).cached
    # "Re-convert" tflite:fp16: new bytes, new sha256 in the manifest (a valid model, so it still runs).
    m = Manifest.load(out)
    fp16 = m.artifact("tflite:fp16")
    shutil.copyfile(out / m.artifact("tflite:fp32").path, out / fp16.path)
    new = dataclasses.replace(fp16, sha256=sha256_file(out / fp16.path), bytes=(out / fp16.path).stat().st_size)
    dataclasses.replace(m, artifacts=tuple(new if a is fp16 else a for a in m.artifacts)).save(out)
    again = pick(out, budget=BUDGET)
    assert not again.cached and again.key != first.key
    assert again.artifacts["tflite:fp16"] == new.sha256 != first.artifacts["tflite:fp16"]
    assert any("stale" in n for n in again.notes), again.notes
    assert pick(out, budget=BUDGET).cached  # the new decision is cached in turn


def test_failed_and_unvalidated_artifacts_are_never_timed(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    m = Manifest.load(out)
    status = {"tflite:dynamic": "failed", "tflite:fp16": "not_validated"}
    m = dataclasses.replace(m, artifacts=tuple(dataclasses.replace(a, status=status.get(a.target, a.status)) for a in m.artifacts))
    m.save(out)
    p = pick(out, budget=BUDGET)
    assert {t.target for t in p.timings} == {"tflite:fp32", "tflite:int8"}
    assert p.chosen in {"tflite:fp32", "tflite:int8"}
    assert "tflite:dynamic: validation failed" in p.skipped
    assert any(s.startswith("tflite:fp16: not validated") for s in p.skipped)


def test_only_one_candidate_needs_no_timing(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    m = Manifest.load(out)
    m = dataclasses.replace(m, artifacts=tuple(dataclasses.replace(a, status="passed" if a.target == "tflite:int8" else "failed")
                                               for a in m.artifacts))
    m.save(out)
    p = pick(out, budget=BUDGET)
    assert p.chosen == "tflite:int8" and not p.measured and p.source is None
    assert "only artifact" in p.reason and "nothing to measure" in p.explain()


def test_max_accuracy_drop_filters_on_recorded_metrics(digits_out, cache):
    out, manifest = digits_out
    bounds = {a.target: accuracy_drop_bound(a)[0] for a in manifest.artifacts}
    assert all(b is not None for b in bounds.values()), bounds
    limit = sorted(bounds.values())[1]  # keeps at least two, drops whatever is worse
    p = pick(out, budget=BUDGET, max_accuracy_drop=limit)
    kept = {t for t, b in bounds.items() if b <= limit}
    assert {t.target for t in p.timings} == kept and len(kept) >= 2
    for t in set(bounds) - kept:
        assert any(s.startswith(f"{t}: ") and "--max-accuracy-drop" in s for s in p.skipped)


def test_explicit_target_wins_over_measure(digits_out, cache):
    out, _ = digits_out
    s = rt.load(out, choose="measure", target="tflite:fp16")
    assert s.artifact.target == "tflite:fp16" and "requested 'tflite:fp16'" in s.info["chosen"]
    assert "pick" not in s.info
    assert not (cache / "pick").exists() or not list((cache / "pick").iterdir())  # nothing was measured
    rules = rt.load(out)
    assert "pick" not in rules.info and "best for this device" in rules.info["chosen"]


def test_bad_arguments_are_input_errors(digits_out, tmp_path, cache):
    out, _ = digits_out
    with pytest.raises(InputError, match="choose='fastest' is not one of rules, measure"):
        rt.load(out, choose="fastest")
    with pytest.raises(InputError, match="budget must be > 0"):
        pick(out, budget=0)
    with pytest.raises(InputError, match="batch size must be a positive integer"):
        pick(out, batch_size=0)
    with pytest.raises(InputError, match="batch size must be a positive integer, got True"):
        pick(out, batch_size=True)  # a bool is not a count
    with pytest.raises(ModelError, match="does not exist"):
        pick(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="not an edgekit output folder"):
        pick(out / "tflite-fp32.tflite")


# ------------------------------------------------------------------ edgekit pick


def test_cli_table_then_from_cache(digits_out, cache):
    out, manifest = digits_out
    res = CliRunner().invoke(_cli(), ["pick", str(out), "--budget", str(BUDGET)])
    assert res.exit_code == 0, res.output
    for target in _passed(manifest):
        assert target in res.output
    assert "p50 ms" in res.output and "vs best" in res.output and "1.00×" in res.output
    assert "chose tflite:" in res.output and "measured in" in res.output and str(cache) in res.output
    again = CliRunner().invoke(_cli(), ["pick", str(out), "--budget", str(BUDGET)])
    assert again.exit_code == 0 and "from cache: " + str(cache) in again.output
    assert again.output.split("chose ")[1].split(":")[0] == res.output.split("chose ")[1].split(":")[0]


def test_cli_json_and_write(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    res = CliRunner().invoke(_cli(), ["pick", str(out), "--budget", str(BUDGET), "--json", "--write", "--batch", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["schema"] == "edgekit.pick/1" and doc["batch_size"] == 2 and doc["cached"] is False
    assert doc["chosen"] in {t["target"] for t in doc["timings"]}
    assert json.loads((out / PICK_NAME).read_text())["picks"][0]["key"] == doc["key"]
    assert any(str(out / PICK_NAME) in n for n in doc["notes"])


@pytest.mark.parametrize("args, message", [
    (["pick", "{tmp}/missing"], "does not exist"),
    (["pick", "{out}", "--budget", "0"], "budget must be > 0"),
    (["pick", "{out}", "--budget", "-1"], "budget must be > 0"),
    (["pick", "{out}", "--batch", "0"], "batch size must be"),
    (["pick", "{out}/tflite-int8.tflite"], "not an edgekit output folder"),
    (["pick", "{failed}"], "no artifact in"),
])
def test_cli_bad_input_exits_2_with_one_line(digits_out, tmp_path, cache, args, message):
    failed = _copy(digits_out, tmp_path, "failed")
    m = Manifest.load(failed)
    dataclasses.replace(m, artifacts=tuple(dataclasses.replace(a, status="failed") for a in m.artifacts)).save(failed)
    argv = [a.format(tmp=tmp_path, out=digits_out[0], failed=failed) for a in args]
    res = CliRunner().invoke(_cli(), argv)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output and res.output.count("\n") == 1


def test_pick_runs_without_tensorflow(digits_out, tmp_path):
    script = textwrap.dedent("""
        import json, sys
        from edgekit.runtime.pick import pick
        import edgekit.cli.pick
        p = pick(sys.argv[1], budget=0.3, use_cache=False)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf_keras"})
        print("RESULT " + json.dumps({"heavy": heavy, "timed": len(p.timings)}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(digits_out[0])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert res == {"heavy": [], "timed": 4}


def test_a_broken_pick_json_is_ignored_with_a_note(digits_out, tmp_path, cache):
    out = _copy(digits_out, tmp_path)
    (out / PICK_NAME).write_text("{not json")
    p = pick(out, budget=BUDGET)
    assert p.measured and not p.cached
    assert any("ignored unreadable" in n and PICK_NAME in n for n in p.notes), p.notes
    pick(out, budget=BUDGET, write=True, force=True)  # replaces the broken file with a valid one
    assert json.loads((out / PICK_NAME).read_text())["schema"] == "edgekit.pick/1"


def test_cli_help_shows_the_real_default_budget():
    from edgekit.runtime.pick import DEFAULT_BUDGET

    res = CliRunner().invoke(_cli(), ["pick", "--help"])
    assert res.exit_code == 0 and f"[default: {DEFAULT_BUDGET}" in res.output


def test_serve_choose_measure_serves_the_cached_pick(digits_out, cache):
    # `edgekit serve --choose measure` on a device that already measured: the cached decision is
    # served (no second measurement), and /metadata says so.
    import os
    import re
    import urllib.request

    out, _ = digits_out
    chosen = pick(out, budget=BUDGET, num_threads=1).chosen  # threads are part of the key
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGEKIT_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "serve", str(out), "--port", "0", "--threads", "1",
                             "--choose", "measure"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", first)
        assert m, first + proc.stderr.read()
        meta = json.loads(urllib.request.urlopen(m.group(1) + "/metadata", timeout=30).read())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert meta["target"] == chosen
    assert meta["chosen"].startswith(f"{chosen}: measured") and "cached" in meta["chosen"]
