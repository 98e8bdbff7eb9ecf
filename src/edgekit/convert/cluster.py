"""The cluster a ``multi_worker`` fine-tune runs on, read from ``TF_CONFIG`` (imports no TensorFlow).

Every host runs the same ``edgekit convert`` command with its own ``TF_CONFIG``::

    {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}

TensorFlow's convention decides the chief: the ``chief`` task when the cluster has a ``chief`` job,
else worker 0. Only the chief writes the artifacts and the manifest; a non-chief worker trains its
shard in step with the others, then runs the rest of the pipeline in a temporary folder that it
removes (:func:`run_as_worker`), so its ``-o`` is never created, written or cleaned, even when it
is the same shared folder as the chief's.

:data:`TIMEOUT_ENV` bounds every wait for a peer (the cluster forming at start-up, each collective
while training), so a worker whose peer never comes, or dies, fails with one line instead of hanging.

Example:
    >>> c = read_cluster('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    >>> c.num_workers, c.rank, c.is_chief, c.chief
    (2, 1, False, 'a:1')
"""

from __future__ import annotations

import contextvars
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from edgekit.errors import RecipeError

TIMEOUT_ENV = "EDGEKIT_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
JOBS = ("chief", "worker")  # the jobs that train under MultiWorkerMirroredStrategy, in TF's rank order
EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'

