"""Kernel inception distance against torchmetrics' KernelInceptionDistance (same features, one
subset of all rows), DigitMetric.scores, and `genfast eval NAME --metrics fdd,kid,precision-recall`."""

from __future__ import annotations

import json

import pytest
import torch

from genfast.metrics import kernel_inception_distance
from genfast.testing import stable_seed


class _Identity(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_kid_equals_torchmetrics(shift):
    tm = pytest.importorskip("torchmetrics.image.kid")
    seed = stable_seed("kid", shift)
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(150, 12, generator=g)
    fake = torch.randn(150, 12, generator=g) * 1.1 + shift
    m = tm.KernelInceptionDistance(feature=_Identity(), subsets=1, subset_size=150, normalize=False)
    m.update(real, real=True)
    m.update(fake, real=False)
    want = float(m.compute()[0])
    got, std = kernel_inception_distance(real, fake, subsets=1, subset_size=150)
    # torchmetrics sums the kernel matrices in float32 (kernel values ~1): 1e-5 absolute (measured 3e-7)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5) and std == 0.0


def test_kid_grows_with_the_shift_and_is_near_zero_for_one_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    kw = dict(subsets=20, subset_size=200)
    same, _ = kernel_inception_distance(a, b, generator=torch.Generator().manual_seed(1), **kw)
    far, _ = kernel_inception_distance(a, b + 1, generator=torch.Generator().manual_seed(1), **kw)
    assert abs(same) < 0.02 < far


def test_kid_bad_input():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(x, x, subset_size=11)
    with pytest.raises(ValueError, match="widths"):
        kernel_inception_distance(x, torch.randn(10, 5), subset_size=5)
    with pytest.raises(ValueError, match="NaN"):
        kernel_inception_distance(x, x * float("nan"), subset_size=5)
    with pytest.raises(TypeError, match="subsets"):
        kernel_inception_distance(x, x, subsets=1.5, subset_size=5)


def test_eval_metrics_option(tmp_path, capsys):
    from genfast.cli import main

    out = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "3", "--out", str(out), "--no-progress", "--grid-every", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", "vae", "--checkpoint", str(out), "--n", "64", "--json", "--no-progress",
                 "--metrics", "fdd,kid,precision-recall"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("fdd", "kid", "kid_std", "precision", "recall"):
        assert key in r and r[key] == r[key]
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    assert main(["eval", "vae", "--checkpoint", str(out), "--metrics", "fid", "--no-progress"]) == 2
    assert "--metrics" in capsys.readouterr().err
