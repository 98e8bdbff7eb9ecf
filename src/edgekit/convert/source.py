"""Load the model to convert: Keras 3 / tf_keras ``.keras`` files, ``.h5``, SavedModel folders,
in-memory Keras models, and models another package provides by name.

Whatever the source, the pipeline gets a :class:`SourceModel` with the same four things: input and
output specs, a reference ``predict`` and a TensorFlow concrete function to convert.

Names that are not files (the zoo's ``digits-cnn``) are not resolved here: ``edgekit.convert``
knows no catalogue of models. The caller turns such a name into a :class:`ModelProvider` (the zoo
does, see ``edgekit.zoo.resolve``) and the pipeline calls it at its load step, so a model that has
to be trained is trained only after the recipe, the targets and the output folder were checked.

Example:
    >>> src = load_source("model.keras")  # doctest: +SKIP
    >>> [s.describe() for s in src.inputs]  # doctest: +SKIP
    ['image[?x8x8x1] float32']
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from edgekit.convert.tf_env import keras, tf, tf_keras
from edgekit.errors import ModelError
from edgekit.manifest import TensorSpec, sha256_file

KERAS3 = "keras3"
TF_KERAS = "tf_keras"
SAVED_MODEL = "saved_model"

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

InputSpec = tuple[str, tuple[int | None, ...], str]  # (name, per-sample shape, dtype)


@dataclass(frozen=True)
class DefaultData:
    """Data a model comes with (a zoo model's bundled splits), used where the recipe names none.

    Each field is a data spec as :func:`edgekit.calibration.open_dataset` reads it.

    Example:
        >>> DefaultData(eval="digits:eval").calib is None
        True
    """

    calib: str | None = None
    eval: str | None = None
    train: str | None = None


@runtime_checkable
class ModelProvider(Protocol):
    """A model supplied by another package (the zoo), loaded at the pipeline's load step.

    ``provide`` builds, trains or loads the model (``seed`` makes training reproducible,
    ``allow_unsafe`` is the recipe's, for files) and returns it as a :class:`SourceModel`, usually
    made with :func:`from_keras` (and its ``data``) or :func:`load_source`.
    """

    name: str

    def provide(self, *, seed: int, allow_unsafe: bool, progress: Callable[[str], None] | None) -> "SourceModel":
        ...


@dataclass
class SourceModel:
    """A loaded model, whatever it came from.

    Attributes:
        name: What the user asked for (path or zoo name).
        kind: ``"keras3"``, ``"tf_keras"`` or ``"saved_model"``.
        model: The Keras model, or the loaded SavedModel object.
        inputs: Input specs in the model's order (batch dim ``None``).
        outputs: Output specs in the model's order.
        sha256: Hash of the source file/folder (``None`` for zoo models built in memory).
        zoo: The zoo entry name when the model came from the zoo.
        data: Data the model comes with, used where the recipe gives no calib/eval/train data.
        max_batch: The conversion's cap on samples per model call (the recipe's ``max_batch``),
            which exporters that run the model themselves (ONNX calibration) honour too; ``None``
            sizes batches from the memory budget.
    """

    name: str
    kind: str
    model: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str | None = None
    zoo: str | None = None
    data: DefaultData = field(default_factory=DefaultData)
    max_batch: int | None = None
    _export_dir: str | None = field(default=None, repr=False)
    _tmp: Any = field(default=None, repr=False)

    @property
    def is_keras(self) -> bool:
        return self.kind in (KERAS3, TF_KERAS)

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the source."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "sha256": self.sha256}
        if self.zoo:
            d["zoo"] = self.zoo
        if self.is_keras:
            d["params"] = int(self.model.count_params())
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        return d

    def saved_model_dir(self) -> str:
        """A SavedModel of this model with one ``serving_default`` signature, exported once.

        Input and output names are the model's own (sanitised), so a converted file's signature
        says ``logits`` rather than ``output_0``, and validation matches outputs by name. Keras 3
        needs ``ExportArchive`` (a plain ``tf.Module`` does not track its variables); tf_keras
        models are tracked by ``tf.saved_model.save`` directly.
        """
        if self.kind == SAVED_MODEL:
            return self.name
        if self._export_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgekit-sm-")
            path = os.path.join(self._tmp.name, "saved_model")
            self._export(path)
            self._export_dir = path
        return self._export_dir

    def _export(self, path: str) -> None:
        t = tf()
        model, names = self.model, [o.name for o in self.outputs]
        sig = [t.TensorSpec((None, *s.shape[1:]), s.dtype, name=s.name) for s in self.inputs]

        def serve(*args):
            out = model(list(args) if len(args) > 1 else args[0], training=False)
            return dict(zip(names, _as_list(out, model)))

        from edgekit.quiet import captured_output

        with captured_output() as cap:
            try:
                if self.kind == KERAS3:
                    archive = keras().export.ExportArchive()
                    archive.track(model)
                    archive.add_endpoint(name="serving_default", fn=serve, input_signature=sig)
                    archive.write_out(path, verbose=False)
                else:
                    _save_tf_keras(t, model, serve, sig, path)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(
                    f"cannot trace {self.name} into a SavedModel: {' '.join(str(exc).split())[:300]} [{cap.tail(2)}]"
                ) from None

    def predict(self, arrays: Sequence[np.ndarray], batch_size: int | None = None) -> list[np.ndarray]:
        """Reference outputs (float32 numpy, model order) for inputs given as one array per input.

        Args:
            arrays: One array per input (memory-mapped arrays are read one batch at a time).
            batch_size: Samples per model call; ``None`` sizes it from the model's input and
                activation bytes (:func:`edgekit.convert.batching.batch_for`, default budget), so
                only one batch of activations is alive at a time whatever the sample count. The
                outputs do not depend on it.
        """
        if batch_size is None:
            from edgekit.convert.batching import batch_for

            batch_size = batch_for(self, samples=arrays)
        n = len(arrays[0])
        chunks: list[list[np.ndarray]] = []
        if self.kind == SAVED_MODEL:
            fn = self.model.signatures["serving_default"]
        for start in range(0, n, batch_size):
            batch = [np.asarray(a[start : start + batch_size]) for a in arrays]
            if self.kind == SAVED_MODEL:
                res = fn(**{s.name: tf().constant(b) for s, b in zip(self.inputs, batch)})
                outs = [np.asarray(res[o.name]) for o in self.outputs]
            else:
                res = self.model(batch if len(batch) > 1 else batch[0], training=False)
                outs = [np.asarray(o) for o in _as_list(res, self.model)]
            chunks.append(outs)
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.outputs))]


def _as_list(out: Any, model: Any) -> list[Any]:
    if isinstance(out, dict):
        return [out[k] for k in getattr(model, "output_names", None) or sorted(out)]
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def _clean(name: str, taken: set[str], fallback: str) -> str:
    # TF signature names must be identifiers; Keras names like "dense/BiasAdd:0" are not.
    base = re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]) or fallback
    if base[0].isdigit():
        base = f"t_{base}"
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def _dtype_name(dt: Any) -> str:
    dt = getattr(dt, "name", dt)
    return np.dtype(str(dt)).name


def keras_specs(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input/output specs of a built Keras 3 or tf_keras model, with signature-safe names."""
    if not getattr(model, "inputs", None):
        raise ModelError(
            f"model {getattr(model, 'name', '?')!r} has no defined inputs (a subclassed model that was never "
            "called): build it with keras.Input or call it on data once before saving"
        )
    taken: set[str] = set()
    ins = tuple(
        TensorSpec(_clean(getattr(t, "name", f"input_{i}"), taken, f"input_{i}"), (None, *tuple(t.shape)[1:]), _dtype_name(t.dtype))
        for i, t in enumerate(model.inputs)
    )
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model.outputs):
        names = [getattr(t, "name", f"output_{i}") for i, t in enumerate(model.outputs)]
    taken = {s.name for s in ins}
    outs = tuple(
        TensorSpec(_clean(n, taken, f"output_{i}"), (None, *tuple(t.shape)[1:]), _dtype_name(t.dtype))
        for i, (n, t) in enumerate(zip(names, model.outputs))
    )
    return ins, outs


