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
