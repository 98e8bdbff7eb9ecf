"""``multi_worker`` fine-tuning on a real two-worker cluster on loopback (TF_CONFIG), and its set-up errors.

The cluster tests start real ``edgekit convert`` processes, one per worker, with a hard timeout
(SIGKILL: a TensorFlow process blocked in a collective ignores SIGTERM), so a hang fails the test
instead of blocking the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from stage_helpers import tiny_trained  # noqa: F401

from edgekit.convert.cluster import cluster_timeout, non_chief, read_cluster, run_as_worker
from edgekit.errors import RecipeError

TRAIN = 128  # 2 workers x 64 rows: 4 steps of 16 per replica = the 4 steps of 32 on one machine
EDGEKIT = [sys.executable, "-c", "from edgekit.cli import main; main()"]  # the console script, this venv
HARD_TIMEOUT_S = 300


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:  # all bound at once: n distinct ports
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _convert(model: Path, out: Path, tf_config: str, tmp: Path, *extra: str, timeout: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, TF_CONFIG=tf_config, TMPDIR=str(tmp))
    if timeout is not None:
        env["EDGEKIT_CLUSTER_TIMEOUT"] = str(timeout)
    cmd = [*EDGEKIT, "convert", str(model), "--train", "digits:train", "--train-limit", str(TRAIN),
           "--eval", "digits:eval", "--eval-limit", "64", "--prune", "0.5", "--prune-epochs", "1",
           "--strategy", "multi_worker", "-t", "tflite:fp32", "--tol", "*.max_accuracy_drop=10", "-o", str(out),
           *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + HARD_TIMEOUT_S
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a worker did not finish within {HARD_TIMEOUT_S} s (hung cluster)")
        results.append((p.returncode, out, err))
    return results


def _edgekit_lines(stderr: str) -> list[str]:
    """Our lines on stderr (progress and errors), without TensorFlow's C++ log noise."""
    return [ln for ln in stderr.splitlines() if ln.startswith(("[", "error:"))]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_trained):  # noqa: F811
    path = tmp_path_factory.mktemp("mw") / "m.keras"
    tiny_trained.save(path)
    return path


# --- TF_CONFIG: read and checked without TensorFlow ------------------------------------------------

def test_tf_config_roles_follow_tensorflow():
    two = read_cluster(_tf_config([1111, 2222], 1))
    assert (two.num_workers, two.rank, two.is_chief, two.chief, two.peers) == (2, 1, False, "localhost:1111",
                                                                              ("localhost:1111",))
    assert read_cluster(_tf_config([1111, 2222], 0)).is_chief  # no chief job: worker 0 is the chief
    with_chief = json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:2", "w:3"]}, "task": {"type": "worker", "index": 0}})
    c = read_cluster(with_chief)
    assert (c.num_workers, c.rank, c.is_chief, c.chief) == (3, 1, False, "c:1")
    assert c.describe() == "worker 0 (rank 1 of 3, w:2)"


@pytest.mark.parametrize("raw, message", [
    ("{not json", "TF_CONFIG is not JSON with 'cluster' and 'task' keys"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not JSON with 'cluster' and 'task' keys"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     r"TF_CONFIG task index 2 is out of range: the cluster has 2 'worker' task\(s\) \(indices 0..1\)"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "task index must be an integer"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'a' is not 'host:port'"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "a:1 more than once"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}', "job\\(s\\) 'ps'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task type 'chief' is not a job"),
])
def test_bad_tf_config_is_one_line(raw, message):
    with pytest.raises(RecipeError, match=message) as e:
        read_cluster(raw)
    assert "\n" not in str(e.value)


def test_cluster_timeout_from_the_environment():
    assert cluster_timeout({}) == 600 and cluster_timeout({"EDGEKIT_CLUSTER_TIMEOUT": "15"}) == 15
    with pytest.raises(RecipeError, match="EDGEKIT_CLUSTER_TIMEOUT must be a whole number of seconds"):
        cluster_timeout({"EDGEKIT_CLUSTER_TIMEOUT": "soon"})


