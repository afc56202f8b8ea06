"""Fixtures of the convlab.nn tests; helpers live in nn_helpers.py."""
import pytest

import convlab.nn as nn


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same initialisation and dropout generator."""
    nn.manual_seed(0)
    yield
