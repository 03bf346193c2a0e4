"""AE, denoising AE, contractive AE, VAE, beta-VAE, WAE (MMD, GAN), GLO: training, sampling,
closed forms against autograd and Monte Carlo, checkpoints, bad inputs."""

import math

import pytest
import torch

from genfast.losses import gaussian_kl
from genfast.models import AE, GLO, VAE, WAE, WAEGAN, BetaVAE, ContractiveAE, DenoisingAE
from genfast.models._zoo_base import ZooModel
from genfast.models.autoencoders import sigmoid_jacobian_frobenius

pytestmark = pytest.mark.usefixtures("flush_denormal")


def _losses(model, images, labels, steps, key="loss", batch_size=64, seed=0):
    hist = []
    model.fit(images, labels, steps=steps, batch_size=batch_size, seed=seed, callback=lambda _s, out: hist.append(out))
    assert len(hist) == steps and all(isinstance(v, float) for v in hist[-1].values())
    return [h[key] for h in hist]


def _falls(values, k=10, factor=0.9):
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    assert last < factor * first, f"loss did not fall: first {k} mean {first:.4f}, last {k} mean {last:.4f}"


CASES = [
    ("ae", lambda n: AE(), "loss"),
    ("dae", lambda n: DenoisingAE(noise_std=0.3), "loss"),
    ("cae", lambda n: ContractiveAE(), "loss"),
    ("cae_deep", lambda n: ContractiveAE(hidden=(32,), latent_dim=8), "loss"),
    ("vae", lambda n: VAE(), "loss"),
    ("beta_vae", lambda n: BetaVAE(beta=2.0), "loss"),
    ("beta_vae_capacity", lambda n: BetaVAE(capacity_max=5.0, capacity_steps=40, gamma=10.0), "recon"),
    ("wae_mmd_imq", lambda n: WAE(kernel="imq"), "loss"),
    ("wae_mmd_rbf", lambda n: WAE(kernel="rbf"), "loss"),
    ("wae_gan", lambda n: WAEGAN(), "recon"),
    ("glo", lambda n: GLO(num_examples=n), "loss"),
]


@pytest.mark.parametrize("name,make,key", CASES, ids=[c[0] for c in CASES])
def test_trains_and_samples(name, make, key, digits):
    x, y = digits
    torch.manual_seed(0)
    model = make(len(x))
    _falls(_losses(model, x, y, steps=80, key=key))
    s = model.sample(10, generator=torch.Generator().manual_seed(1))
    assert s.shape == (10, 1, 8, 8) and s.dtype == torch.float32
    assert torch.isfinite(s).all() and s.min() >= -1 and s.max() <= 1
    assert torch.equal(s, model.sample(10, generator=torch.Generator().manual_seed(1)))
    assert model.sample(0).shape == (0, 1, 8, 8)
    if hasattr(model, "encode"):
        z = model.encode(x[:5])
        assert z.shape == (5, model.latent_dim)
        assert model.decode(z).shape == (5, 1, 8, 8)


