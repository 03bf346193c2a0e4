"""Frechet distance against a NumPy/SciPy computation, and the digit metric end to end."""

import warnings

import numpy as np
import pytest
import torch

from genfast.metrics import (
    DigitClassifier,
    DigitMetric,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
)


def _scipy_frechet(mu1, s1, mu2, s2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (Seitzer, 2020), the reference recipe."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_matches_scipy_on_random_gaussians(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(400, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    b = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.7 - 0.3
    mu1, s1 = np.mean(a, 0), np.atleast_2d(np.cov(a, rowvar=False))
    mu2, s2 = np.mean(b, 0), np.atleast_2d(np.cov(b, rowvar=False))
    expected = _scipy_frechet(mu1, s1, mu2, s2)
    # float64 throughout: the two square-root algorithms agree to about 1e-10 relative here
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance_from_features(torch.from_numpy(a).float(), b) == pytest.approx(expected, rel=1e-4)


def test_frechet_closed_forms():
    # one dimension: (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # commuting diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    s1, s2 = np.diag([1.0, 4.0, 0.0]), np.diag([9.0, 1.0, 0.0])
    assert frechet_distance(np.zeros(3), s1, np.ones(3), s2) == pytest.approx(3 + 4 + 1)


def test_frechet_is_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 64)) ** 2  # rank-deficient covariance (N < D), as with 64 samples
    assert frechet_distance_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), ValueError, "mu2"),
        ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), ValueError, "sigma1"),
        ((np.zeros(2), np.eye(2), np.zeros(2), np.eye(2) * np.nan), ValueError, "sigma2"),
        ((np.zeros(2), np.eye(2), np.zeros(2), "eye"), TypeError, "sigma2"),
    ],
)
def test_frechet_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        frechet_distance(*args)


def test_gaussian_stats_bad_input():
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance_from_features(np.zeros((3, 2)), np.zeros((3, 4)))


# ----------------------------------------------------------------------------- digit metric
@pytest.fixture(scope="module")
def metric_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("genfast_cache")


@pytest.fixture(scope="module")
def metric(metric_cache):
    # 8 epochs instead of 30: 96%+ test accuracy in a quarter of the time
    return DigitMetric.from_data(epochs=8, cache=metric_cache)


def test_digit_metric_reads_sensibly(metric, metric_cache):
    from genfast.data import load_digits

    assert metric.accuracy > 0.93
    assert len(list(metric_cache.glob("digit_classifier-*.safetensors"))) == 1
    test_x, test_y = load_digits("test")
    assert metric.frechet_distance(test_x) == pytest.approx(0.0, abs=1e-6)
    n = 64
    floor, ceiling = metric.floor(n), metric.ceiling(n)
    assert 0 < metric.floor() < floor < ceiling  # the small-sample bias raises the floor at n=64
    cov = metric.class_coverage(test_x)
    assert cov.shape == (10,) and float(cov.sum()) == pytest.approx(1.0)
    assert float(cov.min()) > 0.07
    # a set with one class only is far from the test split and covers one class
    ones = test_x[test_y == 1][:30]
    r = metric.report(ones)
    assert r["classes_present"] <= 3 and r["fdd"] > floor
    assert set(r) >= {"n", "fdd", "floor", "ceiling", "ratio", "accuracy", "coverage", "classes_present"}


def test_digit_metric_cache_round_trip_and_corruption(metric, metric_cache):
    from genfast.data import load_digits

    x, _ = load_digits("test")
    again = DigitMetric.from_data(epochs=8, cache=metric_cache)  # loaded, not retrained
    assert torch.equal(again.features(x[:10]), metric.features(x[:10]))
    path = next(metric_cache.glob("digit_classifier-*.safetensors"))
    path.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="retraining"):
        fresh = DigitMetric.from_data(epochs=8, cache=metric_cache)
    assert torch.allclose(fresh.features(x[:10]), metric.features(x[:10]), atol=1e-4)  # seeded: same weights


def test_digit_metric_bad_input(metric):
    with pytest.raises(ValueError, match="images"):
        metric.frechet_distance(torch.zeros(4, 1, 28, 28))
    with pytest.raises(TypeError, match="images"):
        metric.class_coverage(torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images"):
        metric.frechet_distance(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="n must"):
        metric.floor(10**6)
    with pytest.raises(ValueError, match="labels"):
        DigitMetric.from_data((torch.zeros(4, 1, 8, 8), None), cache=False)
    with pytest.raises(ValueError, match="num_classes"):
        DigitClassifier(num_classes=0)


def test_classifier_shapes():
    net = DigitClassifier(in_channels=3, num_classes=4, feature_dim=16)
    x = torch.zeros(2, 3, 28, 28)
    assert net.features(x).shape == (2, 16) and net(x).shape == (2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net(torch.zeros(2, 3, 8, 8))
