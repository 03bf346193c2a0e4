"""genfast.losses against naive reference formulas: MMD (IMQ multi-scale, RBF; unbiased and
biased), the WGAN-GP gradient penalty, Gram matrices and the style loss, the contextual loss,
the perceptual loss and its feature extractor; bad inputs."""

import math

import pytest
import torch
from torch import nn

from genfast.losses import (
    IMQ_SCALES,
    ContextualLoss,
    FeatureExtractor,
    PerceptualLoss,
    StyleLoss,
    contextual_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    gram_matrix,
    mmd,
    mmd_kernel,
    mode_seeking_loss,
    perceptual_loss,
    style_loss,
)


# ----------------------------------------------------------------------------- MMD
def _naive_mmd(x, y, kernel, scales, c, unbiased):
    """Textbook estimator with the full [n, m, D] difference tensor (Gretton et al. 2012 eqs. 3, 5)."""

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum((c * s) / (c * s + d2) if kernel == "imq" else torch.exp(-d2 / (c * s)) for s in scales)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    if unbiased:
        return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("kernel,scales", [("imq", None), ("rbf", None), ("rbf", (0.5, 1.0, 2.0)), ("imq", (1.0,))])
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("n,m,d", [(2, 2, 1), (17, 9, 3), (64, 70, 8)])
def test_mmd_matches_naive(kernel, scales, unbiased, n, m, d):
    g = torch.Generator().manual_seed(n + m + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64) * 1.5 + 0.3
    ref = _naive_mmd(x, y, kernel, scales or (IMQ_SCALES if kernel == "imq" else (1.0,)), 2.0 * d, unbiased)
    for chunk in (1, 7, 1024):
        got = mmd(x, y, kernel=kernel, scales=scales, unbiased=unbiased, chunk_size=chunk)
        assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12), (chunk, got, ref)


def test_mmd_float32_gradient_and_bandwidth():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, requires_grad=True)
    y = torch.randn(30, 5, generator=g)
    ref = _naive_mmd(x.detach().double(), y.double(), "rbf", (1.0,), 3.0, True)
    got = mmd(x, y, kernel="rbf", bandwidth=3.0)
    assert abs(got.item() - ref.item()) < 1e-5  # float32 distance expansion, measured ~1e-7
    got.backward()
    xd = x.detach().double().requires_grad_(True)
    _naive_mmd(xd, y.double(), "rbf", (1.0,), 3.0, True).backward()
    assert torch.allclose(x.grad.double(), xd.grad, atol=1e-5)
    # same distribution: the unbiased estimate is near 0; a shifted one is clearly positive
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    assert abs(mmd(a, b).item()) < 0.1 * mmd(a, b + 1.0).item()


def test_mmd_kernel_values():
    d2 = torch.tensor([0.0, 1.0, 4.0])
    assert torch.allclose(mmd_kernel(d2, "imq", scales=(1.0,), bandwidth=2.0), 2.0 / (2.0 + d2))
    assert torch.allclose(mmd_kernel(d2, "rbf", scales=(1.0, 2.0), bandwidth=1.0), torch.exp(-d2) + torch.exp(-d2 / 2))


def test_mmd_bad_inputs():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same D"):
        mmd(x, torch.randn(4, 2))
    with pytest.raises(ValueError, match="x must be"):
        mmd(torch.randn(4), x)
    with pytest.raises(TypeError, match="y must be a floating"):
        mmd(x, torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, x, kernel="laplace")
    with pytest.raises(ValueError, match="scales"):
        mmd(x, x, scales=(1.0, -1.0))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        mmd(x[:1], x)
    with pytest.raises(ValueError, match="chunk_size"):
        mmd(x, x, chunk_size=0)