def from_keras(model: Any, name: str | None = None, *, sha256: str | None = None, zoo: str | None = None,
               inputs: Sequence[InputSpec] | None = None, data: DefaultData | None = None) -> SourceModel:
    """Wrap an in-memory Keras 3 or tf_keras model.

    Args:
        model: The Keras model (functional, sequential or subclassed).
        name: What the manifest calls the source (default: the model's name).
        sha256: Hash of the file it was loaded from.
        zoo: The zoo name it came from (recorded in the manifest's source).
        inputs: ``(name, per-sample shape, dtype)`` per input, for a subclassed model that has no
            ``inputs`` of its own; ``None`` uses the shape Keras recorded when it was built.
        data: Default calib/eval/train data that comes with the model.

    Example:
        >>> src = from_keras(my_model)  # doctest: +SKIP
    """
    kind = TF_KERAS if type(model).__module__.startswith("tf_keras") else KERAS3
    if not getattr(model, "inputs", None) and hasattr(model, "call"):
        # A subclassed model: wrap it in a functional one (the declared inputs, else the built shape).
        from edgekit.convert.subclassed import as_functional

        model = as_functional(model, inputs, tf_keras=kind == TF_KERAS)
    ins, outs = keras_specs(model)
    return SourceModel(name or model.name, kind, model, ins, outs, sha256=sha256, zoo=zoo,
                       data=data or DefaultData())


