"""genfast.models BernoulliRBM / GaussianBernoulliRBM / DBN: formulas against scikit-learn and
brute force, exact log Z, AIS, the CD gradient, training, sampling, save/load, bad inputs."""

import itertools
import math

import numpy as np
import pytest
import torch

from genfast.models import DBN, BernoulliRBM, GaussianBernoulliRBM


def _rbm(v, h, seed=0, cls=BernoulliRBM, **kw):
    m = cls(v, h, seed=seed, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.weight.copy_(0.5 * torch.randn(h, v, generator=g))
        m.visible_bias.copy_(0.3 * torch.randn(v, generator=g))
        m.hidden_bias.copy_(0.3 * torch.randn(h, generator=g))
    return m


def _binary(n, v, seed=0):
    return (torch.rand(n, v, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def test_free_energy_and_pseudo_likelihood_match_sklearn():
    sk = pytest.importorskip("sklearn.neural_network")
    x = _binary(60, 12, 1).numpy()
    est = sk.BernoulliRBM(n_components=7, n_iter=3, random_state=0).fit(x)
    m = BernoulliRBM.from_sklearn(est)
    v = torch.from_numpy(x)
    np.testing.assert_allclose(m.free_energy(v).numpy(), est._free_energy(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.hidden_probs(v).numpy(), est.transform(x), rtol=1e-5, atol=1e-6)
    # score_samples flips feature rng.randint(0, V, B) with rng = RandomState(random_state)
    ind = np.random.RandomState(0).randint(0, x.shape[1], x.shape[0])
    np.testing.assert_allclose(
        m.pseudo_likelihood(v, index=torch.from_numpy(ind)).numpy(),
        est.score_samples(x),
        rtol=1e-4,
        atol=1e-4,
    )
    back = m.to_sklearn()
    np.testing.assert_allclose(back.components_, est.components_, rtol=1e-6)
    assert back.gibbs(x).shape == x.shape


def _brute_log_z(m):
    w, b, c = m.weight.double(), m.visible_bias.double(), m.hidden_bias.double()
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m.n_visible)), dtype=torch.float64)
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m.n_hidden)), dtype=torch.float64)
    neg_e = vs @ b + (hs @ c)[:, None] + hs @ w @ vs.T  # [2^H, 2^V]
    return float(torch.logsumexp(neg_e.flatten(), 0))


@pytest.mark.parametrize("shape", [(5, 3), (3, 6), (1, 1)])
def test_exact_log_partition_against_brute_force(shape):
    m = _rbm(*shape, seed=3)
    assert abs(m.exact_log_partition() - _brute_log_z(m)) < 1e-9
    ll = m.log_likelihood(_binary(4, shape[0]))
    # probabilities of all states sum to 1 (the free energy is float32: 3e-8 measured)
    allv = torch.tensor(list(itertools.product([0.0, 1.0], repeat=shape[0])))
    assert abs(float(m.log_likelihood(allv).exp().sum()) - 1) < 1e-6
    assert ll.shape == (4,)


def test_gaussian_exact_log_partition_by_quadrature():
    m = _rbm(1, 2, seed=2, cls=GaussianBernoulliRBM, sigma=0.7)
    x = torch.linspace(-15, 15, 200001, dtype=torch.float64)[:, None]
    fe = m.free_energy(x.float()).double()  # float32 free energy is fine at this scale
    log_z = float(torch.logsumexp(-fe, 0) + math.log(30 / 200000))
    assert abs(m.exact_log_partition() - log_z) < 1e-4


