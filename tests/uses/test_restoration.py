"""Restoration (genfast.restoration): corruptions, PSNR/SSIM, RED-Net, the DDPM prior."""

import pytest
import torch
from torch.nn import functional as F

from genfast.data import load_digits
from genfast.restoration import (
    TASKS,
    RedNet,
    ddpm_restore,
    degrade,
    fit_restorer,
    format_restoration_table,
    operator_matrix,
    psnr,
    ssim,
)


@pytest.fixture(scope="module")
def tiny_ddpm(digits):
    from genfast.models import DDPM

    torch.manual_seed(0)
    model = DDPM(image_size=8, base_channels=8, channel_mult=(1, 2), num_heads=2)
    model.fit(digits[0], steps=2, batch_size=16, progress=False)
    return model.eval()


@pytest.mark.parametrize("task", TASKS)
def test_degrade(task, digits):
    x = digits[1][:16]
    shown, info = degrade(x, task, seed=1)
    assert shown.shape == x.shape and shown.min() >= -1 and shown.max() <= 1
    assert psnr(shown, x).mean() < 40  # really corrupted
    s2, _ = degrade(x, task, seed=1)
    assert torch.equal(shown, s2)
    if task == "superres":
        assert info["y"].shape == (16, 1, 4, 4)
        torch.testing.assert_close(shown, F.interpolate(F.avg_pool2d(x + 1, 2), scale_factor=2) - 1)
    if task == "inpaint":
        assert (info["mask"] == 0).flatten(1).sum(1).eq(16).all()


@pytest.mark.parametrize("task", ["superres", "deblur", "denoise"])
def test_operator_matrix_matches_the_operator(task, digits):
    x = digits[1][:4]
    a = operator_matrix(task)
    _, info = degrade(x, task, seed=0)
    if task != "denoise":
        torch.testing.assert_close(((x + 1).double().flatten(1) @ a.T).float(), info["y"].flatten(1))
    with pytest.raises(ValueError, match="inpaint"):
        operator_matrix("inpaint")


def test_psnr_ssim():
    x = load_digits("test")[0][:8]
    assert (psnr(x, x) == 100).all()
    torch.testing.assert_close(ssim(x, x), torch.ones(8))
    a = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    b = x + 0.4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert (psnr(a, x) > psnr(b, x)).all() and (ssim(a, x) > ssim(b, x)).all()
    # psnr: 10 log10(4 / mse) by hand
    y = torch.zeros(1, 1, 8, 8)
    assert float(psnr(y + 0.2, y)) == pytest.approx(10 * torch.log10(torch.tensor(4 / 0.04)).item(), rel=1e-5)
    with pytest.raises(ValueError, match="window"):
        ssim(x, x, window=4)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:2])


def test_ssim_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    x = load_digits("test")[0][:8]
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    ours = ssim(y, x, window=3, gaussian=False, padding="reflect").mean()
    ref = tm.structural_similarity_index_measure(y, x, gaussian_kernel=False, kernel_size=3, data_range=2.0)
    assert float(ours) == pytest.approx(float(ref), abs=1e-5)


def test_rednet_shapes_and_skips():
    x = torch.zeros(2, 1, 8, 8)
    assert RedNet(1, 8, 4, skips=True)(x).shape == x.shape
    assert RedNet(1, 8, 3, skips=False)(x).shape == x.shape
    with pytest.raises(ValueError, match="depth"):
        RedNet(depth=1)


@pytest.mark.parametrize("task", ["denoise", "inpaint"])
def test_rednet_beats_the_corrupted_input(task, digits):
    torch.manual_seed(0)
    net = RedNet(1, 16, 4, skips=True)
    fit_restorer(net, digits[0], task, steps=300)
    shown, _ = degrade(digits[1], task, seed=7)
    with torch.no_grad():
        out = net(shown).clamp(-1, 1)
    assert psnr(out, digits[1]).mean() > psnr(shown, digits[1]).mean() + 1.0


@pytest.mark.parametrize("task", ["superres", "deblur"])
def test_ddnm_output_is_data_consistent(task, tiny_ddpm, digits):
    x = digits[1][:6]
    shown, info = degrade(x, task)
    out = ddpm_restore(tiny_ddpm, shown, info, task, num_steps=5, clip=False)
    assert out.shape == x.shape
    if task == "superres":  # A A^+ = I: the restored image pools back to the observation exactly
        torch.testing.assert_close(F.avg_pool2d(out + 1, 2), info["y"], atol=2e-5, rtol=0)
    clipped = ddpm_restore(tiny_ddpm, shown, info, task, num_steps=5)
    assert clipped.min() >= -1 and clipped.max() <= 1


def test_repaint_keeps_known_pixels(tiny_ddpm, digits):
    x = digits[1][:6]
    shown, info = degrade(x, "inpaint")
    out = ddpm_restore(tiny_ddpm, shown, info, "inpaint", num_steps=4, resample=2)
    m = info["mask"].bool()
    torch.testing.assert_close(out[m], x[m])
    out_d = ddpm_restore(tiny_ddpm, *degrade(x, "denoise"), "denoise", num_steps=10)
    assert out_d.shape == x.shape
    mean = ddpm_restore(tiny_ddpm, shown, info, "inpaint", num_steps=4, num_samples=3)
    torch.testing.assert_close(mean[m], x[m])  # every sample keeps them, so does the mean
    one = ddpm_restore(tiny_ddpm, shown, info, "inpaint", num_steps=4)
    assert not torch.equal(mean, one)
    with pytest.raises(ValueError, match="num_samples"):
        ddpm_restore(tiny_ddpm, shown, info, "inpaint", num_samples=0)


def test_bad_inputs(tiny_ddpm, digits):
    with pytest.raises(ValueError, match="task"):
        degrade(digits[1][:2], "colorize")
    with pytest.raises(TypeError, match="images"):
        degrade(torch.zeros(2, 1, 8, 8, dtype=torch.long), "denoise")
    with pytest.raises(ValueError, match="info"):
        ddpm_restore(tiny_ddpm, digits[1][:2], {}, "denoise")
    with pytest.raises(ValueError, match="num_steps"):
        ddpm_restore(tiny_ddpm, *degrade(digits[1][:2], "denoise"), "denoise", num_steps=1)
    with pytest.raises(ValueError, match="steps"):
        fit_restorer(RedNet(), digits[0], "denoise", steps=0)


def test_format_table():
    md = format_restoration_table([{"task": "denoise", "method": "x", "psnr": 20.0, "ssim": 0.5, "accuracy": 0.9,
                                    "seconds": 1.0}])
    assert "| denoise | x | 20.00 | 0.500 | 0.900 | 1 |" in md


def test_cli_restoration_table(tmp_path, capsys, monkeypatch):
    from genfast.cli import main

    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "cache"))
    md = tmp_path / "R.md"
    rc = main(["restoration-table", "--tasks", "denoise", "--steps", "5", "--no-ddpm", "--n-test", "20",
               "--out", str(md), "--no-progress"])
    assert rc == 0
    text = md.read_text()
    assert "## Restoration (genfast restoration-table)" in text and "| denoise | RED-Net (skips) |" in text
    assert main(["restoration-table", "--tasks", "colorize", "--no-progress"]) == 2