def test_only_a_multi_worker_non_chief_is_redirected(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", _tf_config([1111, 2222], 1))
    assert non_chief(["default"]) is None
    worker = non_chief(["multi_worker"])
    assert worker is not None and worker.rank == 1
    monkeypatch.setenv("TF_CONFIG", _tf_config([1111, 2222], 0))
    assert non_chief(["multi_worker"]) is None  # the chief writes -o itself
    # A non-chief's folder is a temporary one, removed afterwards; -o (here a shared, non-empty folder
    # being written by the chief) is neither read, written nor cleaned; no second redirect inside.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "manifest.json").write_text("{}")
    monkeypatch.setenv("TF_CONFIG", _tf_config([1111, 2222], 1))
    lines: list[str] = []

    def pipeline(folder: Path) -> Path:
        assert non_chief(["multi_worker"]) is None
        folder.mkdir()
        (folder / "a.tflite").write_bytes(b"x")
        return folder

    used = run_as_worker(worker, shared, pipeline, lines.append)
    assert not used.exists() and not used.parent.exists()
    assert _snapshot(shared) == {"manifest.json": hashlib.sha256(b"{}").hexdigest()}
    assert lines == [f"worker 1 of 2 (localhost:2222) is not the chief: the chief (worker 0 at localhost:1111) writes "
                     f"the artifacts and manifest to its -o; nothing is written to {shared} here"]


def test_bad_tf_config_stops_the_cli_in_one_line(tmp_path, model_file):
    bad = '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 5}}'
    (rc, out, err), = _finish([_convert(model_file, tmp_path / "out", bad, tmp_path)])
    assert rc == 2, err[-2000:]
    assert _edgekit_lines(err) == ["error: TF_CONFIG task index 5 is out of range: the cluster has 2 'worker' task(s) "
                                   "(indices 0..1)"]
    assert "Traceback" not in err and not (tmp_path / "out").exists()


# --- The shards, without a cluster -----------------------------------------------------------------

def test_worker_shards_partition_the_training_rows():
    """The pipelines two workers fit on hold disjoint halves of the data, together every row once."""
    from edgekit.calibration import digits
    from edgekit.convert.stages.fit import train_dataset

    train = digits("train").take(TRAIN + 1, seed=0)  # odd: the last row is left out, shards stay equal
    seen = []
    for worker in (0, 1):
        ds = train_dataset(train, batch=16, seed=0, workers=2, worker=worker)
        rows = [np.concatenate([x.numpy().reshape(len(y), -1), y.numpy()[:, None]], axis=1) for x, y in ds.take(4)]
        seen.append(np.concatenate(rows))
    assert [len(s) for s in seen] == [TRAIN // 2, TRAIN // 2]
    every = np.concatenate([train.inputs[0][:TRAIN].reshape(TRAIN, -1), train.labels[:TRAIN, None]], axis=1)
    key = lambda a: sorted(map(bytes, a.astype(np.float64)))  # noqa: E731 - rows as sortable bytes
    assert key(np.concatenate(seen)) == key(every)
    assert key(seen[0]) == key(every[0::2]) and key(seen[1]) == key(every[1::2])


# --- A real two-worker cluster on loopback ---------------------------------------------------------

@pytest.mark.slow
def test_two_workers_train_their_shards_in_step_and_only_the_chief_writes(tmp_path, model_file):
    ports = _free_ports(2)
    out0, out1, tmp = tmp_path / "chief-out", tmp_path / "worker-out", tmp_path / "tmp"
    tmp.mkdir()
    # The worker's -o stands for a shared folder that already holds a previous run (and no --force):
    # a worker that looked at it, wrote or cleaned it would fail or change it.
    out1.mkdir()
    (out1 / "manifest.json").write_text('{"previous": "run"}')
    (out1 / "tflite-fp32.tflite").write_bytes(b"previous artifact")
    before = _snapshot(out1)
    t0 = time.perf_counter()
    (rc0, js0, err0), (rc1, js1, err1) = _finish(
        [_convert(model_file, out, _tf_config(ports, i), tmp, "--json") for i, out in ((0, out0), (1, out1))])
    wall = time.perf_counter() - t0
    print(f"two-worker convert: {wall:.1f} s wall")
    assert rc0 == 0, err0[-3000:]
    assert rc1 == 0, err1[-3000:]
    m0, m1 = json.loads(js0), json.loads(js1)

    # Only the chief writes: its folder has the artifact and manifest, the worker's is untouched and
    # its temporary folder is gone.
    assert sorted(p.name for p in out0.iterdir()) == ["eval.npz", "manifest.json", "tflite-fp32.tflite"]
    assert json.loads((out0 / "manifest.json").read_text())["stages"] == m0["stages"]
    assert _snapshot(out1) == before
    assert list(tmp.glob("edgekit-worker-*")) == []
    said = [ln for ln in _edgekit_lines(err1) if "is not the chief" in ln]
    assert len(said) == 1 and f"worker 1 of 2 (localhost:{ports[1]}) is not the chief" in said[0]
    assert f"nothing is written to {out1} here" in said[0]
    assert not any("is not the chief" in ln for ln in _edgekit_lines(err0))

    # Each worker trained its own half: rows i::2, 64 of 128, 16 per replica, 4 steps counted (the
    # 4 steps of 32 one machine runs on 128 rows; 8 if a worker had read every row at 16).
    p0, p1 = m0["stages"]["prune"], m1["stages"]["prune"]
    for i, p in enumerate((p0, p1)):
        assert p["strategy"]["name"] == "multi_worker" and p["strategy"]["replicas"] == 2
        assert p["strategy"]["shard"] == {"worker": i, "workers": 2, "rows": f"{i}::2", "samples": TRAIN // 2,
                                          "batch_per_replica": 16, "global_batch": 32, "steps_per_epoch": 4}
        assert p["history"]["steps"] == [4]
        assert p["config"]["end_step"] == 3  # the pruning schedule counts the same steps
    # ... in step: the same weights on both, hence the same artifact bytes.
    assert p0["weights_sha256"] == p1["weights_sha256"]
    assert p0["history"]["loss"] == p1["history"]["loss"]
    assert m0["artifacts"][0]["sha256"] == m1["artifacts"][0]["sha256"]
    assert m0["artifacts"][0]["status"] == m1["artifacts"][0]["status"] == "passed"
    digest = p0["weights_sha256"][:16]
    for i, err in enumerate((err0, err1)):
        assert any(f"fine-tuned weights sha256 {digest} on worker {i} of 2" in ln for ln in _edgekit_lines(err))


@pytest.mark.slow
def test_a_worker_whose_peer_never_comes_gives_up_in_one_line(tmp_path, model_file):
    """The chief without its worker, and a worker without its chief: each stops after the timeout."""
    lone = [(_free_ports(2), 0), (_free_ports(2), 1)]  # two separate clusters, one task started in each
    t0 = time.perf_counter()
    results = _finish([_convert(model_file, tmp_path / f"out{i}", _tf_config(ports, i), tmp_path, timeout=4)
                       for ports, i in lone])
    wall = time.perf_counter() - t0
    assert wall < 150, f"took {wall:.0f} s"
    (ports0, _), (ports1, _) = lone
    expect = [f"error: multi_worker: worker 0 of 2 (localhost:{ports0[0]}) gave up on the cluster after 4 s: "
              f"worker(s) localhost:{ports0[1]} did not join",
              f"error: multi_worker: worker 1 of 2 (localhost:{ports1[1]}) gave up on the cluster after 4 s: "
              f"could not reach the chief at localhost:{ports1[0]}"]
    for (rc, _out, err), start in zip(results, expect):
        assert rc == 2, err[-2000:]
        errors = [ln for ln in _edgekit_lines(err) if ln.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(start), err[-2000:]
        assert "Traceback" not in err
    assert not (tmp_path / "out1").exists()  # the worker never touched its -o