def load_source(spec: str | Any, *, allow_unsafe: bool = False, seed: int = 0, progress=None) -> SourceModel:
    """Load a model from a path, a :class:`ModelProvider`, a :class:`SourceModel` or an in-memory Keras model.

    Args:
        spec: ``.keras`` / ``.h5`` file, SavedModel folder, a provider (how the zoo's names arrive),
            an already loaded :class:`SourceModel`, or a Keras model object.
        allow_unsafe: Let Keras deserialise ``Lambda`` layers (arbitrary Python). Only for files you trust.
        seed: Passed to a provider (the training seed of zoo models).
        progress: Callback for one-line progress messages.

    Raises:
        ModelError: missing file, not a model, unsafe ``Lambda`` code.
    """
    if isinstance(spec, SourceModel):
        return spec
    if isinstance(spec, ModelProvider):
        return spec.provide(seed=seed, allow_unsafe=allow_unsafe, progress=progress)
    if not isinstance(spec, (str, Path)):
        return from_keras(spec)
    path = check_model_path(spec)
    if path.is_dir():
        return _load_saved_model(path)
    digest = sha256_file(path)
    model = _load_keras_file(path, allow_unsafe)
    return from_keras(model, str(spec), sha256=digest)


def check_model_path(spec: str | os.PathLike[str]) -> Path:
    """The checks a model path gets before TensorFlow is imported (seconds saved on every typo).

    Raises:
        ModelError: missing path, a folder that is no SavedModel, an unknown suffix, a ``.keras``
            that is no Keras zip archive, an ``.h5`` that is no HDF5 file.

    Example:
        >>> check_model_path("nope.keras")
        Traceback (most recent call last):
        ...
        edgekit.errors.ModelError: model 'nope.keras' does not exist (expected a .keras/.h5 file, a SavedModel folder or a zoo name)
    """
    path = Path(spec)
    if not path.exists():
        # The converter knows no zoo (the caller resolves names); say where a bare name would work.
        hint = ("; zoo names are resolved by edgekit.api.convert and the edgekit CLI"
                if not path.suffix and len(path.parts) == 1 else "")
        raise ModelError(f"model {str(spec)!r} does not exist (expected a .keras/.h5 file, a SavedModel folder "
                         f"or a zoo name){hint}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb inside)")
        return path
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelError(
            f"cannot load {path.name}: unsupported model file type {suffix or '(none)'!r}; "
            f"expected one of {', '.join(MODEL_SUFFIXES)} or a SavedModel folder"
        )
    if suffix == ".keras":
        _keras_version_in_archive(path)
    elif not _is_hdf5(path):
        raise ModelError(f"{path} is not a Keras model: an .h5 file is HDF5 and this one is not (truncated or another format?)")
    return path


