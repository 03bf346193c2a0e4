"""Sample-quality metrics: the Frechet distance and the Frechet digit distance."""

from .digits import DigitClassifier, DigitMetric
from .frechet import frechet_distance, frechet_distance_from_features, gaussian_stats

__all__ = [
    "DigitClassifier",
    "DigitMetric",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
]
