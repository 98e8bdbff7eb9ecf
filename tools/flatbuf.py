"""Structure-aware mutations of ``.tflite`` files: change one meaningful field of the flatbuffer
(a tensor's shape, type, buffer index or quantization; an operator's opcode or tensor indices; a
subgraph's inputs/outputs; a signature) and write a file that is otherwise valid.

Byte-level mutations mostly die at the file identifier or the flatbuffer verifier and never reach
the engine's kernels; these pass the verifier, so they test what the runtime does with a model that
*parses* but lies (a batch of 400,000, a scale of NaN, an input that is a constant).

The file is unpacked with the object API of LiteRT's generated schema
(``ai_edge_litert.schema_py_generated``, shipped in the ai-edge-litert wheel, so nothing extra to
install), mutated in place and packed again: absent (default-valued) fields can be set too, which
patching bytes in place could not do.

Example:
    >>> import random
    >>> data = open("model.tflite", "rb").read()  # doctest: +SKIP
    >>> new, what = mutate_tflite(data, random.Random(0), "tensor_shape")  # doctest: +SKIP
    >>> what  # doctest: +SKIP
    'tensor 7 shape [1, 8, 8, 16] -> [1, 8, 400000, 16]'
    >>> sorted(TFLITE_MUTATIONS)[:3]
    ['batch_400k', 'buffer_data', 'buffer_index']
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

# Values that break assumptions: empty, unknown, sign, 32-bit edges, the 400,000 batch.
DIMS = (0, -1, -2, 2, 3, 400_000, 1 << 20, (1 << 31) - 1, -(1 << 31), 65_537)
SCALES = (0.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, 1e38, 3.4e38)
ZERO_POINTS = (-129, 128, 255, 256, -(1 << 31), (1 << 31) - 1, (1 << 62), -(1 << 62))
INDICES = (-1, -2, 1 << 16, (1 << 31) - 1)


def schema() -> Any:
    """LiteRT's generated TFLite schema module (object API: ``ModelT``, ``TensorT`` ...).

    Example:
        >>> schema().TensorType.INT8
        9
    """
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def unpack(data: bytes) -> Any:
    """The ``ModelT`` of a ``.tflite`` file's bytes.

    Example:
        >>> m = unpack(open("model.tflite", "rb").read())  # doctest: +SKIP
        >>> len(m.subgraphs)  # doctest: +SKIP
        1
    """
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: Any) -> bytes:
    """The ``.tflite`` bytes of a ``ModelT`` (file identifier ``TFL3``).

    Example:
        >>> data = open("model.tflite", "rb").read()  # doctest: +SKIP
        >>> len(pack(unpack(data))) == len(data)  # doctest: +SKIP
        True
    """
    import flatbuffers

    b = flatbuffers.Builder(1 << 16)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tensors(m: Any) -> list[tuple[int, int, Any]]:
    return [(si, ti, t) for si, sg in enumerate(m.subgraphs or []) for ti, t in enumerate(sg.tensors or [])]


def _pick_tensor(m: Any, rng: random.Random, *, activations: bool = False) -> tuple[int, int, Any]:
    """A tensor, biased towards the model's inputs and outputs (where a lie hurts first)."""
    sg = m.subgraphs[0]
    io = [int(i) for i in list(sg.inputs if sg.inputs is not None else []) + list(sg.outputs if sg.outputs is not None else [])]
    if io and rng.random() < 0.4:
        ti = rng.choice(io)
        if 0 <= ti < len(sg.tensors):
            return 0, ti, sg.tensors[ti]
    pool = _tensors(m)
    if activations:
        # Activations are the tensors without constant data: their size is what allocate_tensors pays.
        act = [x for x in pool if not _has_data(m, x[2])]
        pool = act or pool
    return rng.choice(pool)


def _has_data(m: Any, t: Any) -> bool:
    b = t.buffer
    return 0 <= b < len(m.buffers) and m.buffers[b].data is not None and len(m.buffers[b].data) > 0


def _shape(t: Any) -> list[int]:
    return [int(x) for x in (t.shape if t.shape is not None else [])]


def _tensor_shape(m: Any, rng: random.Random) -> str:
    si, ti, t = _pick_tensor(m, rng, activations=rng.random() < 0.5)
    old = _shape(t)
    new = list(old) or [1]
    new[rng.randrange(len(new))] = rng.choice(DIMS)
    t.shape = new
    if t.shapeSignature is not None and len(t.shapeSignature) == len(new) and rng.random() < 0.5:
        t.shapeSignature = list(new)
    return f"subgraph {si} tensor {ti} shape {old} -> {new}"