T = TypeVar("T")
# Set while a non-chief worker's pipeline runs in its temporary folder, so a second hook on the
# way down (api and pipeline both asking) does not redirect it again.
_REDIRECTED: contextvars.ContextVar[bool] = contextvars.ContextVar("edgekit_worker_redirected", default=False)


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes:
        jobs: ``(job, addresses)`` for each training job present, ``chief`` first (TF's order).
        task_type: This task's job, ``"chief"`` or ``"worker"``.
        task_index: This task's index within its job.

    Example:
        >>> c = Cluster((("chief", ("a:1",)), ("worker", ("b:2", "c:3"))), "worker", 0)
        >>> c.num_workers, c.rank, c.is_chief, c.address, c.describe()
        (3, 1, False, 'b:2', 'worker 0 (rank 1 of 3, b:2)')
    """

    jobs: tuple[tuple[str, tuple[str, ...]], ...]
    task_type: str
    task_index: int

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every training task's address, in rank order (the chief's first)."""
        return tuple(a for _, addrs in self.jobs for a in addrs)

    @property
    def num_workers(self) -> int:
        """Training tasks in the cluster (the chief job included)."""
        return len(self.addresses)

    @property
    def rank(self) -> int:
        """This task's position in :attr:`addresses` (TF's ``id_in_cluster``; the chief is 0)."""
        before = sum(len(addrs) for job, addrs in self.jobs if JOBS.index(job) < JOBS.index(self.task_type))
        return before + self.task_index

    @property
    def is_chief(self) -> bool:
        """The task that writes the artifacts: ``chief`` 0, else worker 0 when there is no chief job."""
        return self.rank == 0

    @property
    def address(self) -> str:
        """This task's ``host:port``."""
        return self.addresses[self.rank]

    @property
    def chief(self) -> str:
        """The chief's ``host:port``."""
        return self.addresses[0]

    @property
    def peers(self) -> tuple[str, ...]:
        """The other tasks' addresses."""
        return tuple(a for i, a in enumerate(self.addresses) if i != self.rank)

    def describe(self) -> str:
        """``"worker 1 of 2 (host2:12345)"``, or with the rank when a chief job shifts the indices."""
        if self.task_type == "worker" and self.jobs[0][0] == "worker":
            return f"worker {self.task_index} of {self.num_workers} ({self.address})"
        return f"{self.task_type} {self.task_index} (rank {self.rank} of {self.num_workers}, {self.address})"


def read_cluster(raw: str | None = None) -> Cluster:
    """Parse and check ``TF_CONFIG`` (``raw``, else the environment's).

    Raises:
        RecipeError: Missing, not JSON, no ``cluster``/``task``, addresses that are not
            ``host:port``, a task type other than chief/worker, or an index out of range.

    Example:
        >>> read_cluster('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: TF_CONFIG task index 3 is out of range: the cluster has 1 'worker' task(s) (indices 0..0)
    """
    if raw is None:
        raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise RecipeError(f"strategy multi_worker needs TF_CONFIG describing the cluster and this worker, e.g. {EXAMPLE}")
    try:
        conf = json.loads(raw)
        ok = isinstance(conf, dict) and isinstance(conf.get("cluster"), dict) and isinstance(conf.get("task"), dict)
    except ValueError:
        ok = False
    if not ok:
        raise RecipeError(f"TF_CONFIG is not JSON with 'cluster' and 'task' keys (got {raw[:80]!r}), e.g. {EXAMPLE}")
    cluster, task = conf["cluster"], conf["task"]
    other = sorted(set(cluster) - set(JOBS))
    if other:
        raise RecipeError(f"TF_CONFIG cluster has job(s) {', '.join(map(repr, other))}: multi_worker trains "
                          f"'chief' and 'worker' tasks only, e.g. {EXAMPLE}")
    jobs = tuple((job, _addresses(cluster[job], job)) for job in JOBS if job in cluster)
    if not jobs:
        raise RecipeError(f"TF_CONFIG cluster lists no 'worker' tasks, e.g. {EXAMPLE}")
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise RecipeError(f"TF_CONFIG cluster 'chief' must list exactly one address, got {len(cluster['chief'])}")
    everyone = [a for _, addrs in jobs for a in addrs]
    dup = sorted({a for a in everyone if everyone.count(a) > 1})
    if dup:
        raise RecipeError(f"TF_CONFIG cluster lists {', '.join(dup)} more than once: every task needs its own host:port")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in dict(jobs):
        raise RecipeError(f"TF_CONFIG task type {kind!r} is not a job of the cluster ({', '.join(j for j, _ in jobs)})")
    if isinstance(index, bool) or not isinstance(index, int):
        raise RecipeError(f"TF_CONFIG task index must be an integer, got {index!r}")
    n = len(dict(jobs)[kind])
    if not 0 <= index < n:
        raise RecipeError(f"TF_CONFIG task index {index} is out of range: the cluster has {n} {kind!r} task(s) "
                          f"(indices 0..{n - 1})")
    return Cluster(jobs, kind, index)


def _addresses(value: Any, job: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise RecipeError(f"TF_CONFIG cluster {job!r} must be a non-empty list of 'host:port', got {value!r}")
    for a in value:
        host, colon, port = str(a).rpartition(":")
        if not isinstance(a, str) or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RecipeError(f"TF_CONFIG cluster {job!r} address {a!r} is not 'host:port' with a port 1..65535")
    return tuple(value)


def cluster_timeout(environ: Mapping[str, str] | None = None) -> int:
    """Seconds to wait for a peer (:data:`TIMEOUT_ENV`, default :data:`DEFAULT_TIMEOUT_S`).

    Raises:
        RecipeError: The variable is not a whole number of seconds >= 1.

    Example:
        >>> cluster_timeout({"EDGEKIT_CLUSTER_TIMEOUT": "30"}), cluster_timeout({})
        (30, 600)
    """
    raw = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    if not raw.strip().isdigit() or int(raw) < 1:
        raise RecipeError(f"{TIMEOUT_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


def non_chief(strategies: Iterable[str]) -> Cluster | None:
    """This process's cluster when a stage trains ``multi_worker`` and this task is not the chief.

    ``None`` for the chief, for other strategies, and inside :func:`run_as_worker` (already redirected).

    Raises:
        RecipeError: ``multi_worker`` with a bad ``TF_CONFIG`` (see :func:`read_cluster`).

    Example:
        >>> non_chief(["default", "mirrored"]) is None
        True
    """
    if "multi_worker" not in set(strategies) or _REDIRECTED.get():
        return None
    cluster = read_cluster()
    return None if cluster.is_chief else cluster


def run_as_worker(cluster: Cluster, out_dir: str | os.PathLike[str], run: Callable[[Path], T],
                  say: Callable[[str], None]) -> T:
    """Run ``run(folder)`` for a non-chief worker: in a temporary folder it removes, never in ``out_dir``.

    The worker still runs every step (the training steps must run in lockstep with the chief's);
    only where the files go differs. ``out_dir`` is not created, read or cleaned: on a shared
    filesystem it may be the chief's folder, being written at that moment.

    Example:
        >>> c = read_cluster('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
        >>> run_as_worker(c, "out/", lambda folder: folder.parent.is_dir(), print)
        worker 1 of 2 (b:2) is not the chief: the chief (worker 0 at a:1) writes the artifacts and manifest to its -o; nothing is written to out/ here
        True
    """
    say(f"{cluster.describe()} is not the chief: the chief ({_chief_name(cluster)} at {cluster.chief}) writes the "
        f"artifacts and manifest to its -o; nothing is written to {os.fspath(out_dir)} here")
    token = _REDIRECTED.set(True)
    try:
        with tempfile.TemporaryDirectory(prefix="edgekit-worker-") as tmp:
            return run(Path(tmp) / "out")
    finally:
        _REDIRECTED.reset(token)


def _chief_name(cluster: Cluster) -> str:
    return "chief 0" if cluster.jobs[0][0] == "chief" else "worker 0"


__all__ = ["Cluster", "DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "cluster_timeout", "non_chief", "read_cluster",
           "run_as_worker"]
