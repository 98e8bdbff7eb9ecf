"""Index checks on a TFLite flatbuffer that LiteRT's own verifier leaves out and then trusts.

LiteRT verifies that a model is a well-formed flatbuffer, not that the indices inside it point at
things that exist. Found by ``benchmarks/fuzz_models.py`` (structure-aware mutations), each of these
passes the verifier and then kills the process with SIGSEGV inside ``Interpreter(...)``:

* a signature naming a subgraph the model does not have (``SignatureRunner.get_input_details``);
* an operator whose opcode is STRIDED_SLICE with fewer than its 4 inputs (its ``Prepare`` reads the
  4th without counting them).

:func:`check_structure` reads the model with the schema module LiteRT ships
(``ai_edge_litert.schema_py_generated``) and raises :class:`~edgekit.errors.BackendError` for them,
and for operator, tensor and buffer indices out of range. Where that module is missing (another
LiteRT flavour) nothing is checked and the engine's verifier is all there is.

Example:
    >>> check_structure(b"not a model", "x.tflite")  # unreadable: left to the engine's verifier
"""

from __future__ import annotations

from typing import Any

from edgekit.errors import BackendError

# Builtin operators that read this many inputs without checking how many they were given.
MIN_INPUTS = {"STRIDED_SLICE": 4}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated  # shipped in the ai-edge-litert wheel
    except ImportError:
        return None
    return schema_py_generated


def check_structure(data: bytes, name: str) -> None:
    """Raise :class:`BackendError` when ``data``'s indices point at subgraphs, tensors, opcodes or
    buffers that do not exist, or an operator has fewer inputs than its kernel reads.

    Args:
        data: The model bytes (already known to carry the ``TFL3`` identifier).
        name: The file name, for the message.

    Example:
        >>> check_structure(b"\\x00" * 8, "m.tflite")  # nothing readable to check
    """
    s = _schema()
    if s is None:
        return
    try:
        problem = _first_problem(s, s.Model.GetRootAs(data, 0))
    except Exception:  # noqa: BLE001 - unreadable here: the engine's verifier gives the error
        return
    if problem:
        raise BackendError(f"{name} is not a valid TFLite model: {problem} (corrupt or edited file)")


def _first_problem(s: Any, m: Any) -> str | None:
    n_sub, n_buf, n_codes = m.SubgraphsLength(), m.BuffersLength(), m.OperatorCodesLength()
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(n_codes):
        oc = m.OperatorCodes(i)
        # Newer files keep the code in BuiltinCode; DeprecatedBuiltinCode holds it for codes < 127.
        codes.append(names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())))
    for i in range(m.SignatureDefsLength()):
        sd = m.SignatureDefs(i)
        if not 0 <= sd.SubgraphIndex() < n_sub:
            return f"signature {i} names subgraph {sd.SubgraphIndex()} of {n_sub}"
        n_t = m.Subgraphs(sd.SubgraphIndex()).TensorsLength()
        for kind, count, get in (("input", sd.InputsLength(), sd.Inputs), ("output", sd.OutputsLength(), sd.Outputs)):
            for j in range(count):
                if not 0 <= get(j).TensorIndex() < n_t:
                    return f"signature {i} {kind} {j} names tensor {get(j).TensorIndex()} of {n_t}"
    for g in range(n_sub):
        sg = m.Subgraphs(g)
        n_t = sg.TensorsLength()
        for t in range(n_t):
            if not 0 <= sg.Tensors(t).Buffer() < max(n_buf, 1):
                return f"subgraph {g} tensor {t} names buffer {sg.Tensors(t).Buffer()} of {n_buf}"
        for kind, count, get in (("input", sg.InputsLength(), sg.Inputs), ("output", sg.OutputsLength(), sg.Outputs)):
            for j in range(count):
                if not 0 <= get(j) < n_t:
                    return f"subgraph {g} {kind} {j} names tensor {get(j)} of {n_t}"
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if not 0 <= op.OpcodeIndex() < n_codes:
                return f"subgraph {g} operator {o} names opcode {op.OpcodeIndex()} of {n_codes}"
            for kind, count, get in (("input", op.InputsLength(), op.Inputs), ("output", op.OutputsLength(), op.Outputs)):
                for j in range(count):
                    if not -1 <= get(j) < n_t:  # -1: an optional input left out
                        return f"subgraph {g} operator {o} {kind} {j} names tensor {get(j)} of {n_t}"
            code = codes[op.OpcodeIndex()]
            need = MIN_INPUTS.get(code or "")
            if need is not None and op.InputsLength() < need:
                return f"subgraph {g} operator {o} ({code}) has {op.InputsLength()} inputs, needs {need}"
    return None


__all__ = ["MIN_INPUTS", "check_structure"]
