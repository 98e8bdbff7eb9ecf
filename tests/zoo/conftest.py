"""Zoo fixtures: every zoo model trained at its default epochs, seed 0, once per test session.

The models are in the session's EDGEKIT_CACHE (see tests/conftest.py), copied there from the
committed seed (tools/zoo_seed.py) or, where it is stale, trained into it, so the coverage matrix
and ``edgekit convert NAME`` later in the session load them instead of training again.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained_zoo():
    """{zoo name: trained Keras model} for the whole zoo, loaded from the cache.

    What the seed did not put there trains in two processes first (measured on 2 cores: ~110 s one
    after the other in the test process, ~65 s in two; this process stays free of the training graphs).
    """
    from edgekit.zoo import train, zoo_names
    from edgekit.zoo.training import pretrain

    pretrain(workers=2)
    return {name: train(name) for name in zoo_names()}
