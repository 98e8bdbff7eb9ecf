"""Zoo fixtures: every zoo model trained once per test session (default epochs, seed 0).

The models land in the session's EDGEKIT_CACHE (see tests/conftest.py), so the coverage matrix and
``edgekit convert NAME`` later in the session load them instead of training again.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained_zoo():
    """{zoo name: trained Keras model} for the whole zoo (~100 s on 2 cores, then cached)."""
    from edgekit.models import train, zoo_names

    return {name: train(name) for name in zoo_names()}