def _keras_version_in_archive(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a Keras model: a .keras file is a zip archive and this one is not (truncated or another format?)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise ModelError(f"{path} is a zip archive but not a Keras model (no config.json inside)")
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError(f"{path} is a corrupt Keras archive: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path} is a corrupt Keras archive: metadata.json is not a JSON object")
    return str(meta.get("keras_version", ""))


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _load_keras_file(path: Path, allow_unsafe: bool) -> Any:
    if path.suffix != path.suffix.lower():
        # Keras checks suffixes case-sensitively; load a lower-case-named copy of MODEL.KERAS / .H5.
        with tempfile.TemporaryDirectory(prefix="edgekit-load-") as tmp:
            alias = Path(tmp) / (path.stem + path.suffix.lower())
            shutil.copyfile(path, alias)
            return _load_keras_file(alias, allow_unsafe)
    if path.suffix.lower() == ".keras":
        version = _keras_version_in_archive(path)
        # Files written by tf_keras say 2.x; Keras 3 cannot always read them, tf_keras can.
        loaders = [_load_tf_keras, _load_keras3] if version.startswith("2.") else [_load_keras3, _load_tf_keras]
    else:
        if not _is_hdf5(path):
            raise ModelError(f"{path} is not a Keras model: an .h5 file is HDF5 and this one is not (truncated or another format?)")
        loaders = [_load_keras3, _load_tf_keras]
    errors = []
    for loader in loaders:
        try:
            return loader(path, allow_unsafe)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - each Keras raises its own zoo of types
            msg = " ".join(str(exc).split())
            if "safe_mode" in msg or "Lambda" in msg and "unsafe" in msg.lower():
                raise ModelError(
                    f"{path} contains a Lambda layer with Python code, which Keras safe mode refuses to load; "
                    "if you trust this file, pass --allow-unsafe (allow_unsafe=True)"
                ) from None
            missing = re.search(r"Could not (?:locate|deserialize) (?:class|function) '[^']+'", msg)
            if missing:
                raise ModelError(
                    f"cannot load {path}: {missing.group(0)}; import the module that defines and registers it "
                    "(keras.saving.register_keras_serializable) before converting, or use the Python API"
                ) from None
            errors.append(f"{loader.__name__[6:]}: {msg[:300]}")
    raise ModelError(f"cannot load {path}: " + "; ".join(errors))


def _load_keras3(path: Path, allow_unsafe: bool) -> Any:
    from edgekit.quiet import captured_output

    with captured_output():
        return keras().saving.load_model(path, compile=False, safe_mode=not allow_unsafe)


def _load_tf_keras(path: Path, allow_unsafe: bool) -> Any:
    from edgekit.quiet import captured_output

    k2 = tf_keras()
    with captured_output():
        if path.suffix.lower() == ".keras":
            return k2.models.load_model(path, compile=False, safe_mode=not allow_unsafe)
        return k2.models.load_model(path, compile=False)


def _load_saved_model(path: Path) -> SourceModel:
    t = tf()
    try:
        loaded = t.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load SavedModel {path}: {' '.join(str(exc).split())[:300]}") from None
    sigs = getattr(loaded, "signatures", {})
    if "serving_default" not in sigs:
        raise ModelError(f"SavedModel {path} has no 'serving_default' signature (it has {sorted(sigs)}): re-export it with one")
    fn = sigs["serving_default"]
    _, kw = fn.structured_input_signature
    ins = tuple(
        TensorSpec(name, (None, *tuple(spec.shape)[1:]), spec.dtype.name) for name, spec in sorted(kw.items())
    )
    outs = tuple(
        TensorSpec(name, (None, *tuple(spec.shape)[1:]), spec.dtype.name)
        for name, spec in sorted(fn.structured_outputs.items())
    )
    return SourceModel(str(path), SAVED_MODEL, loaded, ins, outs, sha256=sha256_file(path))


def _save_tf_keras(t: Any, model: Any, serve: Any, sig: list[Any], path: str) -> None:
    """``tf.saved_model.save`` of a tf_keras model's serving function, tracking only its variables.

    Tracking the model itself makes tf_keras serialise a traced call function for every layer
    (what ``tf_keras.models.load_model`` would need, and no converter reads): a tf_keras
    EfficientNetB0 ``.h5`` went from load to checked ONNX in 76 s that way, 31 s this way. A model
    that owns other resources (a lookup table, an asset) is refused as "untracked" by the narrow
    save and is saved the full way.
    """
    fn = t.function(serve, input_signature=sig)
    concrete = fn.get_concrete_function()
    module = t.Module()
    module.variables_only = list(model.variables)
    try:
        t.saved_model.save(module, path, signatures={"serving_default": concrete})
        return
    except (AssertionError, ValueError, TypeError):  # "untracked resource": the model holds more than variables
        shutil.rmtree(path, ignore_errors=True)
    module = t.Module()
    module.model = model
    t.saved_model.save(module, path, signatures={"serving_default": concrete})