def _tensor_rank(m: Any, rng: random.Random) -> str:
    si, ti, t = _pick_tensor(m, rng)
    old = _shape(t)
    choice = rng.randrange(3)
    new = [] if choice == 0 else (old + [1, 1] if choice == 1 else old[:-1])
    t.shape = new
    if rng.random() < 0.5:
        t.shapeSignature = None if rng.random() < 0.5 else [-1] * len(new)
    return f"subgraph {si} tensor {ti} rank {old} -> {new}"


def _batch_400k(m: Any, rng: random.Random) -> str:
    # The row: a model whose stored batch is 400,000 (the guard must count what allocate pays).
    sg = m.subgraphs[0]
    ti = int(rng.choice(list(sg.inputs))) if sg.inputs is not None and len(sg.inputs) else 0
    t = sg.tensors[ti]
    old = _shape(t)
    batch = rng.choice((400_000, 4_000_000, 1 << 24))
    t.shape = [batch] + old[1:] if old else [batch]
    if rng.random() < 0.5:
        t.shapeSignature = list(t.shape)
    return f"input tensor {ti} shape {old} -> {t.shape}"


def _tensor_type(m: Any, rng: random.Random) -> str:
    si, ti, t = _pick_tensor(m, rng)
    old = t.type
    # Every defined type (0..21) plus values the schema does not know.
    t.type = rng.choice([x for x in range(0, 22) if x != old] + [22, 100, 127, -1])
    return f"subgraph {si} tensor {ti} type {old} -> {t.type}"


def _buffer_index(m: Any, rng: random.Random) -> str:
    si, ti, t = _pick_tensor(m, rng)
    old = t.buffer
    n = len(m.buffers)
    sizes = sorted(range(n), key=lambda i: -len(m.buffers[i].data) if m.buffers[i].data is not None else 0)
    t.buffer = rng.choice([n, n + 1, (1 << 32) - 1, 0, sizes[0], rng.randrange(n)])
    return f"subgraph {si} tensor {ti} buffer {old} -> {t.buffer} (of {n})"


def _buffer_data(m: Any, rng: random.Random) -> str:
    full = [i for i, b in enumerate(m.buffers) if b.data is not None and len(b.data)]
    i = rng.choice(full) if full else rng.randrange(len(m.buffers))
    b = m.buffers[i]
    import numpy as np

    old = 0 if b.data is None else len(b.data)
    choice = rng.randrange(4)
    if choice == 0:
        b.data = None if b.data is None else b.data[: rng.randrange(max(old, 1))]
    elif choice == 1:
        b.data = np.concatenate([b.data if b.data is not None else np.zeros(0, np.uint8), np.zeros(rng.choice((1, 3, 4096)), np.uint8)])
    elif choice == 2:
        # An external (offset/size) buffer pointing past the end of the file.
        b.data, b.offset, b.size = None, rng.choice((1, 1 << 20, (1 << 63) - 1)), rng.choice((4, 1 << 20, (1 << 63) - 1))
    else:
        b.data = np.full(old, rng.choice((0x7F, 0xFF, 0x80)), np.uint8)  # NaN/extreme bit patterns
    new = 0 if b.data is None else len(b.data)
    return f"buffer {i} data {old} -> {new} bytes (offset {b.offset}, size {b.size})"


def _quantization(m: Any, rng: random.Random) -> str:
    s = schema()
    quantized = [x for x in _tensors(m) if x[2].quantization is not None and x[2].quantization.scale is not None]
    si, ti, t = rng.choice(quantized) if quantized and rng.random() < 0.8 else _pick_tensor(m, rng)
    q = t.quantization or s.QuantizationParametersT()
    t.quantization = q
    choice = rng.randrange(5)
    if choice == 0:
        n = 1 if q.scale is None else len(q.scale)
        q.scale = [rng.choice(SCALES)] * n
        what = f"scale -> {q.scale[0]}"
    elif choice == 1:
        n = 1 if q.zeroPoint is None else len(q.zeroPoint)
        q.zeroPoint = [rng.choice(ZERO_POINTS)] * n
        what = f"zero_point -> {q.zeroPoint[0]}"
    elif choice == 2:
        # Per-channel arrays whose length does not match the channel count.
        q.scale = [1.0] * rng.choice((0, 2, 7, 1000))
        q.zeroPoint = [0] * rng.choice((0, 1, 3))
        what = f"{len(q.scale)} scales, {len(q.zeroPoint)} zero points"
    elif choice == 3:
        q.quantizedDimension = rng.choice((-1, 4, 100, (1 << 31) - 1))
        what = f"quantized_dimension -> {q.quantizedDimension}"
    else:
        q.min, q.max = [math.nan], [-math.inf]
        what = "min NaN, max -inf"
    return f"subgraph {si} tensor {ti} quantization {what}"


