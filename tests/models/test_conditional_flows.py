"""Conditional flows (context_features > 0) for every image flow (Glow, RealNVP, NICE, MAF): exact
inverse given the context, the context changes the density once trained, equality with the
unconditional model at initialisation, class-conditional training on the digits (the true class
gives the higher likelihood), torch.distributions batch shapes, and bad contexts."""

from __future__ import annotations

import pytest
import torch

from genfast.distributions import FlowDistribution
from genfast.models import MAF, NICE, Glow, RealNVP
from genfast.testing import stable_seed

pytestmark = pytest.mark.usefixtures("one_thread")

CF = 3
MODELS = {
    "glow": lambda cf=CF: Glow((1, 8, 8), num_levels=2, num_steps=2, hidden=16, context_features=cf),
    "realnvp": lambda cf=CF: RealNVP((1, 8, 8), num_scales=2, hidden=16, context_features=cf),
    "nice": lambda cf=CF: NICE((1, 8, 8), num_layers=4, hidden=32, context_features=cf),
    "maf": lambda cf=CF: MAF((1, 8, 8), num_layers=2, hidden=(32, 32), context_features=cf),
}


def _perturb(model, seed, scale=0.05):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    c = torch.randn(n, CF, generator=g)
    return x, c


@pytest.mark.parametrize("name", MODELS)
def test_decode_inverts_encode_given_the_context(name):
    seed = stable_seed("cond-inv", name)
    torch.manual_seed(seed)
    model = _perturb(MODELS[name](), seed).double()
    x, c = (t.double() for t in _data(5, seed))
    zs, logdet, log_pz = model.encode(x, c)
    back = model.decode(zs, context=c)
    torch.testing.assert_close(back, x, atol=1e-8, rtol=1e-8, msg=f"seed={seed}")
    # the context matters once the parameters are not at their (context-blind) initialisation
    other = model.log_prob(x, c.flip(0))
    assert (model.log_prob(x, c) - other).abs().max() > 1e-6, f"seed={seed}"


@pytest.mark.parametrize("name", MODELS)
def test_at_initialisation_equals_the_unconditional_model(name):
    """The conditioners' last layers and the prior shifts start at zero, so a new conditional
    model ignores its context and its density equals the unconditional model's with the same
    shared weights."""
    seed = stable_seed("cond-init", name)
    torch.manual_seed(seed)
    cond = MODELS[name]()
    torch.manual_seed(seed)
    plain = MODELS[name](0)
    x, c = _data(6, seed)
    torch.testing.assert_close(cond.log_prob(x, c), plain.log_prob(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cond.log_prob(x, c), cond.log_prob(x, torch.zeros_like(c)))


@pytest.mark.parametrize("name", ["glow", "realnvp", "maf"])
def test_class_conditional_training_prefers_the_true_class(name, digits):
    """A few Adam steps of maximum likelihood on digits 0 and 1 with a one-hot context: the true
    class then has the higher likelihood for most held-back images."""
    images, labels = digits
    keep = labels < 2
    x, y = images[keep], labels[keep]
    train, test = slice(0, 200), slice(200, 300)
    onehot = torch.nn.functional.one_hot(y, 2).float()
    seed = stable_seed("cond-train", name)
    torch.manual_seed(seed)
    model = {"glow": lambda: Glow((1, 8, 8), num_levels=1, num_steps=2, hidden=32, context_features=2),
             "realnvp": lambda: RealNVP((1, 8, 8), num_scales=1, hidden=32, context_features=2),
             "maf": lambda: MAF((1, 8, 8), num_layers=2, hidden=(64,), context_features=2)}[name]()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(60):
        idx = torch.randint(0, 200, (64,), generator=g)
        xb = x[train][idx] + torch.rand(64, 1, 8, 8, generator=g) * (2 / 17)  # dequantised
        loss = -model.log_prob(xb, onehot[train][idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        right = model.log_prob(x[test], onehot[test])
        wrong = model.log_prob(x[test], 1 - onehot[test])
    share = (right > wrong).float().mean().item()
    assert share > 0.9, (share, seed)


def test_sampling_follows_the_context():
    seed = stable_seed("cond-sample")
    torch.manual_seed(seed)
    model = _perturb(MODELS["glow"](), seed)
    c = torch.randn(4, CF, generator=torch.Generator().manual_seed(seed))
    a = model.sample(4, generator=torch.Generator().manual_seed(1), context=c)
    b = model.sample(4, generator=torch.Generator().manual_seed(1), context=c.flip(0))
    assert a.shape == (4, 1, 8, 8) and not torch.allclose(a, b)
    assert torch.equal(a, model.sample(4, generator=torch.Generator().manual_seed(1), context=c))


def test_flow_distribution_with_a_batch_of_contexts():
    seed = stable_seed("cond-dist")
    torch.manual_seed(seed)
    model = _perturb(MODELS["realnvp"](), seed)
    c = torch.randn(4, CF, generator=torch.Generator().manual_seed(seed))
    dist = FlowDistribution(model, context=c)
    assert dist.batch_shape == (4,) and dist.event_shape == (1, 8, 8)
    x = dist.rsample((2,))
    assert x.shape == (2, 4, 1, 8, 8)
    lp = dist.log_prob(x.detach())
    assert lp.shape == (2, 4)
    torch.testing.assert_close(lp[1], model.log_prob(x[1].detach(), c), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_bad_contexts_name_the_argument(name):
    model = MODELS[name]()
    x, c = _data(3, 0)
    with pytest.raises(ValueError, match="context"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="context"):
        model.log_prob(x, c[:2])
    with pytest.raises(ValueError, match="context"):
        model.log_prob(x, torch.zeros(3, CF + 1))
    with pytest.raises(TypeError, match="context"):
        model.log_prob(x, torch.zeros(3, CF, dtype=torch.int64))
    with pytest.raises(ValueError, match="context"):
        model.sample(3)
    with pytest.raises(ValueError, match="context"):
        MODELS[name](0).log_prob(x, c)
    with pytest.raises(ValueError, match="context_features"):
        MODELS[name](-1)
    with pytest.raises(ValueError, match="context"):
        FlowDistribution(model)
