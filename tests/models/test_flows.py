"""genfast.models flows (NICE, RealNVP, Glow, MAF): exact inverse, change of variables against an
explicit Jacobian, bits/dim, training, sampling, save/load, bad inputs."""

from __future__ import annotations

import io
import math

import pytest
import torch

from genfast.models import MAF, NICE, Glow, RealNVP
from genfast.nn.flows import Split
from genfast.testing import perturb_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


MODELS = {
    "glow": lambda shape=(1, 8, 8): Glow(shape, num_levels=2, num_steps=2, hidden=16),
    "realnvp": lambda shape=(1, 8, 8): RealNVP(shape, num_scales=2, hidden=16),
    "nice": lambda shape=(1, 8, 8): NICE(shape, num_layers=4, hidden=32),
    "maf": lambda shape=(1, 8, 8): MAF(shape, num_layers=2, hidden=(32, 32)),
}


def _perturb(module, scale=0.05, seed=0):
    return perturb_parameters(module, scale, seed)


def _images(n, shape=(1, 8, 8), levels=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n, *shape), generator=gen).float() / (levels - 1) * 2 - 1


def _initialised(name, n):
    """Model ``name`` with its actnorm initialised (by a first encode) on ``n`` dequantised
    digits and its weights perturbed off the identity; and those digits."""
    model = MODELS[name]()
    x = FlowDataHelper.dequantized(n)
    model.encode(x)
    _perturb(model)
    return model, x


@pytest.mark.parametrize("name", MODELS)
def test_decode_inverts_encode(name):
    model, x = _initialised(name, 8)
    zs, logdet, log_pz = model.encode(x)
    assert logdet.shape == (8,) and log_pz.shape == (8,)
    torch.testing.assert_close(model.decode(zs), x, rtol=1e-4, atol=1e-4)
    model.double()
    zs64, _, _ = model.encode(x.double())
    torch.testing.assert_close(model.decode(zs64), x.double(), rtol=1e-10, atol=1e-10)


class FlowDataHelper:
    @staticmethod
    def dequantized(n, shape=(1, 8, 8), seed=0):
        return Glow.dequantize(_images(n, shape, seed=seed), 17, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name,shape",
    [
        ("glow", (1, 4, 4)),
        ("realnvp", (1, 4, 4)),
        ("nice", (1, 2, 3)),
        ("maf", (1, 2, 3)),
        ("glow", (2, 4, 4)),
    ],
)
def test_log_prob_is_change_of_variables(name, shape):
    """log p(x) == log p_Z(f(x)) + log|det J_f(x)| with J from autograd, in float64."""
    model = MODELS[name](shape).double()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
    model.encode(x)
    _perturb(model, 0.1)
    d = math.prod(shape)
    for i in range(3):
        xi = x[i : i + 1]

        def flat(v):
            zs, _, _ = model.encode(v.reshape(1, *shape))
            return torch.cat([z.reshape(-1) for z in zs])

        jac = torch.autograd.functional.jacobian(flat, xi.reshape(-1)).reshape(d, d)
        zs, logdet, log_pz = model.encode(xi)
        torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac)[1], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(model.log_prob(xi)[0], log_pz[0] + logdet[0])


def test_glow_log_pz_sums_the_split_and_top_priors():
    model = _perturb(MODELS["glow"]((1, 4, 4)).double(), 0.1)
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _, _, log_pz = model.encode(x)
    h, expected = x, torch.zeros(2, dtype=torch.float64)
    for layer in model.layers:
        if isinstance(layer, Split):
            h, z, _ = layer(h)
            mean, log_std = layer.prior_params(h)
            expected += torch.distributions.Normal(mean, log_std.exp()).log_prob(z).flatten(1).sum(1)
        else:
            h, _ = layer(h)
    mean, log_std = model.top_prior_params(2, x.device, x.dtype)
    expected += torch.distributions.Normal(mean, log_std.exp()).log_prob(h).flatten(1).sum(1)
    torch.testing.assert_close(log_pz, expected)


@pytest.mark.parametrize("name", MODELS)
def test_bits_per_dim(name):
    model = MODELS[name]()
    images = _images(16)
    bpd = model.bits_per_dim(images, num_bins=17, generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (16,) and torch.isfinite(bpd).all()
    x = model.dequantize(images, 17, torch.Generator().manual_seed(0))
    expected = -(model.log_prob(x) + 64 * math.log(2 / 17)) / (64 * math.log(2))
    torch.testing.assert_close(bpd, expected)
    # dequantised data stays in its bin
    x_int = torch.round((images + 1) / 2 * 16)
    assert torch.all((x + 1) / 2 * 17 >= x_int) and torch.all((x + 1) / 2 * 17 < x_int + 1)


@pytest.mark.parametrize("name", MODELS)
def test_training_reduces_nll(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    images = _images(64, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = model.bits_per_dim(images, 17, torch.Generator().manual_seed(9)).mean().item()
    for _ in range(30):
        loss = model.bits_per_dim(images, 17, gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = model.bits_per_dim(images, 17, torch.Generator().manual_seed(9)).mean().item()
    assert end < start - 0.05, f"{name}: {start:.3f} -> {end:.3f} bits/dim"


@pytest.mark.parametrize("name", MODELS)
def test_sample_shape_range_temperature(name):
    model = _perturb(MODELS[name]())
    s = model.sample(5, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.dtype == torch.float32
    assert s.min() >= -1 and s.max() <= 1
    assert model.sample(0).shape == (0, 1, 8, 8)
    a = model.sample(3, generator=torch.Generator().manual_seed(1))
    b = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    if name != "nice":  # Gaussian priors: a tiny temperature collapses the samples to the mode
        c = model.sample(4, temperature=1e-6, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(c, c[:1].expand_as(c), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_roundtrip(name):
    model, x = _initialised(name, 4)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = MODELS[name]()
    fresh.load_state_dict(torch.load(buf))
    torch.testing.assert_close(fresh.log_prob(x), model.log_prob(x))


def test_bad_inputs():
    model = MODELS["glow"]()
    with pytest.raises(ValueError, match="x"):
        model.log_prob(torch.randn(2, 1, 4, 4))
    with pytest.raises(TypeError, match="x"):
        model.log_prob(torch.zeros(2, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="n"):
        model.sample(-1)
    with pytest.raises(ValueError, match="divisible"):
        Glow((1, 6, 6), num_levels=2)
    with pytest.raises(ValueError, match="image_shape"):
        NICE((8, 8))
    with pytest.raises(ValueError, match="num_bins"):
        model.bits_per_dim(_images(2), num_bins=1)
    with pytest.raises(ValueError, match="prior"):
        NICE((1, 2, 2), prior="cauchy")


def test_cli_train_sample_eval(tmp_path, capsys):
    """genfast train/sample/eval of a flow on tiny settings, through the command line entry point."""
    from genfast.cli import main

    ck = tmp_path / "nice"
    assert main(
        [
            "train",
            "nice",
            "--steps",
            "3",
            "--layers",
            "2",
            "--hidden",
            "16",
            "--out",
            str(ck),
            "--no-progress",
        ]
    ) in (0, None)
    assert (ck / "config.json").is_file() and (ck / "model.safetensors").is_file()
    out = tmp_path / "grid.png"
    assert main(
        ["sample", "nice", "--checkpoint", str(ck), "--n", "4", "--out", str(out), "--no-progress"]
    ) in (0, None)
    assert out.is_file()
    assert main(["eval", "nice", "--checkpoint", str(ck), "--json", "--no-progress"]) in (0, None)
    assert '"bits_per_dim"' in capsys.readouterr().out
