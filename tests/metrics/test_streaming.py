"""genfast.metrics.streaming (torchmetrics Metrics) against genfast.metrics.DigitMetric, fed in
batches; state merging (what torchmetrics' process sync does); the digit classifier inside
torchmetrics' own FrechetInceptionDistance; improved precision/recall on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genfast.metrics import DigitMetric, precision_recall
from genfast.testing import stable_seed

torchmetrics = pytest.importorskip("torchmetrics")
from genfast.metrics.streaming import (  # noqa: E402
    DigitClassCoverage,
    DigitFeatureExtractor,
    DigitPrecisionRecall,
    FrechetDigitDistance,
)


@pytest.fixture(scope="module")
def metric(tmp_path_factory):
    # 8 epochs instead of 30, as tests/metrics/test_metrics.py: 96%+ test accuracy
    return DigitMetric.from_data(epochs=8, cache=tmp_path_factory.mktemp("genfast_cache"))


def _images(metric, n, seed):
    """Train-split digits with noise: a 'generator' neither perfect nor useless."""
    g = torch.Generator().manual_seed(seed)
    x = metric.train_images[torch.randperm(len(metric.train_images), generator=g)[:n]]
    return (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("batch", [7, 100, 1000])
def test_streaming_fdd_equals_digit_metric(metric, batch):
    seed = stable_seed("fdd", batch)
    x = _images(metric, 700, seed)
    m = FrechetDigitDistance(metric)
    for s in range(0, len(x), batch):
        m.update(x[s : s + batch])
    got, want = float(m.compute()), metric.frechet_distance(x)
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (seed, got, want)
    m.reset()
    with pytest.raises(ValueError, match="2 images"):
        m.compute()


def test_merged_states_equal_one_stream(metric):
    """Two metrics fed halves, merged as torchmetrics merges processes' states (sum), equal one
    fed everything."""
    x = _images(metric, 400, stable_seed("merge"))
    a, b, whole = FrechetDigitDistance(metric), FrechetDigitDistance(metric), FrechetDigitDistance(metric)
    a.update(x[:150])
    b.update(x[150:])
    whole.update(x)
    a.merge_state(b)
    # 1e-6: the classifier's float32 features depend slightly on the batch it ran in (measured 5e-8)
    assert abs(float(a.compute()) - float(whole.compute())) <= 1e-6 * float(whole.compute())
    c1, c2 = DigitClassCoverage(metric), DigitClassCoverage(metric)
    c1.update(x[:150])
    c2.update(x[150:])
    c1.merge_state(c2)
    torch.testing.assert_close(c1.compute(), metric.class_coverage(x))


def test_classifier_inside_torchmetrics_fid(metric):
    from torchmetrics.image.fid import FrechetInceptionDistance

    x = _images(metric, 500, stable_seed("tm-fid"))
    fid = FrechetInceptionDistance(feature=DigitFeatureExtractor(metric.classifier))
    for s in range(0, len(metric.test_images), 128):
        fid.update(metric.test_images[s : s + 128], real=True)
    fid.update(x, real=False)
    want = metric.frechet_distance(x)
    got = float(fid.compute())
    # torchmetrics takes sqrt of eigvals of sigma1 sigma2 (float64), genfast a symmetric form
    assert abs(got - want) <= 1e-5 * max(1.0, want), (got, want)
    # uint8 images in [0, 255] and [0, 1] floats map to the same features
    u8 = ((x[:5] + 1) * 127.5).round().to(torch.uint8)
    ext01 = DigitFeatureExtractor(metric.classifier, input_range="zero_one")
    f_u8, f_01 = DigitFeatureExtractor(metric.classifier)(u8), ext01(u8.float() / 255)
    torch.testing.assert_close(f_u8, f_01)
    with pytest.raises(ValueError, match="input_range"):
        DigitFeatureExtractor(metric.classifier, input_range="0-255")


def test_precision_recall_known_cases():
    g = torch.Generator().manual_seed(stable_seed("pr"))
    real = torch.randn(300, 4, generator=g, dtype=torch.float64)
    assert precision_recall(real, real) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # generated = half of the real set: every generated point is a real point (precision 1),
    # and the real points far from that half are missed (recall < 1)
    p, r = precision_recall(real, real[:150])
    assert p == 1.0 and 0.5 < r < 1.0
    # 1-D, k = 1, by hand: real {0, 1, 2, 10} has radii {1, 1, 1, 8}; fake {0.5, 5, 30}:
    # 0.5 and 5 lie in a real ball (5 in 10's), 30 does not -> precision 2/3. Fake radii
    # {4.5, 4.5, 25}: real 0, 1, 2 lie in 0.5's ball, 10 in 5's and 30's -> recall 1.
    real1 = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake1 = np.array([[0.5], [5.0], [30.0]])
    p, r = precision_recall(real1, fake1, k=1)
    assert p == pytest.approx(2 / 3) and r == 1.0
    with pytest.raises(ValueError, match="N > k"):
        precision_recall(real[:3], real, k=3)
    with pytest.raises(TypeError, match="k"):
        precision_recall(real, real, k=0)


def test_streaming_precision_recall(metric):
    x = _images(metric, 300, stable_seed("pr-stream"))
    m = DigitPrecisionRecall(metric)
    for s in range(0, 300, 64):
        m.update(x[s : s + 64])
    p, r = m.compute()
    want = precision_recall(metric._test_features, metric.features(x))
    assert (float(p), float(r)) == pytest.approx(want, abs=1e-12)
    assert 0.0 < float(p) <= 1.0 and 0.0 < float(r) <= 1.0
    real = DigitPrecisionRecall(metric)
    real.update(metric.test_images, real=True)
    real.update(metric.test_images)
    assert tuple(float(v) for v in real.compute()) == (1.0, 1.0)
