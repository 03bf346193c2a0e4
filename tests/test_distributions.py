"""genfast.distributions and genfast.nn.splines: the rational-quadratic spline (inverse, derivative,
identity at zero parameters and in the tails), coupling log-determinants against autograd
Jacobians, normalisation of a flow's density, the torch.distributions API (shapes, broadcasting,
rsample gradients), conditioning that is learned, and genfast's flow models as distributions."""

from __future__ import annotations

import pytest
import torch

from genfast.distributions import ConditionalFlow, FlowDistribution
from genfast.nn.splines import RationalQuadraticCoupling, rational_quadratic_spline
from genfast.testing import stable_seed


def _params(shape, k, gen, scale=2.0):
    return [torch.randn(*shape, n, generator=gen, dtype=torch.float64) * scale for n in (k, k, k - 1)]


@pytest.mark.parametrize("k", [1, 2, 8])
def test_spline_inverse_and_derivative(k):
    seed = stable_seed("spline", k)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(500, generator=g, dtype=torch.float64) * 8 - 4).requires_grad_()  # tails included
    w, h, d = _params((500,), k, g)
    y, ld = rational_quadratic_spline(x, w, h, d, tail_bound=3.0)
    dydx = torch.autograd.grad(y.sum(), x)[0]
    torch.testing.assert_close(ld, dydx.log(), rtol=1e-9, atol=1e-9, msg=f"seed={seed}")
    back, ld_inv = rational_quadratic_spline(y.detach(), w, h, d, inverse=True, tail_bound=3.0)
    torch.testing.assert_close(back, x.detach(), rtol=1e-9, atol=1e-9, msg=f"seed={seed}")
    torch.testing.assert_close(ld_inv, -ld.detach(), rtol=1e-9, atol=1e-9)
    outside = x.detach().abs() > 3
    assert outside.any() and torch.equal(y[outside], x.detach()[outside])
    assert bool((dydx > 0).all())  # monotonic
    zero = [torch.zeros_like(t) for t in (w, h, d)]
    y0, ld0 = rational_quadratic_spline(x.detach(), *zero, tail_bound=3.0)
    torch.testing.assert_close(y0, x.detach(), rtol=1e-12, atol=1e-12)
    assert ld0.abs().max() < 1e-12


def test_spline_bad_shapes():
    with pytest.raises(ValueError, match="derivatives"):
        rational_quadratic_spline(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="tail_bound"):
        rational_quadratic_spline(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 3),
                                  tail_bound=0.0)


def _randomise(module, gen, scale=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


@pytest.mark.parametrize("context_features", [0, 3])
def test_coupling_logdet_is_the_jacobians(context_features):
    seed = stable_seed("coupling", context_features)
    g = torch.Generator().manual_seed(seed)
    layer = RationalQuadraticCoupling(5, 16, num_bins=4, parity=1, context_features=context_features).double()
    _randomise(layer, g)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    c = torch.randn(6, context_features, generator=g, dtype=torch.float64) if context_features else None
    y, ld = layer(x, c)
    for i in range(6):
        ci = None if c is None else c[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v, ci=ci: layer(v[None], ci)[0][0], x[i])
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(jac)[1], rtol=1e-9, atol=1e-9, msg=f"seed={seed}")
    torch.testing.assert_close(layer.inverse(y, c), x, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="context"):
        layer(x, None if context_features else torch.zeros(6, 2, dtype=torch.float64))


def test_flow_density_integrates_to_one():
    seed = stable_seed("normalised")
    g = torch.Generator().manual_seed(seed)
    flow = ConditionalFlow(2, num_layers=3, hidden=16, num_bins=5).double()
    # weights of scale 0.2: a smooth density that a 0.04 grid integrates to ~1e-6 (at 0.5 the
    # splines get bins as narrow as the grid: 0.97 at this step, 1.02 at 0.01)
    _randomise(flow, g, scale=0.2)
    step = 0.04
    axis = torch.arange(-9, 9, step, dtype=torch.float64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = flow().log_prob(grid).exp().sum() * step**2
    assert abs(float(mass) - 1) < 2e-3, f"seed={seed}: mass {float(mass)}"


def test_distribution_api_shapes_and_rsample_gradient():
    flow = ConditionalFlow(3, context_features=2, num_layers=2, hidden=8)
    c = torch.randn(4, 2)
    dist = flow(c)
    assert dist.batch_shape == (4,) and dist.event_shape == (3,)
    s = dist.rsample((5,))
    assert s.shape == (5, 4, 3) and dist.sample().shape == (4, 3)
    assert dist.log_prob(s).shape == (5, 4)
    assert dist.log_prob(torch.zeros(3)).shape == (4,)  # broadcast over the batch
    loss = -dist.log_prob(s).mean()
    grads = torch.autograd.grad(loss, list(flow.parameters()), allow_unused=True)
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)
    with pytest.raises(ValueError, match="context"):
        flow()
    with pytest.raises(ValueError, match="context"):
        flow(torch.zeros(4, 5))


@pytest.mark.usefixtures("one_thread")
def test_conditioning_is_learned():
    """x | c ~ N(1.5 c (1, -1), 0.5^2 I), c in {-1, +1}: the fitted flow's NLL nears the true
    conditional entropy log(2 pi e 0.25) = 1.45 nats (an unconditional fit cannot go below the
    mixture's, about 2.1), and samples follow the context."""
    seed = stable_seed("conditional")
    torch.manual_seed(seed)
    flow = ConditionalFlow(2, context_features=1, num_layers=2, hidden=32, num_bins=8, tail_bound=4.0)
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    target = torch.tensor([1.0, -1.0])
    for _ in range(300):
        c = torch.randint(0, 2, (256, 1)).float() * 2 - 1
        x = 1.5 * c * target + 0.5 * torch.randn(256, 2)
        loss = -flow(c).log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    c = torch.randint(0, 2, (4000, 1)).float() * 2 - 1
    x = 1.5 * c * target + 0.5 * torch.randn(4000, 2)
    with torch.no_grad():
        nll = float(-flow(c).log_prob(x).mean())
    assert nll < 1.6, (seed, nll)  # measured 1.45-1.46
    for sign in (-1.0, 1.0):
        s = flow(torch.full((2000, 1), sign)).sample()
        assert (s.mean(0) - 1.5 * sign * target).abs().max() < 0.25, (seed, sign, s.mean(0))


def test_flow_models_as_distributions():
    from genfast.models import Glow, RealNVP

    torch.manual_seed(stable_seed("models"))
    for model in (Glow(image_shape=(1, 8, 8), num_levels=2, num_steps=1), RealNVP(image_shape=(1, 8, 8))):
        dist = FlowDistribution(model)
        assert dist.event_shape == (1, 8, 8) and dist.batch_shape == ()
        x = torch.rand(2, 3, 1, 8, 8) * 2 - 1
        lp = dist.log_prob(x)
        assert lp.shape == (2, 3)
        torch.testing.assert_close(lp.reshape(-1), model.log_prob(x.reshape(6, 1, 8, 8)))
        s = dist.rsample((2, 2))
        assert s.shape == (2, 2, 1, 8, 8) and s.requires_grad
        assert dist.sample((3,)).shape == (3, 1, 8, 8)
    with pytest.raises(TypeError, match="flow"):
        FlowDistribution(torch.nn.Linear(2, 2))
