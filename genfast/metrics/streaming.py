"""The digit metrics as ``torchmetrics.Metric`` objects (streaming ``update`` / ``compute``,
synchronised across processes by torchmetrics), and the digit classifier as a feature extractor
for ``torchmetrics.image.fid.FrechetInceptionDistance(feature=...)``.

Needs ``torchmetrics`` (``pip install torchmetrics``); ``import genfast.metrics`` does not
import this module.
"""

from __future__ import annotations

import torch
from torch import nn

try:
    from torchmetrics import Metric
except ImportError as exc:  # pragma: no cover - an optional dependency
    raise ImportError("genfast.metrics.streaming needs torchmetrics: pip install torchmetrics") from exc

from .digits import DigitClassifier, DigitMetric, _check_images
from .frechet import frechet_distance
from .manifold import precision_recall

__all__ = ["DigitFeatureExtractor", "FrechetDigitDistance", "DigitClassCoverage", "DigitPrecisionRecall"]


class _DigitMetricBase(Metric):
    """What the streamed digit metrics share: torchmetrics' flags and the ``DigitMetric`` they
    score with (``metric``, default ``DigitMetric.from_data()``).

    Raises:
        TypeError: ``metric`` is not a DigitMetric.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, metric: DigitMetric | None = None, **kwargs):
        super().__init__(**kwargs)
        if metric is None:
            metric = DigitMetric.from_data()
        elif not isinstance(metric, DigitMetric):
            raise TypeError(f"metric must be a genfast.metrics.DigitMetric, got {type(metric).__name__}")
        self.digit_metric = metric


class DigitFeatureExtractor(nn.Module):
    """The digit classifier's penultimate layer as a feature extractor, in the form
    ``torchmetrics.image.fid.FrechetInceptionDistance(feature=...)`` (and KID) accept.

    Args:
        classifier: a trained :class:`~genfast.metrics.DigitClassifier` (``DigitMetric.classifier``).
        input_range: how float images are scaled: ``"minus_one_one"`` (genfast's images) or
            ``"zero_one"`` (torchmetrics' ``normalize=True`` convention). uint8 images are read
            as [0, 255] either way.

    Attributes:
        num_features: D, the feature size (so torchmetrics does not probe with a dummy image).

    Raises:
        TypeError: ``classifier`` is not a DigitClassifier. ValueError: unknown ``input_range``.
    """

    def __init__(self, classifier: DigitClassifier, input_range: str = "minus_one_one"):
        super().__init__()
        if not isinstance(classifier, DigitClassifier):
            raise TypeError(f"DigitFeatureExtractor: classifier must be a DigitClassifier, got "
                            f"{type(classifier).__name__}")
        if input_range not in ("minus_one_one", "zero_one"):
            raise ValueError(f"DigitFeatureExtractor: input_range must be 'minus_one_one' or 'zero_one', "
                             f"got {input_range!r}")
        self.classifier = classifier.eval()
        self.input_range = input_range
        self.num_features = classifier.config["feature_dim"]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[N, D]`` (float32) of images ``[N, C, H, W]``."""
        if images.dtype == torch.uint8:
            x = images.float() / 127.5 - 1
        elif self.input_range == "zero_one":
            x = images.float() * 2 - 1
        else:
            x = images.float()
        p = next(self.classifier.parameters())
        return self.classifier.features(x.to(p.device))


class FrechetDigitDistance(_DigitMetricBase):
    """Frechet digit distance (FID's recipe, Heusel et al. 2017, with genfast's digit classifier)
    of generated images to a data set's test split, streamed.

    ``update(images)`` accumulates the feature sum, the sum of outer products and the count (in
    float64, summed across processes by torchmetrics); ``compute()`` forms the mean and the
    unbiased covariance and returns :func:`~genfast.metrics.frechet_distance` to the test split's
    Gaussian: equal to ``DigitMetric.frechet_distance`` of all the images at once.

    Args:
        metric: a :class:`~genfast.metrics.DigitMetric` (default: ``DigitMetric.from_data()``, the
            bundled digits, classifier trained or loaded from the cache).
        **kwargs: torchmetrics' ``Metric`` options (``sync_on_compute``, ``dist_sync_fn``, ...).

    Raises:
        TypeError: ``metric`` is not a DigitMetric.
    """

    higher_is_better = False

    def __init__(self, metric: DigitMetric | None = None, **kwargs):
        super().__init__(metric, **kwargs)
        d = self.digit_metric.classifier.config["feature_dim"]
        self.add_state("features_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("features_outer_sum", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor) -> None:
        """Add generated images ``[N, C, H, W]`` in [-1, 1] of the data set's shape.

        Raises:
            TypeError / ValueError: as ``DigitMetric.features``.
        """
        f = self.digit_metric.features(images).double().to(self.features_sum.device)
        self.features_sum += f.sum(0)
        self.features_outer_sum += f.T @ f
        self.num_samples += f.shape[0]

    def compute(self) -> torch.Tensor:
        """The distance, a float64 scalar tensor.

        Raises:
            ValueError: fewer than 2 images were added.
        """
        n = int(self.num_samples)
        if n < 2:
            raise ValueError(f"FrechetDigitDistance: compute needs at least 2 images, got {n}")
        mu = self.features_sum / n
        cov = (self.features_outer_sum - n * torch.outer(mu, mu)) / (n - 1)
        return torch.tensor(frechet_distance(mu, cov, *self.digit_metric._test_stats), dtype=torch.float64)


class DigitClassCoverage(_DigitMetricBase):
    """Fraction of the generated images the digit classifier assigns to each class, streamed
    (``DigitMetric.class_coverage``; mode coverage, Srivastava et al. 2017).

    Args:
        metric: a :class:`~genfast.metrics.DigitMetric` (default as :class:`FrechetDigitDistance`).
        **kwargs: torchmetrics' ``Metric`` options.
    """

    higher_is_better = True

    def __init__(self, metric: DigitMetric | None = None, **kwargs):
        super().__init__(metric, **kwargs)
        self.add_state("counts", torch.zeros(self.digit_metric.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor) -> None:
        """Add generated images ``[N, C, H, W]`` in [-1, 1]."""
        pred = self.digit_metric.predict(images)
        self.counts += torch.bincount(pred, minlength=self.digit_metric.num_classes).to(self.counts.device)

    def compute(self) -> torch.Tensor:
        """``[K]`` float64 fractions summing to 1.

        Raises:
            ValueError: no image was added.
        """
        total = int(self.counts.sum())
        if total == 0:
            raise ValueError("DigitClassCoverage: compute needs at least 1 image")
        return self.counts.double() / total


class DigitPrecisionRecall(_DigitMetricBase):
    """Improved precision and recall (Kynkaanniemi et al. 2019) on digit-classifier features,
    streamed: ``update(images, real=...)`` as torchmetrics' FID; ``compute()`` returns
    ``(precision, recall)`` from :func:`~genfast.metrics.precision_recall`.

    The real set defaults to the data set's test split (``real_from_test=True``); images added
    with ``real=True`` replace it. Features are kept (concatenated across processes).

    Args:
        metric: a :class:`~genfast.metrics.DigitMetric` (default as :class:`FrechetDigitDistance`).
        k: the neighbourhood size (3 in the paper).
        real_from_test: use the test split when no real images are added.
        **kwargs: torchmetrics' ``Metric`` options.
    """

    higher_is_better = True

    def __init__(self, metric: DigitMetric | None = None, k: int = 3, real_from_test: bool = True, **kwargs):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TypeError(f"DigitPrecisionRecall: k must be an int >= 1, got {k!r}")
        super().__init__(metric, **kwargs)
        self.k, self.real_from_test = k, bool(real_from_test)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor, real: bool = False) -> None:
        """Add images ``[N, C, H, W]`` in [-1, 1], generated (default) or real."""
        _check_images(images, "images", self.digit_metric.image_shape)
        f = self.digit_metric.features(images)
        (self.real_features if real else self.fake_features).append(f)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(precision, recall)`` as float64 scalar tensors.

        Raises:
            ValueError: no generated images, or no real ones without ``real_from_test``.
        """
        def cat(v):
            return v if isinstance(v, torch.Tensor) else (torch.cat(v) if len(v) else None)

        fake, real = cat(self.fake_features), cat(self.real_features)
        if fake is None:
            raise ValueError("DigitPrecisionRecall: compute needs generated images (update(images))")
        if real is None:
            if not self.real_from_test:
                raise ValueError("DigitPrecisionRecall: no real images were added (update(images, real=True))")
            real = self.digit_metric._test_features
        p, r = precision_recall(real, fake, k=self.k)
        return torch.tensor(p, dtype=torch.float64), torch.tensor(r, dtype=torch.float64)