def test_ais_close_to_exact():
    m = _rbm(16, 10, seed=5)
    exact = m.exact_log_partition()
    est, err = m.ais_log_partition(n_chains=64, n_betas=400, seed=1)
    # measured here: |est - exact| = 0.007 (AIS std error 0.015) with these settings; 0.25 nats
    # leaves margin while a wrong transition or weight update is off by whole nats
    assert abs(est - exact) < 0.25, (est, exact, err)
    # the base-rate model of the data's log-odds: |est - exact| <= 0.025 over seeds 0-5 (std error 0.02)
    data = (torch.rand(200, 16, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    est, err = m.ais_log_partition(n_chains=64, n_betas=400, seed=1, data=data)
    assert abs(est - exact) < 0.25, (est, exact, err)


@pytest.mark.parametrize("base", ["model_bias", "data_mean"])
def test_gaussian_ais_close_to_exact(base):
    m = _rbm(8, 6, seed=5, cls=GaussianBernoulliRBM, sigma=0.8)
    exact = m.exact_log_partition()  # the closed-form Gaussian integral, summed over 2^6 hidden states
    data = 0.8 * torch.randn(300, 8, generator=torch.Generator().manual_seed(1)) + m.visible_bias
    kw = {"data": data} if base == "data_mean" else {}
    est, err = m.ais_log_partition(n_chains=64, n_betas=1000, seed=1, **kw)
    # measured here over seeds 0-9 with these settings: |est - exact| <= 0.077 (AIS std error
    # 0.023); 0.25 nats leaves margin while a wrong transition or weight is off by nats (with no
    # intermediate temperatures, n_betas = 2, the estimate is 2.2 nats low)
    assert abs(est - exact) < 0.25, (est, exact, err)
    assert err < 0.1
    assert m.log_partition("auto") == exact
    assert abs(m.log_partition("ais", n_chains=64, n_betas=1000, seed=1, **kw) - est) < 1e-12
    with pytest.raises(ValueError, match="method"):
        m.log_partition("quadrature")
    with pytest.raises(ValueError, match="base_visible_bias"):
        m.ais_log_partition(n_chains=4, n_betas=3, base_visible_bias=torch.zeros(7))
    with pytest.raises(ValueError, match="data"):
        m.ais_log_partition(n_chains=4, n_betas=3, data=torch.zeros(5, 7))


def test_cd_gradient_formula():
    m = _rbm(9, 5, seed=1)
    v = _binary(8, 9, 2)
    seed, off = m.seed, m.offset
    g = m.cd_gradient(v, k=2)
    # replay the same negative chain with the op and recompute the statistics by hand
    import genfast.ops as O

    neg = O.gibbs(v, m.weight, m.visible_bias, m.hidden_bias, k=2, seed=seed, offset=off).v
    hp = torch.sigmoid(v @ m.weight.T + m.hidden_bias)
    hn = torch.sigmoid(neg @ m.weight.T + m.hidden_bias)
    torch.testing.assert_close(g["weight"], (hp.T @ v - hn.T @ neg) / 8)
    torch.testing.assert_close(g["visible_bias"], v.mean(0) - neg.mean(0))
    torch.testing.assert_close(g["hidden_bias"], hp.mean(0) - hn.mean(0))


@pytest.mark.parametrize("persistent", [False, True])
def test_training_improves_likelihood(persistent):
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(3, 10, generator=g) < 0.5).float()
    data = protos[torch.randint(0, 3, (300,), generator=g)]
    flip = torch.rand(data.shape, generator=g) < 0.05
    data = (data + flip.float()) % 2
    m = BernoulliRBM(10, 8, seed=1)
    before = float(m.log_likelihood(data).mean())
    hist = m.fit(data, epochs=15, batch_size=30, lr=0.1, k=1, persistent=persistent)
    after = float(m.log_likelihood(data).mean())
    assert after > before + 1.0 and hist[-1] < hist[0]
    if persistent:
        assert m.persistent_chains.shape == (30, 10)


def test_gaussian_rbm_trains_and_samples():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(200, 6, generator=g) * 0.3 + torch.tensor([1.0, -1, 0, 2, 0, 0])
    m = GaussianBernoulliRBM(6, 4, sigma=1.0, seed=0)
    before = float(m.log_likelihood(data).mean())
    m.fit(data, epochs=20, batch_size=20, lr=0.02, k=1)
    assert float(m.log_likelihood(data).mean()) > before
    s = m.gibbs(data[:5], k=3)
    assert s.shape == (5, 6) and s.dtype == torch.float32


def test_sampling_shapes_and_save_load(tmp_path):
    m = _rbm(12, 6, seed=4)
    v = _binary(5, 12)
    s = m.gibbs(v, k=4)
    assert s.shape == (5, 12) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert m.sample_hidden(v).shape == (5, 6) and m.sample_visible(m.sample_hidden(v)).shape == (5, 12)
    path = tmp_path / "rbm.pt"
    torch.save(m.state_dict(), path)
    m2 = BernoulliRBM(12, 6)
    m2.load_state_dict(torch.load(path))
    torch.testing.assert_close(m2.free_energy(v), m.free_energy(v))


def test_dbn_fit_and_sample():
    data = _binary(100, 16, 3)
    dbn = DBN([16, 8, 4], seed=0)
    hist = dbn.fit(data, epochs=2, batch_size=25, lr=0.05)
    assert len(hist) == 2
    s = dbn.sample(7, k=5)
    assert s.shape == (7, 16) and bool(((s >= 0) & (s <= 1)).all())
    assert dbn.transform(data).shape == (100, 4)


def test_bad_inputs():
    m = _rbm(6, 3)
    with pytest.raises(ValueError, match="v"):
        m.free_energy(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="v"):
        m.free_energy(torch.full((2, 6), 2.0))  # outside [0, 1] for Bernoulli units
    with pytest.raises(ValueError, match="binary"):
        m.pseudo_likelihood(torch.full((2, 6), 0.5))
    with pytest.raises(TypeError, match="v"):
        m.gibbs(torch.zeros(2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="k"):
        m.gibbs(torch.zeros(2, 6), k=0)
    with pytest.raises(TypeError, match="n_hidden"):
        BernoulliRBM(6, 2.5)
    with pytest.raises(ValueError, match="n_visible"):
        BernoulliRBM(0, 3)
    with pytest.raises(ValueError, match="exact"):
        BernoulliRBM(30, 30).log_partition("exact")
    with pytest.raises(ValueError, match="sigma"):
        GaussianBernoulliRBM(3, 2, sigma=-1.0)
    with pytest.raises(ValueError, match="sizes"):
        DBN([5])


def test_fit_ema_decay_leaves_the_average_of_the_iterates():
    """fit(ema_decay=d): the model ends with the EMA of the parameter iterates (diffusers' warm-up
    min(d, (1 + n) / (10 + n))), the raw trajectory being the same as without averaging."""
    from genfast.models import BernoulliRBM

    g = torch.Generator().manual_seed(0)
    v = (torch.rand(64, 20, generator=g) < 0.3).float()
    iterates = []

    def cb(step, losses):
        iterates.append({k: p.detach().clone() for k, p in raw._params().items()})

    raw = BernoulliRBM(20, 7, seed=3)
    raw.fit(v, epochs=3, batch_size=16, lr=0.1, persistent=True, callback=cb)
    avg = {k: p.detach().clone() for k, p in BernoulliRBM(20, 7, seed=3)._params().items()}
    for n, it in enumerate(iterates):
        d = min(0.9, (1 + n) / (10 + n))
        for k in avg:
            avg[k].lerp_(it[k], 1 - d)
    model = BernoulliRBM(20, 7, seed=3)
    model.fit(v, epochs=3, batch_size=16, lr=0.1, persistent=True, ema_decay=0.9)
    for k, p in model._params().items():
        torch.testing.assert_close(p, avg[k], rtol=1e-5, atol=1e-6, msg=k)
        assert not torch.allclose(p, raw._params()[k])  # the average is not the last iterate
    zero = BernoulliRBM(20, 7, seed=3)
    zero.fit(v, epochs=3, batch_size=16, lr=0.1, persistent=True, ema_decay=0.0)  # d = 0: the last iterate
    for k, p in zero._params().items():
        torch.testing.assert_close(p, raw._params()[k], rtol=0, atol=0, msg=k)
    for bad in (1.0, -0.1, "0.9", True):
        with pytest.raises(ValueError, match="ema_decay"):
            BernoulliRBM(20, 7).fit(v, epochs=1, ema_decay=bad)
