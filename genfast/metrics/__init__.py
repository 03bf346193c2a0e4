"""Sample-quality metrics: the Frechet distance, the Frechet digit distance, the kernel inception
distance, improved precision and recall. The torchmetrics ``Metric`` forms live in
:mod:`genfast.metrics.streaming` (imported on demand: it needs torchmetrics)."""

from .digits import DigitClassifier, DigitMetric
from .frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from .kid import kernel_inception_distance
from .manifold import precision_recall

__all__ = [
    "DigitClassifier",
    "DigitMetric",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "precision_recall",
]