# ----------------------------------------------------------------------------- GAN losses
class _Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def test_gradient_penalty_matches_per_example_reference():
    torch.manual_seed(0)
    critic = _Critic().double()
    real = torch.randn(6, 1, 5, 5, dtype=torch.float64)
    fake = torch.randn(6, 1, 5, 5, dtype=torch.float64)
    eps = torch.rand(6, dtype=torch.float64)
    ref = 0.0
    for i in range(6):  # one example at a time: grad of D at x_hat_i, (||g|| - 1)^2
        xi = (eps[i] * real[i] + (1 - eps[i]) * fake[i])[None].requires_grad_(True)
        (gi,) = torch.autograd.grad(critic(xi).sum(), xi)
        ref = ref + (gi.norm() - 1) ** 2 / 6
    got = gradient_penalty(critic, real, fake, eps=eps)
    assert torch.allclose(got, ref, rtol=1e-10)
    # differentiable in the critic's parameters (double backprop), like the reference built with create_graph
    (g_got,) = torch.autograd.grad(got, critic.net[0].weight)
    assert torch.isfinite(g_got).all() and g_got.abs().sum() > 0
    # random eps from a generator is reproducible
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="eps"):
        gradient_penalty(critic, real, fake, eps=torch.rand(5))
    with pytest.raises(ValueError, match="real and fake"):
        gradient_penalty(critic, real, fake[:3])


def test_gan_losses_match_formulas():
    r, f = torch.randn(10), torch.randn(10)
    dr, df = torch.sigmoid(r), torch.sigmoid(f)
    assert torch.allclose(discriminator_loss(r, f), -(torch.log(dr).mean() + torch.log(1 - df).mean()), atol=1e-6)
    assert torch.allclose(generator_loss(f), -torch.log(df).mean(), atol=1e-6)
    assert math.isclose(discriminator_loss(torch.zeros(3), torch.zeros(3)).item(), 2 * math.log(2), rel_tol=1e-6)


# ----------------------------------------------------------------------------- Gram / style
def test_gram_matrix_matches_definition():
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    g = gram_matrix(f)
    ref = torch.zeros(2, 3, 3, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                ref[b, i, j] = (f[b, i] * f[b, j]).sum() / (3 * 4 * 5)
    assert torch.allclose(g, ref)
    assert torch.allclose(gram_matrix(f, normalize=False), ref * 60)
    assert torch.allclose(gram_matrix(f.reshape(2, 3, 20)), ref)


def test_style_loss_matches_definition():
    fx = [torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 5, 2, 2, dtype=torch.float64)]
    fy = [torch.randn(1, 3, 6, 6, dtype=torch.float64), torch.randn(1, 5, 3, 3, dtype=torch.float64)]
    w = (1.0, 0.5)
    ref = sum(wl * ((gram_matrix(a) - gram_matrix(b)) ** 2).sum((1, 2)).mean() for wl, a, b in zip(w, fx, fy))
    assert torch.allclose(style_loss(fx, fy, w), ref)
    assert style_loss(fx[0], fx[0]).item() == 0.0
    with pytest.raises(ValueError, match="weights"):
        style_loss(fx, fy, (1.0,))
    with pytest.raises(ValueError, match="features"):
        gram_matrix(torch.randn(3, 4))


# ----------------------------------------------------------------------------- contextual
def _naive_contextual(x, y, h, eps):
    """Mechrez et al. 2018 eqs. 1-5, one image at a time, plain loops over i, j."""
    losses = []
    for b in range(x.shape[0]):
        xs = x[b].reshape(x.shape[1], -1).T  # [N, C]
        ys = y[b].reshape(y.shape[1], -1).T  # [M, C]
        mu = ys.mean(0)
        xs = [(v - mu) / (v - mu).norm() for v in xs]
        ys = [(v - mu) / (v - mu).norm() for v in ys]
        n, m = len(xs), len(ys)
        d = [[1 - float(xs[i] @ ys[j]) for j in range(m)] for i in range(n)]
        cx = []
        for i in range(n):
            dmin = min(d[i])
            w = [math.exp((1 - d[i][j] / (dmin + eps)) / h) for j in range(m)]
            cx.append([wj / sum(w) for wj in w])
        score = sum(max(cx[i][j] for i in range(n)) for j in range(m)) / m
        losses.append(-math.log(score))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("h", [0.1, 0.5, 1.0])
