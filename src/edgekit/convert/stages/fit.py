"""Fine-tuning for the stages: strategy, loss, optimiser and a seeded ``fit`` on a :class:`Dataset`.

Distribution follows ``FitConfig.strategy``:

* ``default``: ``tf.distribute.get_strategy()``, one device.
* ``mirrored``: ``MirroredStrategy()``, every local GPU (the CPU when there is none).
* ``multi_worker``: ``MultiWorkerMirroredStrategy()`` over the hosts in ``TF_CONFIG``
  (:mod:`edgekit.convert.cluster`). TensorFlow insists it is created before anything else runs
  ("Collective ops must be configured at program startup"), so :func:`early_strategies` makes it
  first thing in ``convert``. Every worker runs the same ``edgekit convert`` command and trains its
  own shard of the rows (:class:`Shard`; the global batch is split over the replicas, so an epoch
  has as many steps as on one machine); only the chief writes the output folder. Every wait for a
  peer (the cluster forming, each collective) gives up after ``EDGEKIT_CLUSTER_TIMEOUT`` seconds.

The model must be built *inside* ``strategy.scope()`` (its variables are created there), so
:func:`apply_stages` clones and wraps under :func:`strategy_for`'s scope, then calls :func:`fit`.

Loss: the recipe's, else the source model's compile state, else guessed from the labels and the
model's outputs (integer labels + several outputs -> sparse categorical cross-entropy; rows that are
probabilities -> ``from_logits=False``, anything else -> logits).

Example:
    >>> strategy = strategy_for(FitConfig())  # doctest: +SKIP
    >>> history = fit(model, train, FitConfig(epochs=1), loss_spec, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgekit.calibration import Dataset
from edgekit.convert.cluster import Cluster, cluster_timeout, read_cluster
from edgekit.convert.tf_env import tf, tf_keras
from edgekit.convert.stages.base import StageContext
from edgekit.convert.stages.config import FitConfig
from edgekit.errors import DataError, RecipeError, UnsupportedError

Progress = Callable[[str], None]
_STRATEGIES: dict[str, Any] = {}
_CROSS_ENTROPY = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")


def early_strategies(configs: Sequence[FitConfig]) -> None:
    """Create a multi-worker strategy now if any stage needs one (before TensorFlow runs anything).

    Example:
        >>> early_strategies([FitConfig()])  # nothing to do for the default strategy
    """
    if any(c.strategy == "multi_worker" for c in configs):
        strategy_for(FitConfig(strategy="multi_worker"))


def strategy_for(cfg: FitConfig) -> Any:
    """The ``tf.distribute`` strategy for ``cfg.strategy`` (created once per process).

    Raises:
        RecipeError: ``multi_worker`` without a usable ``TF_CONFIG``, created too late, or a
            cluster that did not form within ``EDGEKIT_CLUSTER_TIMEOUT`` seconds.

    Example:
        >>> strategy_for(FitConfig(strategy="mirrored")).num_replicas_in_sync >= 1  # doctest: +SKIP
        True
    """
    t = tf()
    if cfg.strategy == "default":
        return t.distribute.get_strategy()
    if cfg.strategy not in _STRATEGIES:
        if cfg.strategy == "mirrored":
            _STRATEGIES["mirrored"] = t.distribute.MirroredStrategy()
        else:
            _STRATEGIES["multi_worker"] = _multi_worker(read_cluster(), cluster_timeout())
    return _STRATEGIES[cfg.strategy]


def _multi_worker(cluster: Cluster, timeout: int) -> Any:
    t = tf()
    _bound_cluster_forming(cluster, timeout)
    # Without a timeout a collective waits forever for a peer that died or never trains.
    options = t.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    try:
        return t.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as exc:
        raise RecipeError(
            f"strategy multi_worker must be created before TensorFlow runs anything ({exc}): run "
            "'edgekit convert' (or convert()) in a fresh process on every worker"
        ) from None
    except (t.errors.DeadlineExceededError, t.errors.UnavailableError) as exc:
        missing = _peers_named(cluster, str(exc)) or cluster.peers
        waited = (f"worker(s) {', '.join(missing)} did not join" if cluster.is_chief
                  else f"could not reach the chief at {cluster.chief}")
        raise RecipeError(
            f"multi_worker: {cluster.describe()} gave up on the cluster after {timeout} s: {waited} "
            f"({type(exc).__name__}); start the same command on every host within EDGEKIT_CLUSTER_TIMEOUT "
            "seconds of each other, with the same TF_CONFIG cluster and its ports open"
        ) from None


def _bound_cluster_forming(cluster: Cluster, timeout: int) -> None:
    """Make every task give up on a peer that never starts after ``timeout`` s.

    Without this a worker whose peer never came waited until killed (over 10 minutes, on TF 2.21).

    The strategy configures TensorFlow's coordination service itself unless one is configured
    already; this is its configuration plus a registration deadline that every task, the leader
    too, honours (``cluster_register_with_barrier``). TF 2.21 has no public API for these settings,
    so a TensorFlow without them keeps its own default rather than failing.
    """
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context
    except ImportError:
        return
    ctx = context.context()
    if ctx.coordination_service is not None:
        return
    try:
        ctx.configure_coordination_service(
            service_type="standalone",
            service_leader=f"/job:{cluster.jobs[0][0]}/replica:0/task:0",  # the chief, as TF picks it
            cluster_register_timeout_in_ms=timeout * 1000,
            coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(addrs))
                              for job, addrs in cluster.jobs],
        )
        ctx.coordination_service.cluster_register_with_barrier = True
    except (AttributeError, TypeError, ValueError):
        return


def _peers_named(cluster: Cluster, message: str) -> tuple[str, ...]:
    """The other tasks a TensorFlow error names (``/job:worker/replica:0/task:1``), as addresses."""
    shift = {"chief": 0, "worker": 1 if cluster.jobs[0][0] == "chief" else 0}
    ranks = {int(i) + shift[job] for job, i in re.findall(r"/job:(chief|worker)/replica:0/task:(\d+)", message)}
    return tuple(cluster.addresses[r] for r in sorted(ranks) if r != cluster.rank and r < cluster.num_workers)


@dataclass(frozen=True)
class Shard:
    """Which training rows this worker fits on, and in what batches.

    Attributes:
        worker: This worker's rank (the chief is 0).
        workers: Workers in the cluster (1 off ``multi_worker``).
        rows: How many training rows this worker fits on: every ``workers``-th from ``worker``.
            Every worker gets as many (the last ``n % workers`` rows are left out), so every
            replica has a batch at every step and the epochs end together.
        batch_per_replica: Rows one replica takes per step.
        global_batch: Rows per step over the whole cluster (``FitConfig.batch_size``).
        local_replicas: Replicas on this worker (its GPUs, or 1 for the CPU); each takes a batch per step.

    Example:
        >>> s = Shard(1, 2, 64, 16, 32)
        >>> s.steps, s.to_dict()["rows"]
        (4, '1::2')
    """

    worker: int
    workers: int
    rows: int
    batch_per_replica: int
    global_batch: int
    local_replicas: int = 1

    @property
    def steps(self) -> int:
        """Optimizer steps in one epoch of this shard (the last batch may be short)."""
        return max(1, math.ceil(math.ceil(self.rows / self.batch_per_replica) / self.local_replicas))

    def to_dict(self) -> dict[str, Any]:
        return {"worker": self.worker, "workers": self.workers, "rows": f"{self.worker}::{self.workers}",
                "samples": self.rows, "batch_per_replica": self.batch_per_replica,
                "global_batch": self.global_batch, "steps_per_epoch": self.steps}


def shard_for(strategy: Any, n: int, cfg: FitConfig) -> Shard:
    """This worker's :class:`Shard` of ``n`` training rows under ``strategy``.

    Raises:
        RecipeError: ``batch_size`` does not split evenly over a multi-worker cluster's replicas.
        DataError: Fewer training rows than workers.

    Example:
        >>> shard_for(tf().distribute.get_strategy(), 128, FitConfig(batch_size=32))  # doctest: +SKIP
        Shard(worker=0, workers=1, rows=128, batch_per_replica=32, global_batch=32, local_replicas=1)
    """
    replicas = int(strategy.num_replicas_in_sync)
    cluster = read_cluster() if cfg.strategy == "multi_worker" else None  # what the strategy was made from
    if cluster is None or cluster.num_workers == 1:
        # One machine: TF splits each batch over the local replicas itself (unevenly if need be).
        return Shard(0, 1, n, max(1, cfg.batch_size // replicas), cfg.batch_size)
    if cfg.batch_size % replicas:  # each worker batches its own rows: the split must be exact
        raise RecipeError(f"fit batch_size {cfg.batch_size} does not split over the {replicas} replicas of the "
                          f"multi_worker cluster: use a multiple of {replicas}, e.g. "
                          f"{replicas * max(1, round(cfg.batch_size / replicas))}")
    if n < cluster.num_workers:
        raise DataError(f"{n} training sample(s) cannot be shared by {cluster.num_workers} workers: "
                        "give at least one per worker (--train-limit)")
    return Shard(cluster.rank, cluster.num_workers, n // cluster.num_workers, cfg.batch_size // replicas,
                 cfg.batch_size, max(1, replicas // cluster.num_workers))


def weights_sha256(model: Any) -> str:
    """SHA-256 of a model's weights (dtypes, shapes and bytes, in order): equal on every worker.

    Example:
        >>> weights_sha256(model) == weights_sha256(model)  # doctest: +SKIP
        True
    """
    h = hashlib.sha256()
    for w in model.get_weights():
        a = np.ascontiguousarray(w)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class LossSpec:
    """Which loss to fine-tune with, and where that choice came from (for the report)."""

    name: str
    from_logits: bool | None
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.name, "from_logits": self.from_logits, "from": self.origin}


def compiled_loss(model: Any) -> tuple[str, bool | None] | None:
    """``(loss name, from_logits)`` from a Keras 3 or tf_keras model's compile state, if known.

    Example:
        >>> compiled_loss(zoo_model)  # doctest: +SKIP
        ('sparse_categorical_crossentropy', True)
    """
    loss = getattr(model, "loss", None)
    if loss is None or isinstance(loss, (list, tuple, dict)):
        return None
    if isinstance(loss, str):
        name = loss
        from_logits = None
    else:
        cls = type(loss).__name__
        if cls in ("LossFunctionWrapper", "function"):
            fn = getattr(loss, "fn", loss)
            name = getattr(fn, "__name__", "")
        else:
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
        cfg = loss.get_config() if hasattr(loss, "get_config") else {}
        from_logits = cfg.get("from_logits") if isinstance(cfg, dict) else None
    name = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}.get(name, name)
    return (name, from_logits) if name in _CROSS_ENTROPY + ("mean_squared_error", "mean_absolute_error", "huber") else None


def resolve_loss(cfg: FitConfig, source_model: Any, model: Any, train: Dataset) -> LossSpec:
    """Decide the loss: the recipe's, the source's compile state, or a guess from labels and outputs.

    Raises:
        DataError: No labels, or labels that fit no loss for this output.
        UnsupportedError: A model with several outputs (one label array cannot train them).

    Example:
        >>> resolve_loss(FitConfig(), zoo_model, k2_model, digits("train"))  # doctest: +SKIP
        LossSpec(name='sparse_categorical_crossentropy', from_logits=True, origin='model compile state')
    """
    if train.labels is None:
        raise DataError(f"training data {train.name} has no labels: stages fine-tune on labelled data "
                        "(npz with x and y, image folders with class sub-folders, or 'digits:train')")
    if len(model.outputs) != 1:
        raise UnsupportedError(f"fine-tuning supports single-output models; {model.name!r} has {len(model.outputs)} outputs")
    if cfg.loss != "auto":
        name, origin, from_logits = cfg.loss, "recipe", cfg.from_logits
    else:
        known = compiled_loss(source_model)
        if known:
            (name, from_logits), origin = known, "model compile state"
        else:
            name, origin, from_logits = _guess_loss(model, train), "labels and model output", None
        if cfg.from_logits is not None:
            from_logits = cfg.from_logits
    if name in _CROSS_ENTROPY and from_logits is None:
        from_logits = not _looks_like_probabilities(model, train, name)
    if name not in _CROSS_ENTROPY:
        from_logits = None
    return LossSpec(name, from_logits, origin)


def _guess_loss(model: Any, train: Dataset) -> str:
    out_dim = model.outputs[0].shape[-1]
    y = train.labels
    if y.ndim == 1 and y.dtype.kind in "iu":
        if out_dim and out_dim > 1:
            return "sparse_categorical_crossentropy"
        if out_dim == 1 and set(np.unique(y)) <= {0, 1}:
            return "binary_crossentropy"
    if y.ndim == 2 and y.shape[1] == out_dim and out_dim > 1 and np.allclose(y.sum(axis=1), 1.0):
        return "categorical_crossentropy"
    if y.dtype.kind == "f":
        return "mean_squared_error"
    raise DataError(
        f"cannot infer a loss for labels {y.shape} {y.dtype} and output width {out_dim}: set it in the recipe, "
        "e.g. fit: {loss: sparse_categorical_crossentropy}"
    )


def _looks_like_probabilities(model: Any, train: Dataset, name: str) -> bool:
    xs = [x[:64] for x in train.inputs]
    out = np.asarray(model(xs if len(xs) > 1 else xs[0], training=False), np.float64)
    if out.min() < 0.0 or out.max() > 1.0:
        return False
    if name == "binary_crossentropy":
        return True
    return bool(np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))


def compile_model(model: Any, cfg: FitConfig, loss: LossSpec) -> None:
    """Compile ``model`` for fine-tuning (call inside the strategy's scope).

    Example:
        >>> with strategy_for(cfg).scope():  # doctest: +SKIP
        ...     compile_model(model, cfg, LossSpec("sparse_categorical_crossentropy", True, "recipe"))
    """
    k2 = tf_keras()
    opt = {"adam": k2.optimizers.Adam, "sgd": k2.optimizers.SGD, "rmsprop": k2.optimizers.RMSprop}[cfg.optimizer]
    classes = {
        "sparse_categorical_crossentropy": k2.losses.SparseCategoricalCrossentropy,
        "categorical_crossentropy": k2.losses.CategoricalCrossentropy,
        "binary_crossentropy": k2.losses.BinaryCrossentropy,
        "mean_squared_error": k2.losses.MeanSquaredError,
        "mean_absolute_error": k2.losses.MeanAbsoluteError,
        "huber": k2.losses.Huber,
    }
    kw = {"from_logits": loss.from_logits} if loss.name in _CROSS_ENTROPY else {}
    metrics = ["accuracy"] if loss.name in _CROSS_ENTROPY else []
    model.compile(optimizer=opt(learning_rate=cfg.learning_rate), loss=classes[loss.name](**kw), metrics=metrics)


def steps_per_epoch(n: int, cfg: FitConfig) -> int:
    """Optimizer steps in one epoch of ``n`` samples (the last batch may be short).

    Under ``multi_worker``, the steps of this worker's :class:`Shard` (the same on every worker).

    Example:
        >>> steps_per_epoch(1258, FitConfig(batch_size=32))
        40
    """
    if cfg.strategy == "multi_worker":
        return shard_for(strategy_for(cfg), n, cfg).steps
    return max(1, math.ceil(n / cfg.batch_size))


def fit(model: Any, train: Dataset, cfg: FitConfig, *, seed: int, callbacks: Sequence[Any] = (),
        progress: Progress | None = None, label: str = "fit") -> dict[str, Any]:
    """Fine-tune a compiled model on ``train`` for ``cfg.epochs``; returns per-epoch loss/accuracy/steps.

    Shuffling is seeded (``seed``), and the global seed is set before the first step, so the same
    recipe on the same data gives the same weights. Under ``multi_worker`` each worker reads only
    its :class:`Shard` of the rows, ``batch_size / replicas`` per replica and step; ``steps`` counts
    the steps this worker actually ran.

    Example:
        >>> fit(model, digits("train"), FitConfig(epochs=1), seed=0)  # doctest: +SKIP
        {'loss': [0.0612], 'accuracy': [0.9889], 'steps': [40]}
    """
    strategy = strategy_for(cfg)
    shard = shard_for(strategy, len(train), cfg)
    if shard.workers > 1:
        # Explicit: each worker builds its own pipeline from its input context, so which rows it
        # trains on is ours to say (and to report), not a graph rewrite's.
        data = strategy.distribute_datasets_from_function(
            lambda ictx: train_dataset(train, batch=ictx.get_per_replica_batch_size(cfg.batch_size), seed=seed,
                                       workers=ictx.num_input_pipelines, worker=ictx.input_pipeline_id))
    else:
        data = train_dataset(train, batch=cfg.batch_size, seed=seed)
    steps = _StepCounter()
    cbs = [*callbacks, steps]
    if progress is not None:
        cbs.append(_EpochProgress(progress, label, cfg.epochs))
    per_epoch = {"steps_per_epoch": shard.steps} if shard.workers > 1 else {}
    history = model.fit(data, epochs=cfg.epochs, verbose=0, callbacks=cbs, **per_epoch)
    out = {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}
    out["steps"] = list(steps.per_epoch)
    return out


def train_dataset(train: Dataset, *, batch: int, seed: int, workers: int = 1, worker: int = 0) -> Any:
    """The seeded, shuffled, batched ``tf.data`` pipeline that one worker fits on.

    With ``workers > 1``: only rows ``worker, worker + workers, ...`` of the first
    ``len(train) // workers * workers`` (every worker gets as many, see :class:`Shard`), repeated,
    since a distributed dataset runs a fixed number of steps per epoch (one pass each).

    Example:
        >>> ds = train_dataset(digits("train").take(8), batch=2, seed=0, workers=2, worker=1)  # doctest: +SKIP
        >>> [len(y) for _, y in ds.take(2)]  # doctest: +SKIP
        [2, 2]
    """
    t = tf()
    x = tuple(train.inputs) if train.num_inputs > 1 else train.inputs[0]
    ds = t.data.Dataset.from_tensor_slices((x, train.labels))
    if workers > 1:
        ds = ds.take(len(train) // workers * workers).shard(workers, worker)
    ds = ds.shuffle(len(train), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if workers > 1:
        ds = ds.repeat()
    options = t.data.Options()
    # Sharded here (or one worker): TF must not shard again, nor read files per worker.
    options.experimental_distribute.auto_shard_policy = t.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options)


def _StepCounter() -> Any:
    k2 = tf_keras()

    class StepCounter(k2.callbacks.Callback):
        """Steps this worker ran in each epoch (the proof of its shard, in the stages report)."""

        def __init__(self):
            super().__init__()
            self.per_epoch: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.per_epoch.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.per_epoch[-1] += 1

    return StepCounter()


def _EpochProgress(progress: Progress, label: str, epochs: int) -> Any:
    k2 = tf_keras()

    class EpochProgress(k2.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            extra = f" acc={logs['accuracy']:.4f}" if "accuracy" in logs else ""
            progress(f"{label}: epoch {epoch + 1}/{epochs} loss={logs.get('loss', float('nan')):.4f}{extra}")

    return EpochProgress()


def fine_tune(prepare: Callable[[Any], Any], model: Any, cfg: Any, ctx: StageContext, callbacks: list[Any],
              cfg_for_report: Any, before_fit: Callable[[Any], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Clone, prepare and compile under the fit strategy, then fine-tune: what every stage shares.

    Args:
        prepare: Wraps a clone of ``model`` (tfmot's prune/quantize wrappers).
        model: The model so far (not modified).
        cfg: The stage config (its ``fit`` and ``kind``).
        ctx: The stage context.
        callbacks: Keras callbacks for ``fit``.
        cfg_for_report: The config as recorded (e.g. with resolved pruning steps).
        before_fit: Runs on the prepared model before fitting; its dict joins the report.

    Returns:
        The fine-tuned, still wrapped model and the stage's report.
    """
    from edgekit.convert.stages.keras2 import clone

    k2 = tf_keras()
    strategy = strategy_for(cfg.fit)
    loss = resolve_loss(cfg.fit, ctx.source_model, model, ctx.train)
    k2.utils.set_random_seed(ctx.seed)  # same recipe, same data -> same weights
    shard = shard_for(strategy, len(ctx.train), cfg.fit)
    with _cluster_errors(cfg.fit):
        with strategy.scope():  # variables must be created under the strategy that trains them
            prepared = prepare(clone(model))
            compile_model(prepared, cfg.fit, loss)
        extra = before_fit(prepared) if before_fit is not None else {}
        history = _fine_tune_fit(prepared, cfg, ctx, callbacks, loss, strategy, shard)
    digest = weights_sha256(prepared)
    if shard.workers > 1:  # every worker prints it: equal digests are the proof they trained in step
        ctx.say(f"{cfg.kind}: fine-tuned weights sha256 {digest[:16]} on worker {shard.worker} of {shard.workers}")
    rep = {
        "config": cfg_for_report.to_value()[cfg.kind],
        "loss": loss.to_dict(),
        "strategy": {"name": cfg.fit.strategy, "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync), "shard": shard.to_dict()},
        "history": history,
        "weights_sha256": digest,
        **extra,
    }
    return prepared, rep


def _fine_tune_fit(prepared: Any, cfg: Any, ctx: StageContext, callbacks: list[Any], loss: LossSpec, strategy: Any,
                   shard: Shard) -> dict[str, Any]:
    on = (f"{shard.rows} of {len(ctx.train)} samples (worker {shard.worker} of {shard.workers}: rows "
          f"{shard.worker}::{shard.workers}, {shard.batch_per_replica} per replica, {shard.steps} steps per epoch)"
          if shard.workers > 1 else f"{len(ctx.train)} samples")
    ctx.say(f"{cfg.kind}: fine-tuning {cfg.fit.epochs} epoch(s) on {on} "
            f"({loss.name}{', logits' if loss.from_logits else ''}; {cfg.fit.strategy} strategy, "
            f"{strategy.num_replicas_in_sync} replica(s))")
    return fit(prepared, ctx.train, cfg.fit, seed=ctx.seed, callbacks=callbacks, progress=ctx.say, label=cfg.kind)


@contextlib.contextmanager
def _cluster_errors(cfg: FitConfig) -> Iterator[None]:
    """A multi-worker collective that failed (a peer died, timed out) as one line, not a traceback."""
    if cfg.strategy != "multi_worker":
        yield
        return
    t = tf()
    try:
        yield
    except (t.errors.UnavailableError, t.errors.DeadlineExceededError, t.errors.AbortedError,
            t.errors.CancelledError) as exc:
        cluster = read_cluster()
        msg = " ".join(str(exc).split())
        lost = _peers_named(cluster, msg)
        why = (f"{', '.join(lost)} stopped answering" if lost and "unhealthy" in msg
               else f"a collective failed ({type(exc).__name__}: {msg[:160]})")
        raise RecipeError(
            f"multi_worker: {cluster.describe()} lost the cluster while fine-tuning: {why}; the cluster cannot "
            f"recover: restart the same command on every host (collectives give up after {cluster_timeout()} s, "
            "EDGEKIT_CLUSTER_TIMEOUT)"
        ) from None


def detached(model: Any, cfg: Any) -> Any:
    """``model`` with plain variables again when a distribution strategy trained it."""
    if cfg.fit.strategy == "default":
        return model
    from edgekit.convert.stages.keras2 import clone

    return clone(model)
