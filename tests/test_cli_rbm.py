"""genfast train rbm --ema-decay: the averaged parameters are what the checkpoint holds; bad values
and a dbn name the flag."""

from __future__ import annotations

import torch

from genfast.cli import main


def test_ema_decay_flag(tmp_path, capsys):
    plain, avg = tmp_path / "plain", tmp_path / "avg"
    common = ["--epochs", "2", "--hidden", "8", "--persistent", "--no-progress"]
    assert main(["train", "rbm", *common, "--out", str(plain)]) == 0
    assert main(["train", "rbm", *common, "--ema-decay", "0.9", "--out", str(avg)]) == 0
    from genfast.training import from_pretrained

    a, b = from_pretrained(plain), from_pretrained(avg)
    assert a.weight.shape == b.weight.shape == (8, 64)
    assert not torch.equal(a.weight, b.weight)  # the same run, averaged: other weights
    capsys.readouterr()
    assert main(["train", "rbm", *common, "--ema-decay", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert "--ema-decay" in capsys.readouterr().err
    assert main(["train", "dbn", "--epochs", "1", "--hidden", "8,4", "--ema-decay", "0.9",
                 "--out", str(tmp_path / "dbn")]) == 2
    assert "--ema-decay" in capsys.readouterr().err