def _opcode_index(m: Any, rng: random.Random) -> str:
    sg = m.subgraphs[0]
    oi = rng.randrange(len(sg.operators))
    op = sg.operators[oi]
    old = op.opcodeIndex
    n = len(m.operatorCodes)
    op.opcodeIndex = rng.choice([n, n + 5, (1 << 32) - 1] + [i for i in range(n) if i != old])
    return f"operator {oi} opcode_index {old} -> {op.opcodeIndex} (of {n})"


def _opcode(m: Any, rng: random.Random) -> str:
    ci = rng.randrange(len(m.operatorCodes))
    c = m.operatorCodes[ci]
    old = (c.builtinCode, c.deprecatedBuiltinCode, c.version)
    choice = rng.randrange(3)
    if choice == 0:
        c.builtinCode = rng.choice((0, 1, 9, 22, 32, 127, 128, 209, 1000, (1 << 31) - 1))  # 32 = CUSTOM
        c.deprecatedBuiltinCode = min(c.builtinCode, 127)
    elif choice == 1:
        c.version = rng.choice((0, -1, 99, (1 << 31) - 1))
    else:
        c.builtinCode, c.deprecatedBuiltinCode, c.customCode = 32, 32, rng.choice((b"", b"NoSuchOp", b"\xff\xfe"))
    return f"operator_code {ci} (builtin, deprecated, version) {old} -> {(c.builtinCode, c.deprecatedBuiltinCode, c.version)}"


def _index_value(rng: random.Random, n: int) -> int:
    return rng.choice([n, n + 1, *INDICES, rng.randrange(n), rng.randrange(n)])


def _op_io(m: Any, rng: random.Random) -> str:
    sg = m.subgraphs[0]
    oi = rng.randrange(len(sg.operators))
    op = sg.operators[oi]
    n = len(sg.tensors)
    side = rng.choice(("inputs", "outputs"))
    vals = [int(x) for x in (getattr(op, side) if getattr(op, side) is not None else [])]
    old = list(vals)
    choice = rng.randrange(4)
    if choice == 0 and vals:
        vals[rng.randrange(len(vals))] = _index_value(rng, n)
    elif choice == 1:
        vals.append(_index_value(rng, n))
    elif choice == 2 and vals:
        vals.pop(rng.randrange(len(vals)))
    else:
        vals = [vals[0]] * len(vals) if vals else [0]  # the same tensor everywhere (aliasing)
    setattr(op, side, vals)
    return f"operator {oi} {side} {old} -> {vals} (of {n} tensors)"


def _subgraph_io(m: Any, rng: random.Random) -> str:
    sg = m.subgraphs[0]
    n = len(sg.tensors)
    side = rng.choice(("inputs", "outputs"))
    vals = [int(x) for x in (getattr(sg, side) if getattr(sg, side) is not None else [])]
    old = list(vals)
    consts = [ti for _, ti, t in _tensors(m) if _has_data(m, t)]
    choice = rng.randrange(4)
    if choice == 0:
        vals = []
    elif choice == 1:
        vals = [_index_value(rng, n)]
    elif choice == 2 and consts:
        vals = [rng.choice(consts)]  # a constant (weights) as the model's input or output
    else:
        vals = vals + vals  # the same tensor twice
    setattr(sg, side, vals)
    return f"subgraph {side} {old} -> {vals} (of {n} tensors)"


def _signature(m: Any, rng: random.Random) -> str:
    if not m.signatureDefs:
        return _subgraph_io(m, rng)
    sig = m.signatureDefs[0]
    choice = rng.randrange(4)
    n = len(m.subgraphs[0].tensors)
    if choice == 0 and sig.inputs:
        old = sig.inputs[0].tensorIndex
        sig.inputs[0].tensorIndex = rng.choice((n, (1 << 32) - 1, n - 1, 1))
        return f"signature input tensor_index {old} -> {sig.inputs[0].tensorIndex}"
    if choice == 1 and sig.outputs:
        old = sig.outputs[0].tensorIndex
        sig.outputs[0].tensorIndex = rng.choice((n, (1 << 32) - 1, 0, 1))
        return f"signature output tensor_index {old} -> {sig.outputs[0].tensorIndex}"
    if choice == 2:
        old = sig.subgraphIndex
        sig.subgraphIndex = rng.choice((1, 7, (1 << 32) - 1))
        return f"signature subgraph_index {old} -> {sig.subgraphIndex}"
    names = (b"", b"\xff\xfe\xfd", b"a" * 5000, b"image")
    for tm in (sig.inputs or []) + (sig.outputs or []):
        tm.name = rng.choice(names)
    return "signature tensor names replaced"


