"""Zoo fixtures: every zoo model trained once per test session (default epochs, seed 0).

The models land in the session's EDGEKIT_CACHE (see tests/conftest.py), so the coverage matrix and
``edgekit convert NAME`` later in the session load them instead of training again.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained_zoo():
    """{zoo name: trained Keras model} for the whole zoo, trained in two processes, then loaded.

    Measured on 2 cores: ~110 s training one after the other in the test process, ~65 s in two
    worker processes (and this process stays free of the training graphs).
    """
    from edgekit.zoo import train, zoo_names
    from edgekit.zoo.training import pretrain

    pretrain(workers=2)
    return {name: train(name) for name in zoo_names()}
