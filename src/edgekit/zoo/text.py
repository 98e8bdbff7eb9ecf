"""Text classifiers: Embedding -> LSTM / GRU -> Dense, on a real sequence task.

The sequence is a digit's 64 pixel values (0..16) in raster order (``digits:train:tokens``): a
17-token vocabulary, ten classes, no download. Recurrent layers are where converters break (TFLite
needs static TensorList shapes, int8 needs calibrated loop state), so the builders unroll by
default: 64 steps is short enough that the unrolled graph converts with builtin ops everywhere.
"""

from __future__ import annotations

from edgekit.convert.tf_env import keras


def _text(cell: str, input_shape: tuple[int, ...], classes: int, vocab: int, embed: int, units: int, unroll: bool):
    k = keras()
    inputs = k.Input(shape=input_shape, dtype="int32", name="tokens")
    x = k.layers.Embedding(vocab, embed, name="embedding")(inputs)
    rnn = k.layers.LSTM if cell == "lstm" else k.layers.GRU
    x = rnn(units, unroll=unroll, name=cell)(x)
    outputs = k.layers.Dense(classes, name="logits")(x)
    return k.Model(inputs, outputs, name=f"text_{cell}")


def text_lstm(input_shape: tuple[int, ...] = (64,), classes: int = 10, vocab: int = 17, embed: int = 16,
              units: int = 64, unroll: bool = True):
    """Embedding -> LSTM -> Dense (logits) over int32 token ids.

    Args:
        input_shape: ``(sequence_length,)``.
        classes: Output classes.
        vocab: Token ids are ``0 .. vocab - 1``.
        embed: Embedding width.
        units: LSTM units.
        unroll: Unroll the time loop into plain ops. ``False`` keeps a ``while`` loop whose
            TensorList has a dynamic batch: TFLite then needs ``select_tf_ops=true`` (and the
            Flex delegate to run it); tf2onnx and CoreML handle either.

    Example:
        >>> text_lstm().inputs[0].dtype  # doctest: +SKIP
        'int32'
    """
    return _text("lstm", input_shape, classes, vocab, embed, units, unroll)


def text_gru(input_shape: tuple[int, ...] = (64,), classes: int = 10, vocab: int = 17, embed: int = 16,
             units: int = 64, unroll: bool = True):
    """Embedding -> GRU -> Dense (logits) over int32 token ids (see :func:`text_lstm` for ``unroll``).

    Example:
        >>> text_gru().output_shape  # doctest: +SKIP
        (None, 10)
    """
    return _text("gru", input_shape, classes, vocab, embed, units, unroll)


def fit_unrolled(model, entry, data, *, epochs: int, callbacks: list):
    """Trainer hook: train a ``while``-loop twin of an unrolled model, then copy its weights over.

    Unrolling changes the graph, not the weights (a cell's kernels are the same either way), and
    tracing the training step of a 64-step unrolled graph costs ~9 s per model on 2 cores where the
    loop traces in ~1 s at the same speed per epoch (measured). The artifact keeps the unrolled graph.

    Example:
        >>> fit_unrolled(text_gru(), get_entry("text-gru"), digits("train", tokens=True), epochs=1, callbacks=[])  # doctest: +SKIP
    """
    from edgekit.zoo.training import fit_classifier

    k = keras()
    config = model.get_config()
    for layer in config["layers"]:
        if "unroll" in layer["config"]:
            layer["config"]["unroll"] = False
    twin = k.Model.from_config(config)
    fit_classifier(twin, entry, data, epochs=epochs, callbacks=callbacks)
    model.set_weights(twin.get_weights())