def test_contextual_loss_matches_definition(h):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    y = torch.randn(2, 4, 2, 3, generator=g, dtype=torch.float64)
    got = contextual_loss(x, y, h=h)
    assert math.isclose(got.item(), _naive_contextual(x, y, h, 1e-5), rel_tol=1e-9)
    assert got.item() > 0
    # identical feature sets are the best match there is
    assert contextual_loss(y, y, h=h).item() < got.item()
    with pytest.raises(ValueError, match="h must"):
        contextual_loss(x, y, h=0.0)
    with pytest.raises(ValueError, match="share B and C"):
        contextual_loss(x, y[:, :3])


# ----------------------------------------------------------------------------- perceptual
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 2))

    def forward(self, x):
        return self.head(self.conv2(self.act(self.conv1(x))))


def test_feature_extractor_and_perceptual_loss():
    torch.manual_seed(0)
    net = _Net()
    fe = FeatureExtractor(net, ["conv1", "conv2", "head.1"])
    x, y = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    fx = fe(x)
    assert list(fx) == ["conv1", "conv2", "head.1"]
    assert fx["conv1"].shape == (2, 3, 8, 8) and fx["conv2"].shape == (2, 4, 4, 4) and fx["head.1"].shape == (2, 2)
    assert torch.allclose(fx["conv1"], net.conv1(x))
    assert not any(p.requires_grad for p in net.parameters())
    fy = fe(y)
    ref = sum(w * (fx[k] - fy[k]).pow(2).mean() for k, w in zip(fx, (1.0, 2.0, 0.5)))
    assert torch.allclose(perceptual_loss(fx, fy, (1.0, 2.0, 0.5)), ref)
    l1 = perceptual_loss(fx["conv1"], fy["conv1"], criterion="l1")
    assert torch.allclose(l1, (fx["conv1"] - fy["conv1"]).abs().mean())
    # the module form: gradients reach the input, not the frozen network
    loss_fn = PerceptualLoss(net, ["conv2"])
    xg = x.clone().requires_grad_(True)
    loss_fn(xg, y).backward()
    assert xg.grad.abs().sum() > 0
    assert StyleLoss(net, ["conv1", "conv2"])(x, y[:1]).item() > 0
    assert ContextualLoss(net, ["conv2"], h=0.5)(x, y).item() > 0
    with pytest.raises(ValueError, match="nope"):
        FeatureExtractor(net, ["nope"])
    with pytest.raises(ValueError, match="shapes differ"):
        perceptual_loss(fx["conv1"], fy["conv2"])
    with pytest.raises(ValueError, match="criterion"):
        perceptual_loss(fx, fy, criterion="huber")


def test_mode_seeking_loss_matches_the_formula_and_rewards_diversity():
    g = torch.Generator().manual_seed(0)
    fake = torch.randn(7, 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)  # odd: row 6 unused
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    ratio = (fake[:3] - fake[3:6]).abs().mean() / (z[:3] - z[3:6]).abs().mean()
    got = mode_seeking_loss(fake, z)
    torch.testing.assert_close(got, 1 / (ratio + 1e-5))
    (grad,) = torch.autograd.grad(got, fake)
    assert grad[6].abs().sum() == 0  # the unpaired row takes no part
    # one gradient step apart makes the pairs differ more and the loss smaller
    moved = (fake - 0.1 * grad).detach()
    assert mode_seeking_loss(moved, z) < got
    # identical pairs give the largest value, 1 / eps
    same = torch.cat([fake[:3], fake[:3]]).detach()
    assert float(mode_seeking_loss(same, z[:6])) == pytest.approx(1e5)


def test_mode_seeking_loss_errors():
    with pytest.raises(ValueError, match="B >= 2"):
        mode_seeking_loss(torch.zeros(1, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="same B"):
        mode_seeking_loss(torch.zeros(4, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="eps"):
        mode_seeking_loss(torch.zeros(4, 3), torch.ones(4, 2), eps=0.0)
    with pytest.raises(TypeError):
        mode_seeking_loss([[0.0]], torch.zeros(4, 2))
