"""Fixtures shared by the use-case tests."""

import pytest

from genfast.data import load_digits


@pytest.fixture(scope="module")
def digits():
    """``(train images, test images)`` of the bundled digits, [N, 1, 8, 8] in [-1, 1]."""
    return load_digits("train")[0], load_digits("test")[0]
