"""Fixtures of the model tests."""

import pytest

from genfast.data import load_digits


@pytest.fixture(scope="module")
def digits():
    """The digits' train split: images [1437, 1, 8, 8] in [-1, 1] and labels [1437] int64."""
    return load_digits("train")
