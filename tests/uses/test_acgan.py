"""AC-GAN (genfast.models.acgan) on tiny budgets."""

import pytest
import torch

from genfast.data import load_digits
from genfast.models import ACGAN
from genfast.models.acgan import conditional_accuracy
from tests.uses._stand_in import HeadClassifier


def test_generated_digits_carry_their_class():
    x, y = load_digits("train")
    torch.manual_seed(0)
    model = ACGAN()
    untrained = conditional_accuracy(model, HeadClassifier(model, model.class_logits), per_class=20)
    info = model.fit(x, y, steps=150, seed=0)
    assert info["cls_real"] < 1.0  # log 10 = 2.3 at chance
    trained = conditional_accuracy(model, HeadClassifier(model, model.class_logits), per_class=20)
    assert trained > 0.8 and untrained < 0.5


def test_save_load_and_errors(tmp_path):
    model = ACGAN()
    x = model.sample(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 1, 8, 8)
    model.save(tmp_path / "ac")
    torch.testing.assert_close(ACGAN.load(tmp_path / "ac").sample(10, generator=torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match="labels"):
        model.training_step(torch.zeros(4, 1, 8, 8))
    with pytest.raises(TypeError, match="ACGAN"):
        conditional_accuracy(torch.nn.Linear(1, 1))


def _class_spread(model, x, y) -> float:
    """Per-pixel spread over z within each class of 20 samples, over the data's within a class."""
    imgs = model.sample(200, generator=torch.Generator().manual_seed(1), labels=torch.arange(10).repeat_interleave(20))
    real = torch.stack([x[y == c].flatten(1).std(dim=0).mean() for c in range(10)]).mean()
    return float(imgs.view(10, 20, -1).std(dim=1).mean() / real)


def test_mode_seeking_keeps_each_class_diverse():
    """400 steps, seeds 0-2: 0.10-0.11 without the mode-seeking term (each class collapses onto
    a few images), 0.96-1.05 with the default weight 0.1."""
    x, y = load_digits("train")
    spreads = {}
    for weight in (0.0, 0.1):
        torch.manual_seed(0)
        model = ACGAN(mode_seeking_weight=weight)
        info = model.fit(x, y, steps=400, seed=0)
        assert (info["mode_seeking"] > 0) == (weight > 0)
        spreads[weight] = _class_spread(model, x, y)
    assert spreads[0.0] < 0.4 and spreads[0.1] > 0.6
    assert ACGAN().mode_seeking_weight == 0.1