def test_works_on_28x28_and_rgb():
    torch.manual_seed(0)
    for shape in ((1, 28, 28), (3, 12, 12)):
        x = torch.rand(16, *shape) * 2 - 1
        for model in (AE(shape, hidden=(32,)), VAE(shape, hidden=(32,)), WAE(shape, hidden=(32,)),
                      GLO(16, shape, hidden=(32,))):
            out = model.training_step((x, None, torch.arange(16)))
            assert math.isfinite(out["loss"])
            assert model.sample(3).shape == (3, *shape)


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.5
    n = 200_000
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(n, 3, 4, generator=g, dtype=torch.float64)
    log_q = (-0.5 * ((z - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    terms = log_q - log_p  # [n, 3]
    mc, se = terms.mean(0), terms.std(0) / math.sqrt(n)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (3,)
    assert torch.all((kl - mc).abs() < 4 * se), (kl, mc, se)
    assert torch.allclose(gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))


def test_elbo_is_negative_vae_loss_and_bounded(digits):
    x, _ = digits
    torch.manual_seed(0)
    vae = VAE()
    vae.fit(x, steps=30)
    e = vae.elbo(x[:50], num_samples=4, generator=torch.Generator().manual_seed(0))
    assert e.shape == (50,) and torch.isfinite(e).all()
    assert torch.allclose(vae.likelihood(x[:50]).mean(), e.mean(), rtol=0.2)
    # ELBO = -(recon + KL) with beta = 1
    torch.manual_seed(3)
    nll, kl, _ = vae._terms(vae._check_images(x[:8]))
    torch.manual_seed(3)
    assert torch.allclose(vae.elbo(x[:8]), -(nll + kl).detach(), atol=1e-4)


def test_beta_vae_capacity_schedule():
    m = BetaVAE(capacity_max=10.0, capacity_steps=4, gamma=1.0)
    caps = []
    for _ in range(6):
        caps.append(m.training_step(torch.rand(8, 1, 8, 8) * 2 - 1)["capacity"])
    assert caps == [0.0, 2.5, 5.0, 7.5, 10.0, 10.0]
    assert BetaVAE().capacity == 0.0


def test_contractive_closed_form_matches_autograd_jacobian():
    torch.manual_seed(0)
    m = ContractiveAE(latent_dim=6)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    closed = m.contractive_penalty(x, method="closed_form")
    auto = m.contractive_penalty(x, method="autograd")
    lin = m.encoder[1][0]
    ref = torch.stack([
        torch.autograd.functional.jacobian(lambda v: torch.sigmoid(lin(v)), xi).pow(2).sum()
        for xi in x.flatten(1)
    ])
    assert torch.allclose(closed, ref, rtol=1e-5, atol=1e-7)
    assert torch.allclose(auto, ref, rtol=1e-5, atol=1e-7)
    # the closed form is differentiable in the weights, like the autograd one
    (gc,) = torch.autograd.grad(closed.sum(), lin.weight)
    (ga,) = torch.autograd.grad(m.contractive_penalty(x, method="autograd").sum(), lin.weight)
    assert torch.allclose(gc, ga, rtol=1e-4, atol=1e-7)
    deep = ContractiveAE(hidden=(16,), latent_dim=4)
    with pytest.raises(ValueError, match="closed_form"):
        deep.contractive_penalty(x, method="closed_form")
    ref_deep = torch.stack([torch.autograd.functional.jacobian(
        lambda v: deep.encoder(v.view(1, 1, 8, 8))[0], xi).pow(2).sum() for xi in x.flatten(1)])
    assert torch.allclose(deep.contractive_penalty(x), ref_deep, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="x"):
        sigmoid_jacobian_frobenius(torch.zeros(2, 3), torch.zeros(4, 5), torch.zeros(4))


def test_glo_codes_stay_in_unit_ball_and_need_indices(digits):
    x, _ = digits
    m = GLO(num_examples=len(x), lr_codes=0.5)
    m.fit(x, steps=5)
    assert (m.codes.weight.norm(dim=1) <= 1 + 1e-5).all()
    with pytest.raises(ValueError, match="indices"):
        m.training_step(x[:4])
    with pytest.raises(ValueError, match="indices"):
        m.training_step((x[:2], None, torch.tensor([0, len(x)])))


def test_latent_gaussian_fitted_after_fit(digits):
    x, _ = digits
    torch.manual_seed(0)
    m = AE()
    m.fit(x, steps=20)
    z = m.encode(x)
    assert torch.allclose(m.latent_mean, z.mean(0), atol=1e-4)
    s = m.encode(m.sample(2000, generator=torch.Generator().manual_seed(0)))
    assert (s.mean(0) - z.mean(0)).abs().max() < 0.5 * z.std(0).max()


@pytest.mark.parametrize("make", [
    lambda: AE(latent_dim=4), lambda: DenoisingAE(noise_std=0.2), lambda: ContractiveAE(hidden=(8,)),
    lambda: VAE(latent_dim=3), lambda: BetaVAE(capacity_max=3.0), lambda: WAE(kernel="rbf"), lambda: WAEGAN(),
    lambda: GLO(num_examples=20, latent_dim=5),
], ids=["ae", "dae", "cae", "vae", "beta_vae", "wae", "wae_gan", "glo"])
def test_save_load_round_trip(make, tmp_path):
    torch.manual_seed(0)
    m = make()
    x = torch.rand(20, 1, 8, 8) * 2 - 1
    for _ in range(3):
        m.training_step((x, None, torch.arange(20)))
    m.eval()
    m.save(tmp_path / "ck", extra={"data": "digits"})
    for loader in (type(m).load, ZooModel.load):
        m2 = loader(tmp_path / "ck")
        assert type(m2) is type(m) and m2.config == m.config and m2.step_count == 3
        assert m2.training_info["extra"] == {"data": "digits"}
        for k, v in m.state_dict().items():
            assert torch.equal(v, m2.state_dict()[k]), k
        g = torch.Generator().manual_seed(5)
        assert torch.equal(m2.sample(4, generator=g), m.sample(4, generator=torch.Generator().manual_seed(5)))
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in (tmp_path / "ck").iterdir())


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        AE.load(tmp_path / "nothing")
    AE().save(tmp_path / "ae")
    with pytest.raises(ValueError, match="not a VAE"):
        VAE.load(tmp_path / "ae")
    (tmp_path / "ae" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        AE.load(tmp_path / "ae")


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent_dim"):
        AE(latent_dim=0)
    with pytest.raises(TypeError, match="latent_dim"):
        VAE(latent_dim=2.5)
    with pytest.raises(ValueError, match="image_shape"):
        AE(image_shape=(8, 8))
    with pytest.raises(ValueError, match="noise_std"):
        DenoisingAE(noise_std=-1)
    with pytest.raises(ValueError, match="penalty"):
        WAE(penalty="wgan")
    with pytest.raises(ValueError, match="kernel"):
        WAE(kernel="laplace")
    with pytest.raises(ValueError, match="method"):
        ContractiveAE().contractive_penalty(torch.zeros(1, 1, 8, 8), method="fd")
    with pytest.raises(ValueError, match="beta"):
        BetaVAE(beta=-1)
    m = AE()
    with pytest.raises(ValueError, match="batch"):
        m.training_step(torch.zeros(4, 1, 28, 28))
    with pytest.raises(TypeError, match="batch"):
        m.training_step(torch.zeros(4, 1, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="batch"):
        m.training_step("images")
    with pytest.raises(ValueError, match="n must"):
        m.sample(-1)
    with pytest.raises(TypeError, match="generator"):
        m.sample(2, generator=0)
    with pytest.raises(ValueError, match="z must"):
        m.decode(torch.zeros(2, 3))