def _builtin_options(m: Any, rng: random.Random) -> str:
    sg = m.subgraphs[0]
    ops = [(i, op) for i, op in enumerate(sg.operators) if op.builtinOptions is not None]
    if not ops:
        return _op_io(m, rng)
    oi, op = rng.choice(ops)
    opts = op.builtinOptions
    fields = [k for k, v in vars(opts).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not fields or rng.random() < 0.2:
        old = op.builtinOptionsType
        op.builtinOptionsType = rng.choice((0, 1, 50, 126))  # options of another operator
        return f"operator {oi} builtin_options_type {old} -> {op.builtinOptionsType}"
    k = rng.choice(fields)
    old = getattr(opts, k)
    # Small widths first: many option fields are bytes (padding, activation), packing checks them.
    new = rng.choice((0, -1, 2, 7, 127, -128)) if isinstance(old, int) else rng.choice((math.nan, math.inf, 0.0, -1.0))
    setattr(opts, k, new)
    return f"operator {oi} {type(opts).__name__}.{k} {old} -> {new}"


def _drop_operator(m: Any, rng: random.Random) -> str:
    sg = m.subgraphs[0]
    oi = rng.randrange(len(sg.operators))
    if rng.random() < 0.5:
        sg.operators.pop(oi)
        return f"operator {oi} removed (its outputs are never written)"
    sg.operators.insert(rng.randrange(len(sg.operators) + 1), sg.operators[oi])
    return f"operator {oi} duplicated"


def _weights(m: Any, rng: random.Random) -> str:
    # Same sizes, hostile values: the model loads, so NaN/inf/extreme weights and biases reach the kernels.
    import numpy as np

    full = [i for i, b in enumerate(m.buffers) if b.data is not None and len(b.data)]
    i = rng.choice(full)
    n = len(m.buffers[i].data)
    fill = rng.choice(("random", 0xFF, 0x7F, 0x80, 0x00))
    m.buffers[i].data = (np.frombuffer(rng.randbytes(n), np.uint8).copy() if fill == "random" else np.full(n, fill, np.uint8))
    return f"buffer {i}: {n} bytes of {fill}"


TFLITE_MUTATIONS: dict[str, Callable[[Any, random.Random], str]] = {
    "tensor_shape": _tensor_shape,
    "tensor_rank": _tensor_rank,
    "batch_400k": _batch_400k,
    "tensor_type": _tensor_type,
    "buffer_index": _buffer_index,
    "buffer_data": _buffer_data,
    "quantization": _quantization,
    "opcode_index": _opcode_index,
    "opcode": _opcode,
    "op_io": _op_io,
    "subgraph_io": _subgraph_io,
    "signature": _signature,
    "builtin_options": _builtin_options,
    "drop_operator": _drop_operator,
    "weights": _weights,
}


def mutate_tflite(data: bytes, rng: random.Random, kind: str | None = None, *, tries: int = 8) -> tuple[bytes, str]:
    """One structurally mutated copy of a ``.tflite`` file and what was changed.

    Args:
        data: A good ``.tflite`` file's bytes.
        rng: Seeds the choice (the same seed gives the same file).
        kind: One of :data:`TFLITE_MUTATIONS` (random if ``None``).
        tries: A drawn value the flatbuffer cannot hold (e.g. 300 in a byte field), or one that
            leaves the file unchanged, is drawn again this many times.

    Raises:
        ValueError: ``kind`` is unknown, or no drawn value could be packed.

    Example:
        >>> mutate_tflite(b"", random.Random(0), "nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown tflite mutation 'nope'; known: tensor_shape, tensor_rank, batch_400k, tensor_type, buffer_index, buffer_data, quantization, opcode_index, opcode, op_io, subgraph_io, signature, builtin_options, drop_operator, weights
    """
    kind = kind or rng.choice(list(TFLITE_MUTATIONS))
    if kind not in TFLITE_MUTATIONS:
        raise ValueError(f"unknown tflite mutation {kind!r}; known: {', '.join(TFLITE_MUTATIONS)}")
    last: Exception | None = None
    for _ in range(tries):
        m = unpack(data)
        what = TFLITE_MUTATIONS[kind](m, rng)
        try:
            new = pack(m)
        except Exception as exc:  # noqa: BLE001 - struct.error / OverflowError for a value too wide for its field
            last = exc
            continue
        if new != data:
            return new, what
        last = ValueError(f"{what} left the file unchanged")
    raise ValueError(f"{kind}: no drawn value could be packed ({last})")
