"""Kullback-Leibler divergence of diagonal Gaussians to the standard normal prior."""

from __future__ import annotations

import torch

from genfast._checks import check_tensor

__all__ = ["gaussian_kl"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per example, in nats.

    ``KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)``.

    Args:
        mu: ``[B, D]`` float means of the posterior.
        logvar: ``[B, D]`` float log-variances (natural log).

    Returns:
        ``[B]`` KL divergences (nats), >= 0.

    Raises:
        TypeError: non-floating tensors. ValueError: shapes differ or are not ``[B, D]``.

    Source: Kingma & Welling 2014, "Auto-Encoding Variational Bayes", appendix B (the negative
    KL term of eq. 10).
    """
    for name, t in (("mu", mu), ("logvar", logvar)):
        check_tensor(name, t, floating=True)
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ValueError(f"mu and logvar must both be [B, D], got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)
