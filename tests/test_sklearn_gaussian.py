"""genfast.sklearn.GaussianBernoulliRBM: scikit-learn's estimator checks, the update rule against a
NumPy transcription fed the same chain, the exact log-likelihood rising with training (log Z by
summing over the hidden states), a Pipeline with StandardScaler and LogisticRegression, and bad
arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from genfast.models import GaussianBernoulliRBM as ModelRBM
from genfast.reference import gibbs as R
from genfast.reference.random import randn as philox_randn
from genfast.sklearn import GaussianBernoulliRBM
from genfast.testing import stable_seed


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def test_check_estimator():
    results = check_estimator(GaussianBernoulliRBM(n_iter=5, batch_size=10), on_fail=None)
    bad = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] in ("failed", "xfail")]
    assert not bad, bad
    assert sum(r["status"] == "passed" for r in results) > 30


def _update(w, b, c, v_pos, v_neg, lr, s):
    """The Gaussian-Bernoulli PCD update (Hinton 2010, 13.2), in NumPy float64."""
    h = lambda v: 1 / (1 + np.exp(-(v @ w.T / s + c)))  # noqa: E731
    hp, hn = h(v_pos), h(v_neg)
    a = lr / len(v_pos)
    return (w + a * (hp.T @ v_pos - hn.T @ v_neg) / s,
            b + a * (v_pos.sum(0) - v_neg.sum(0)) / s**2,
            c + a * (hp.sum(0) - hn.sum(0)))


@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_partial_fit_update_rule(digits, sigma):
    X = digits[0][:23].astype(np.float64)
    seed = stable_seed("gb-partial_fit", sigma)
    est = GaussianBernoulliRBM(n_components=9, batch_size=7, learning_rate=0.05, n_iter=0, random_state=seed,
                               sigma=sigma, backend="reference").fit(X)
    w, b, c = (getattr(est, a).copy() for a in ("components_", "intercept_visible_", "intercept_hidden_"))
    key = est._seed
    t = torch.from_numpy
    z = philox_randn((7, 64), seed=key, offset=0).double()
    v_chain = (t(b) + sigma * z).numpy()  # chains start at v ~ N(b, sigma^2)
    offset = 7 * 64
    for batch in (X[:10], X[10:23]):
        est.partial_fit(batch)
        stacked = t(np.concatenate([batch, v_chain]))
        out = R.gibbs(stacked, t(w), t(b), t(c), k=1, seed=key, offset=offset, visible="gaussian", sigma=sigma)
        offset += R.num_counters(stacked.shape[0], 64, 9, 1)
        w, b, c = _update(w, b, c, batch, v_chain, 0.05, sigma)
        v_chain = out[0][len(batch):].numpy()
    np.testing.assert_allclose(est.components_, w, atol=1e-10, err_msg=f"seed={seed}")
    np.testing.assert_allclose(est.intercept_visible_, b, atol=1e-10, err_msg=f"seed={seed}")
    np.testing.assert_allclose(est.intercept_hidden_, c, atol=1e-10, err_msg=f"seed={seed}")


def _log_likelihood(est, X):
    """Mean exact log p(x): -F(x) from the estimator minus log Z summed over the 2^H hidden states."""
    m = ModelRBM(X.shape[1], est.n_components, sigma=est.sigma)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(est.components_))
        m.visible_bias.copy_(torch.from_numpy(est.intercept_visible_))
        m.hidden_bias.copy_(torch.from_numpy(est.intercept_hidden_))
    return float(est.score_samples(X).mean()) - m.exact_log_partition()


def test_training_raises_the_exact_log_likelihood(digits):
    X = digits[0]
    seed = stable_seed("gb-ll")
    untrained = GaussianBernoulliRBM(n_components=12, n_iter=0, random_state=seed).fit(X)
    trained = GaussianBernoulliRBM(n_components=12, n_iter=5, random_state=seed).fit(X)
    before, after = _log_likelihood(untrained, X), _log_likelihood(trained, X)
    # measured: -89.3 -> -83.4 after 10 passes (seed 0); 5 passes give more than half of that
    assert after > before + 2.0, (before, after, seed)


def test_pipeline_with_logistic_regression():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("rbm", GaussianBernoulliRBM(n_components=100, n_iter=10, random_state=stable_seed("gb-pipe"))),
                     ("logistic", LogisticRegression(max_iter=1000))]).fit(Xtr, ytr)
    # measured 0.92 (seed 0); the raw standardised pixels give 0.96, chance 0.1
    assert pipe.score(Xte, yte) > 0.85


def test_gibbs_and_transform(digits):
    X = digits[0][:20]
    est = GaussianBernoulliRBM(n_components=8, n_iter=1, random_state=0).fit(X)
    v = est.gibbs(X)
    assert v.shape == X.shape and v.dtype == X.dtype and not np.array_equal(np.unique(v), [0, 1])
    h = est.transform(X)
    w, c = est.components_, est.intercept_hidden_
    np.testing.assert_allclose(h, 1 / (1 + np.exp(-(X @ w.T / est.sigma + c))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value, exc", [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
                                        ("1", TypeError), (True, TypeError)])
def test_bad_sigma_names_the_argument(digits, value, exc):
    with pytest.raises(exc, match="sigma"):
        GaussianBernoulliRBM(sigma=value, n_iter=1).fit(digits[0][:10])
