"""CycleGAN (genfast.models.cyclegan) between thin and thick digits, on a small budget."""

import pytest
import torch

from genfast.data import load_digits
from genfast.models import CycleGAN
from genfast.models.cyclegan import split_by_attribute, translation_report


class _Labels:
    """Stand-in for the digit classifier (class keeping is measured in RESULTS.md, not here)."""

    num_classes = 10
    device = torch.device("cpu")

    def __init__(self, labels):
        self.labels = labels

    def predict(self, images):
        return self.labels


def test_translation_moves_thickness():
    (x, y), (xt, yt) = load_digits("train"), load_digits("test")
    xa, ya, da, terc = split_by_attribute(x, y)
    xta, yta, dta, _ = split_by_attribute(xt, yt, terciles=terc)
    assert set(da.tolist()) == {0, 1}
    torch.manual_seed(0)
    model = CycleGAN()
    before = translation_report(model, xta, yta, dta, terc, metric=_Labels(yta))
    info = model.fit(xa, da, steps=800, seed=0)
    after = translation_report(model, xta, yta, dta, terc, metric=_Labels(yta))
    # past the middle of the two tercile cuts, towards the target domain (0.96 measured here)
    assert before["attribute_beyond_median"] < 0.7 < 0.9 < after["attribute_beyond_median"]
    assert info["cycle"] < 0.3  # F(G(a)) comes back near a (L1 per pixel, data range 2)


def test_errors_and_save_load(tmp_path):
    model = CycleGAN()
    with pytest.raises(ValueError, match="domains"):
        model.training_step(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="both domains"):
        model.training_step((torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="direction"):
        model.translate(torch.zeros(2, 1, 8, 8), "a2c")
    with pytest.raises(ValueError, match="attribute"):
        split_by_attribute(torch.zeros(3, 1, 8, 8), torch.zeros(3), "colour")
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    model.save(tmp_path / "cg")
    torch.testing.assert_close(CycleGAN.load(tmp_path / "cg").translate(x), model.translate(x))
