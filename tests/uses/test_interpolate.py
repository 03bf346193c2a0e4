"""Latent interpolation, traversals, attributes and MIG (genfast.interpolate, genfast.data.attributes)."""

import numpy as np
import pytest
import torch

from genfast.anomaly import train_family
from genfast.cli import main
from genfast.data import load_digits
from genfast.data.attributes import attribute_terciles, digit_attributes, discretize_attributes
from genfast.interpolate import (
    ddim_generate,
    ddim_invert,
    interpolate,
    latent_mig,
    load_image,
    mutual_information_gap,
    save_strip,
    slerp,
    traverse,
)


@pytest.fixture(scope="module")
def vae(digits):
    return train_family("vae", digits[0], steps=300)


def test_flow_interpolation_endpoints_are_the_inputs(digits):
    from genfast.models import RealNVP

    torch.manual_seed(0)
    flow = train_family("realnvp", digits[0], steps=2)  # exactness needs no training
    assert isinstance(flow, RealNVP)
    x0, x1 = digits[1][:1], digits[1][1:2]
    strip = interpolate(flow, x0, x1, steps=5)
    assert strip.shape == (5, 1, 8, 8)
    torch.testing.assert_close(strip[0], x0[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(strip[-1], x1[0], atol=1e-4, rtol=0)
    # the middle is neither endpoint
    assert (strip[2] - x0[0]).abs().max() > 0.1 and (strip[2] - x1[0]).abs().max() > 0.1


def test_vae_interpolation_endpoints_reconstruct(vae, digits):
    x = digits[1][:10]
    strip = interpolate(vae, x[:1], x[1:2], steps=6)
    assert strip.shape == (6, 1, 8, 8)
    # each endpoint is closer to its own input than to the other one
    own = (strip[0] - x[0]).pow(2).sum()
    other = (strip[0] - x[1]).pow(2).sum()
    assert own < other
    torch.testing.assert_close(strip[0], vae.reconstruct(x[:1])[0].clamp(-1, 1), atol=1e-5, rtol=0)


def test_ddim_inversion_round_trip(digits):
    model = train_family("ddpm", digits[0], steps=2)
    x = digits[1][:3]
    z = ddim_invert(model, x, num_steps=20)
    assert z.shape == x.shape and not torch.allclose(z, x)
    back = ddim_generate(model, z, num_steps=20)
    # the ODE's Euler steps are not exactly invertible, but 20 steps come back close
    assert (back - x).pow(2).mean() < 0.05
    strip = interpolate(model, x[:1], x[1:2], steps=3, ddim_steps=10)
    assert strip.shape == (3, 1, 8, 8)


def test_glo_code_fit(digits):
    from genfast.cli.families.zoo_models import build

    model = build("glo", (1, 8, 8), num_examples=len(digits[0]))
    model.fit(digits[0], steps=100)
    strip = interpolate(model, digits[1][:1], digits[1][1:2], steps=4)
    assert strip.shape == (4, 1, 8, 8)


def test_slerp():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid, torch.tensor([[0.5**0.5, 0.5**0.5]]))
    torch.testing.assert_close(slerp(a, a, 0.3), a)
    with pytest.raises(ValueError, match="t must"):
        slerp(a, b, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        slerp(a, torch.zeros(1, 3), 0.5)


def test_traverse_changes_only_one_unit(vae, digits):
    grid = traverse(vae, digits[1][:1], dims=[0, 1], values=(-2, 0, 2))
    assert grid.shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="dims"):
        traverse(vae, digits[1][:1], dims=[99])


def test_attributes_rules():
    img = -torch.ones(3, 1, 8, 8)
    img[0, 0, 1:7, 3] = 1.0  # upright bar: 6 pixels of ink, no slant, box 6 x 1
    for r in range(6):  # '/' leaning right: top at the right
        img[1, 0, 1 + r, 6 - r] = 1.0
    a = digit_attributes(img)
    assert a[0].tolist() == pytest.approx([6.0, 0.0, 6.0])
    assert a[1, 1] > 0.5  # leans right
    assert a[2].tolist() == [0.0, 0.0, 0.0]  # empty image
    terc = attribute_terciles(load_digits("train")[0])
    assert terc.shape == (3, 2) and (terc[:, 0] <= terc[:, 1]).all()
    d = discretize_attributes(digit_attributes(load_digits("train")[0]), terc)
    counts = torch.stack([(d == k).float().mean(0) for k in range(3)])  # [tercile, attribute]
    assert (counts[:, :2] > 0.3).all()  # thickness and slant: a third each
    assert (counts[:, 2] > 0.1).all()  # size is a whole number of pixels: ties make uneven thirds
    with pytest.raises(ValueError, match="images"):
        digit_attributes(torch.zeros(2, 3, 8, 8))


def test_mig_known_cases():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 3, size=(2000, 2))
    codes = np.stack([f[:, 0] + 0.01 * rng.normal(size=2000), f[:, 1] + 0.01 * rng.normal(size=2000),
                      rng.normal(size=2000)], 1)
    assert mutual_information_gap(codes, f)["mig"] > 0.9  # one unit per factor
    entangled = np.stack([f[:, 0] + f[:, 1] * 3, f[:, 0] + f[:, 1] * 3 + 0.01 * rng.normal(size=2000)], 1)
    assert mutual_information_gap(entangled, f)["mig"] < 0.2  # both units carry both factors
    with pytest.raises(ValueError, match="codes"):
        mutual_information_gap(codes[:, :1], f)


def test_latent_mig_runs(vae, digits):
    m = latent_mig(vae, digits[1], reference=digits[0])
    assert 0.0 <= m["mig"] <= 1.0 and m["factors"] == ["thickness", "slant", "size"]


def test_load_image_and_strip(tmp_path, digits):
    x = load_image("digits:5")
    torch.testing.assert_close(x, digits[1][5:6])
    p = save_strip(torch.cat([x, -x]), tmp_path / "s.png")
    back = load_image(str(p.parent / "s.png"), (1, 8, 8))  # whole strip resized: just readable
    assert back.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="index"):
        load_image("digits:99999")
    with pytest.raises(FileNotFoundError):
        load_image(str(tmp_path / "none.png"))


def test_cli_interpolate_and_traverse(vae, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "cache"))
    ck = tmp_path / "vae"
    vae.save(ck)
    out = tmp_path / "strip.png"
    rc = main(["interpolate", "vae", "--checkpoint", str(ck), "--from", "digits:0", "--to", "digits:1", "--steps", "5",
               "--out", str(out), "--no-progress"])
    assert rc == 0 and out.is_file()
    from PIL import Image

    assert Image.open(out).size[0] > Image.open(out).size[1] * 3  # one row
    rc = main(["traverse", "vae", "--checkpoint", str(ck), "--out", str(tmp_path / "t.png"), "--no-progress"])
    assert rc == 0 and "MIG" in capsys.readouterr().out
    assert main(["interpolate", "vae", "--checkpoint", str(ck), "--from", "digits:0", "--to", "x.png",
                 "--no-progress"]) == 2
