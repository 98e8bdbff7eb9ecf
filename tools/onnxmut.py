"""Structure-aware mutations of ``.onnx`` files: change one protobuf field (an input's dims or element
type, an initializer's shape or data, a node's op type, tensor names or attributes, the opset) and
serialize a file that still parses.

Byte flips in a protobuf mostly give a file ONNX Runtime refuses at parse time; these give graphs
that parse and lie, which is what reaches shape inference, the kernels and ``run``.

Example:
    >>> import random
    >>> data = open("model.onnx", "rb").read()  # doctest: +SKIP
    >>> new, what = mutate_onnx(data, random.Random(0), "input_dims")  # doctest: +SKIP
    >>> what  # doctest: +SKIP
    "input 'image' dim 0 batch -> 400000"
    >>> "opset" in ONNX_MUTATIONS
    True
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable

DIMS = (0, -1, 2, 3, 400_000, 1 << 20, (1 << 31) - 1, 1 << 40, -(1 << 40))
OPS = ("Relu", "Gemm", "Conv", "Reshape", "Softmax", "MatMul", "QLinearConv", "Loop", "If", "Scan", "NoSuchOp",
       "Resize", "Tile", "Expand", "ConstantOfShape", "Range")


def _graph_values(g: Any) -> list[Any]:
    return list(g.input) + list(g.output) + list(g.value_info)


def _input_dims(m: Any, rng: random.Random) -> str:
    g = m.graph
    pool = list(g.input) if rng.random() < 0.6 else _graph_values(g)
    v = rng.choice(pool)
    dims = v.type.tensor_type.shape.dim
    if not len(dims) or rng.random() < 0.15:
        choice = rng.randrange(2)
        if choice == 0:
            v.type.tensor_type.ClearField("shape")
            return f"value {v.name!r}: shape removed"
        v.type.tensor_type.shape.dim.add().dim_value = 1
        return f"value {v.name!r}: one more dim"
    j = rng.randrange(len(dims))
    old = dims[j].dim_param or dims[j].dim_value
    if rng.random() < 0.2:
        dims[j].dim_param = rng.choice(("other", "", "batch"))
    else:
        dims[j].dim_value = rng.choice(DIMS)
    new = dims[j].dim_param or dims[j].dim_value
    return f"value {v.name!r} dim {j} {old} -> {new}"


def _elem_type(m: Any, rng: random.Random) -> str:
    g = m.graph
    new = rng.choice([*range(0, 24), 99, -1])
    if rng.random() < 0.5 and len(g.initializer):
        t = rng.choice(list(g.initializer))
        old, t.data_type = t.data_type, new
        return f"initializer {t.name!r} data_type {old} -> {new}"
    v = rng.choice(_graph_values(g))
    old = v.type.tensor_type.elem_type
    v.type.tensor_type.elem_type = new
    return f"value {v.name!r} elem_type {old} -> {new}"


def _initializer_shape(m: Any, rng: random.Random) -> str:
    t = rng.choice(list(m.graph.initializer))
    old = list(t.dims)
    choice = rng.randrange(3)
    if choice == 0 and old:
        t.dims[rng.randrange(len(old))] = rng.choice(DIMS)
    elif choice == 1:
        t.dims.append(rng.choice((2, 400_000)))
    else:
        del t.dims[:]
    return f"initializer {t.name!r} dims {old} -> {list(t.dims)}"


def _initializer_data(m: Any, rng: random.Random) -> str:
    t = rng.choice(list(m.graph.initializer))
    old = len(t.raw_data)
    choice = rng.randrange(4)
    if choice == 0:
        t.raw_data = t.raw_data[: rng.randrange(max(old, 1))]
    elif choice == 1:
        t.raw_data = t.raw_data + bytes(rng.choice((1, 3, 4096)))
    elif choice == 2:
        t.raw_data = b"\xff" * old  # NaN bit patterns in float tensors, -1 in ints
    else:
        # Data in the typed field and raw_data at once, or an external-data reference to nowhere.
        if rng.random() < 0.5:
            t.float_data.extend([math.nan, math.inf])
        else:
            t.data_location = 1
            e = t.external_data.add()
            e.key, e.value = "location", rng.choice(("../../../etc/passwd", "missing.bin", "/dev/zero"))
    return f"initializer {t.name!r} raw_data {old} -> {len(t.raw_data)} bytes (location {t.data_location})"


def _op_type(m: Any, rng: random.Random) -> str:
    n = rng.choice(list(m.graph.node))
    old = n.op_type
    if rng.random() < 0.2:
        n.domain = rng.choice(("com.microsoft", "no.such.domain", "ai.onnx.ml"))
        return f"node {n.name!r} domain -> {n.domain!r}"
    n.op_type = rng.choice([o for o in OPS if o != old])
    return f"node {n.name!r} op_type {old} -> {n.op_type}"


def _node_io(m: Any, rng: random.Random) -> str:
    g = m.graph
    n = rng.choice(list(g.node))
    side = rng.choice(("input", "output"))
    vals = getattr(n, side)
    old = list(vals)
    names = [x for node in g.node for x in node.output] + [t.name for t in g.initializer] + [i.name for i in g.input]
    choice = rng.randrange(4)
    if choice == 0 and len(vals):
        vals[rng.randrange(len(vals))] = rng.choice(("", "no_such_tensor", rng.choice(names)))
    elif choice == 1:
        vals.append(rng.choice(("", rng.choice(names))))
    elif choice == 2 and len(vals):
        del vals[rng.randrange(len(vals))]
    else:
        # A cycle: the node's output feeds itself, or it writes a graph input.
        if side == "input" and len(n.output):
            vals.append(n.output[0])
        elif len(g.input):
            vals.append(g.input[0].name)
    return f"node {n.name!r} {side} {len(old)} -> {len(vals)} names"


def _attribute(m: Any, rng: random.Random) -> str:
    import onnx

    nodes = [n for n in m.graph.node if len(n.attribute)]
    n = rng.choice(nodes or list(m.graph.node))
    if not len(n.attribute) or rng.random() < 0.15:
        n.attribute.append(onnx.helper.make_attribute(rng.choice(("axis", "no_such_attr", "kernel_shape")), rng.choice((-100, [0, 0]))))
        return f"node {n.name!r}: attribute added"
    a = rng.choice(list(n.attribute))
    choice = rng.randrange(4)
    if choice == 0:
        n.attribute.remove(a)
        return f"node {n.name!r}: attribute {a.name!r} removed"
    if choice == 1 and len(a.ints):
        a.ints[rng.randrange(len(a.ints))] = rng.choice((0, -1, 1 << 40, -(1 << 62)))
    elif choice == 2:
        a.i = rng.choice((0, -1, 1 << 40, 99))
        a.f = rng.choice((math.nan, math.inf, -1.0))
    else:
        a.type = rng.choice((0, 1, 2, 3, 4, 7, 13))  # type no longer matches the field set
    return f"node {n.name!r}: attribute {a.name!r} changed"


def _opset(m: Any, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        o = m.opset_import[0]
        old, o.version = o.version, rng.choice((0, 1, 6, 99, 1 << 40))
        return f"opset {o.domain!r} {old} -> {o.version}"
    if choice == 1:
        old, m.ir_version = m.ir_version, rng.choice((0, 1, 3, 99, 1 << 40))
        return f"ir_version {old} -> {m.ir_version}"
    del m.opset_import[:]
    return "opset_import removed"


def _graph_io(m: Any, rng: random.Random) -> str:
    g = m.graph
    choice = rng.randrange(4)
    if choice == 0:
        del g.output[:]
        return "graph outputs removed"
    if choice == 1 and len(g.initializer):
        # An initializer that is also a graph input (an overridable constant) or output.
        import onnx

        t = rng.choice(list(g.initializer))
        v = onnx.helper.make_tensor_value_info(t.name, t.data_type or 1, list(t.dims))
        (g.input if rng.random() < 0.5 else g.output).append(v)
        return f"initializer {t.name!r} exposed as graph input/output"
    if choice == 2 and len(g.input):
        g.input[0].name = rng.choice(("", "x" * 5000, "ünïcode", g.output[0].name if len(g.output) else "y"))
        return f"graph input renamed to {g.input[0].name[:20]!r}"
    g.input.extend(list(g.input))
    return "graph inputs duplicated"


def _weights(m: Any, rng: random.Random) -> str:
    # Same sizes, hostile values: the graph loads, so NaN/inf/extreme weights reach the kernels.
    full = [t for t in m.graph.initializer if len(t.raw_data)]
    t = rng.choice(full)
    n = len(t.raw_data)
    fill = rng.choice(("random", "ff", "7f", "00"))
    t.raw_data = rng.randbytes(n) if fill == "random" else bytes.fromhex(fill) * n
    return f"initializer {t.name!r}: {n} bytes of {fill}"


ONNX_MUTATIONS: dict[str, Callable[[Any, random.Random], str]] = {
    "input_dims": _input_dims,
    "elem_type": _elem_type,
    "initializer_shape": _initializer_shape,
    "initializer_data": _initializer_data,
    "op_type": _op_type,
    "node_io": _node_io,
    "attribute": _attribute,
    "opset": _opset,
    "graph_io": _graph_io,
    "weights": _weights,
}


def mutate_onnx(data: bytes, rng: random.Random, kind: str | None = None) -> tuple[bytes, str]:
    """One structurally mutated copy of an ``.onnx`` file and what was changed.

    Args:
        data: A good ``.onnx`` file's bytes.
        rng: Seeds the choice (the same seed gives the same file).
        kind: One of :data:`ONNX_MUTATIONS` (random if ``None``).

    Raises:
        ValueError: ``kind`` is unknown.

    Example:
        >>> mutate_onnx(b"", random.Random(0), "nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown onnx mutation 'nope'; known: input_dims, elem_type, initializer_shape, initializer_data, op_type, node_io, attribute, opset, graph_io, weights
    """
    kind = kind or rng.choice(list(ONNX_MUTATIONS))
    if kind not in ONNX_MUTATIONS:
        raise ValueError(f"unknown onnx mutation {kind!r}; known: {', '.join(ONNX_MUTATIONS)}")
    import onnx

    for _ in range(8):  # a drawn change that leaves the file as it was is drawn again
        m = onnx.ModelProto()
        m.ParseFromString(data)
        what = ONNX_MUTATIONS[kind](m, rng)
        new = m.SerializeToString()
        if new != data:
            break
    return new, what
