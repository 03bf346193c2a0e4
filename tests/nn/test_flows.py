"""genfast.nn.flows: every layer inverts exactly, its log-determinant is slogdet of its Jacobian,
actnorm's data-dependent initialisation, the 1x1 convolution's weight cache, MADE's masks."""

from __future__ import annotations

import pytest
import torch

import genfast.ops as O
from genfast.nn import flows as F
from genfast.testing import perturb_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ helpers


def _perturb(module, scale=0.3, seed=0):
    return perturb_parameters(module, scale, seed)


def _layers():
    """(name, layer, input shape) covering every layer, mask and conditioner kind, initialised from a
    fixed seed (not from whatever state the global generator has when the module is collected)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _make_layers()


def _make_layers():
    return [
        ("actnorm4d", F.ActNorm(3), (2, 3, 2, 3)),
        ("actnorm2d", F.ActNorm(5), (3, 5)),
        ("invconv", F.InvConv2dLU(4), (2, 4, 2, 3)),
        ("invconv_c1", F.InvConv2dLU(1), (2, 1, 3, 2)),
        ("additive_channel", F.AdditiveCoupling(4, 8, mask="channel"), (2, 4, 2, 2)),
        ("additive_checker", F.AdditiveCoupling(2, 8, mask="checkerboard", parity=1), (2, 2, 3, 2)),
        ("additive_mlp", F.AdditiveCoupling(5, 8, mask="checkerboard", conditioner="mlp"), (3, 5)),
        ("affine_channel", F.AffineCoupling(5, 8, mask="channel"), (2, 5, 2, 2)),
        ("affine_channel_p1", F.AffineCoupling(5, 8, mask="channel", parity=1), (2, 5, 2, 2)),
        ("affine_checker", F.AffineCoupling(2, 8, mask="checkerboard"), (2, 2, 2, 3)),
        ("affine_mlp_channel", F.AffineCoupling(6, 8, mask="channel", conditioner="mlp"), (3, 6)),
        ("squeeze", F.Squeeze(), (2, 2, 4, 2)),
        ("maf", F.MaskedAffineAutoregressive(5, (12, 12)), (3, 5)),
        ("maf_reversed", F.MaskedAffineAutoregressive(4, (9,), order=[3, 1, 0, 2]), (3, 4)),
    ]


LAYERS = _layers()


@pytest.mark.parametrize("name,layer,shape", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_inverse_of_forward(name, layer, shape):
    _perturb(layer)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    y, logdet = layer(x)
    assert y.numel() == x.numel() and logdet.shape == (shape[0],)
    torch.testing.assert_close(layer.inverse(y), x, rtol=1e-4, atol=1e-4)
    layer.double()
    x64 = x.double()
    torch.testing.assert_close(layer.inverse(layer(x64)[0]), x64, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,layer,shape", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_logdet_equals_slogdet_of_jacobian(name, layer, shape):
    _perturb(layer, seed=3).double()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, logdet = layer(x)  # also runs actnorm's data-dependent initialisation first
    for i in range(shape[0]):
        xi = x[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], xi).reshape(xi.numel(), xi.numel())
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(layer(xi)[1][0], logabs, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(logdet[i], logabs, rtol=1e-9, atol=1e-9)


def test_invconv_fused_with_actnorm_inverts_and_logdet():
    gen = torch.Generator().manual_seed(0)
    conv, act = F.InvConv2dLU(5, generator=gen).double(), F.ActNorm(5).double()
    x = torch.randn(2, 5, 2, 2, generator=gen, dtype=torch.float64) * 3 + 1
    y, ld = conv(x, actnorm=act)
    assert bool(act.initialized)
    # equals actnorm then the convolution, as separate layers
    y2, ld_a = act(x)
    y2, ld_c = conv(y2)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(ld, ld_a + ld_c)
    torch.testing.assert_close(conv.inverse(y, actnorm=act), x)
    jac = torch.autograd.functional.jacobian(lambda v: conv(v, actnorm=act)[0], x[:1]).reshape(20, 20)
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(jac)[1])


def test_split_roundtrip_and_prior():
    gen = torch.Generator().manual_seed(0)
    split = _perturb(F.Split(5), seed=4)
    x = torch.randn(2, 5, 3, 3, generator=gen)
    h, z, log_p = split(x)
    assert h.shape == (2, 3, 3, 3) and z.shape == (2, 2, 3, 3)
    torch.testing.assert_close(split.inverse(h, z), x)
    mean, log_std = split.prior_params(h)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(log_p, expected)
    # sampling: temperature 0 gives the prior mean, shapes are right
    s = split.inverse(h, None, temperature=1e-8, generator=gen)
    torch.testing.assert_close(s[:, 3:], mean, rtol=1e-5, atol=1e-5)
    plain = F.Split(4, learned_prior=False)
    _, z, log_p = plain(x[:, :4])
    torch.testing.assert_close(log_p, torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1))


def test_actnorm_data_dependent_init():
    gen = torch.Generator().manual_seed(0)
    act = F.ActNorm(3)
    x = torch.randn(64, 3, 4, 4, generator=gen) * torch.tensor([0.5, 2.0, 7.0])[:, None, None] + 3.0
    y, _ = act(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    before = act.log_scale.detach().clone()
    act(x * 5)  # second batch: no re-initialisation
    assert torch.equal(act.log_scale.detach(), before)
    fresh = F.ActNorm(3)
    fresh.load_state_dict(act.state_dict())
    assert bool(fresh.initialized)
    torch.testing.assert_close(fresh(x)[0], y)


def test_invconv_inverse_weight_cache(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    conv = F.InvConv2dLU(6, generator=gen)
    calls = {"inv": 0}
    real = O.invconv_lu_inverse_weight

    def counting(*args):
        calls["inv"] += 1
        return real(*args)

    monkeypatch.setattr(O, "invconv_lu_inverse_weight", counting)
    y = torch.randn(2, 6, 3, 3, generator=gen)
    with torch.no_grad():
        x1 = conv.inverse(y)
        x2 = conv.inverse(y)
    assert calls["inv"] == 1, "W^-1 must be cached between parameter changes"
    torch.testing.assert_close(x1, x2)
    with torch.no_grad():
        conv.upper.add_(0.1)  # an optimizer step: the version counter changes
        x3 = conv.inverse(y)
    assert calls["inv"] == 2
    torch.testing.assert_close(conv(x3)[0], y, rtol=1e-4, atol=1e-4)
    # while recording gradients nothing is cached (the graph must reach the parameters)
    x4 = conv.inverse(y)
    x4.sum().backward()
    assert conv.upper.grad is not None and conv.log_s.grad is not None


def test_invconv_gradients_reach_every_parameter():
    gen = torch.Generator().manual_seed(0)
    conv, act = F.InvConv2dLU(4, generator=gen), F.ActNorm(4)
    x = torch.randn(3, 4, 2, 2, generator=gen)
    y, ld = conv(x, actnorm=act)
    (y.square().sum() + ld.sum()).backward()
    for p in (conv.lower, conv.upper, conv.log_s, act.log_scale, act.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", ("cpu", "triton", "cuda", "reference"))
def test_invconv_backends_agree(backend):
    if not O.backends()[backend]:
        pytest.skip(f"backend {backend} cannot run here")
    gen = torch.Generator().manual_seed(0)
    conv = F.InvConv2dLU(7, backend=backend, generator=torch.Generator().manual_seed(1))
    ref = F.InvConv2dLU(7, backend="reference", generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 7, 3, 5, generator=gen)
    dev = "cuda" if backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu"
    conv.to(dev)
    xd = x.to(dev)
    torch.testing.assert_close(conv(xd)[0].cpu(), ref(x)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.inverse(xd).cpu(), ref.inverse(x), rtol=1e-5, atol=1e-5)


def test_made_is_autoregressive():
    order = [2, 0, 3, 1, 4]
    made = _perturb(F.MADE(5, (16, 16), order=order)).double()
    x = torch.randn(1, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(made, x).reshape(10, 5)
    rank = {d: j for j, d in enumerate(order)}
    for out in range(10):
        i = out % 5
        for inp in range(5):
            if rank[inp] >= rank[i]:
                assert jac[out, inp] == 0, f"output {out} depends on input {inp}"
    assert jac.abs().sum() > 0


def test_masks():
    m = F.checkerboard_mask(2, 3)
    assert m.shape == (1, 1, 2, 3) and m.tolist() == [[[[1, 0, 1], [0, 1, 0]]]]
    assert F.checkerboard_mask(2, 2, parity=1).tolist() == [[[[0, 1], [1, 0]]]]
    assert F.channel_mask(5).tolist() == [1, 1, 0, 0, 0]
    assert F.channel_mask(5, parity=1).tolist() == [0, 0, 1, 1, 1]


def test_bad_inputs():
    with pytest.raises(ValueError, match="x"):
        F.ActNorm(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(TypeError, match="x"):
        F.ActNorm(3)(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_channels"):
        F.ActNorm(0)
    with pytest.raises(ValueError, match="x"):
        F.InvConv2dLU(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="actnorm"):
        F.InvConv2dLU(3)(torch.randn(2, 3, 2, 2), actnorm=F.ActNorm(4))
    with pytest.raises(ValueError, match="num_channels"):
        F.AffineCoupling(1, mask="channel")
    with pytest.raises(ValueError, match="mask"):
        F.AffineCoupling(4, mask="stripes")
    with pytest.raises(ValueError, match="conditioner"):
        F.AdditiveCoupling(4, conditioner="rnn")
    with pytest.raises(ValueError, match="height and width"):
        F.Squeeze()(torch.randn(1, 1, 3, 4))
    with pytest.raises(ValueError, match="order"):
        F.MADE(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="y"):
        F.AffineCoupling(4, 8).inverse(torch.randn(2, 5, 2, 2))
