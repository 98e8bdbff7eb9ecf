"""edgekit.convert.memory: collections that leave out what was alive before a conversion."""

from __future__ import annotations

import gc
import weakref

from edgekit.convert.memory import collect_new_only, release_memory


class Node:
    """A reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_collections_inside_the_block_skip_the_frozen_heap_and_free_new_cycles():
    before = Node()
    dead_before = weakref.ref(before)
    del before  # garbage when the block starts: collected by its opening collection, never frozen
    with collect_new_only():
        assert dead_before() is None
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the test process's modules and objects
        new = Node()
        dead_new = weakref.ref(new)
        del new
        release_memory()
        assert dead_new() is None  # a cycle made inside is freed by the young collection
        assert gc.get_freeze_count() <= frozen  # nothing made inside was frozen (frozen objects may die: fewer)
    assert gc.get_freeze_count() == 0  # everything is collectable again afterwards


def test_a_heap_the_process_froze_itself_is_left_frozen():
    gc.freeze()
    try:
        own = gc.get_freeze_count()
        # Frozen objects can still die by reference counting (seen: 32233 -> 32231 under xdist),
        # so "left frozen" is: never refrozen (no growth) and never unfrozen (not 0).
        with collect_new_only():
            assert 0 < gc.get_freeze_count() <= own
        assert 0 < gc.get_freeze_count() <= own  # not unfrozen behind the process's back
    finally:
        gc.unfreeze()


def test_the_block_unfreezes_when_the_conversion_raises():
    try:
        with collect_new_only():
            raise ValueError("a target failed")
    except ValueError:
        pass
    assert gc.get_freeze_count() == 0


def test_convert_works_on_a_frozen_heap_and_leaves_it_unfrozen(tmp_path):
    # The faster conversion (10.8 s -> 4.0 s for 6 digits targets): every step after loading
    # runs with the heap frozen (seen from the progress callback, which the pipeline calls
    # between steps), and nothing stays frozen once convert returns, so the caller's garbage is
    # collected as before.
    from testutil import tiny_keras_model

    from edgekit.api import convert

    seen = []
    m = convert({"model": "api", "targets": ["tflite:fp32"]}, tmp_path / "o", model=tiny_keras_model(),
                progress=lambda line: seen.append((line, gc.get_freeze_count())))
    assert m.ok
    frozen = [n for line, n in seen if "converting" in line or "validating" in line]
    assert frozen and min(frozen) > 1000
    assert [n for line, n in seen if line.startswith("loading model")] == [0]  # before the model is loaded
    assert gc.get_freeze_count() == 0
