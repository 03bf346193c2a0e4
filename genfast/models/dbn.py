"""Deep belief networks: a greedy layer-wise stack of Bernoulli RBMs (Hinton, Osindero and Teh
2006) that samples by Gibbs sampling in the top RBM and a downward pass."""

from __future__ import annotations

import torch
from torch import nn

from genfast._checks import check_int
from genfast.models.rbm import BernoulliRBM

__all__ = ["DBN"]


class DBN(nn.Module):
    """Deep belief network: a greedy layer-wise stack of Bernoulli RBMs (Hinton et al. 2006).

    Args:
        sizes: layer widths ``[V, H1, H2, ...]`` (at least two).
        seed, device, dtype, backend: passed to each :class:`BernoulliRBM` (layer i gets seed + i).
    """

    def __init__(self, sizes, *, seed: int = 0, device=None, dtype=torch.float32, backend: str = "auto"):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"DBN: sizes must list at least 2 layer widths, got {sizes}")
        self.layers = nn.ModuleList(
            BernoulliRBM(sizes[i], sizes[i + 1], seed=seed + i, device=device, dtype=dtype, backend=backend)
            for i in range(len(sizes) - 1)
        )

    def transform(self, v: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Upward pass of hidden probabilities through the first ``upto`` layers (all by default)."""
        for layer in list(self.layers)[:upto]:
            v = layer.hidden_probs(v)
        return v

    def fit(self, data: torch.Tensor, *, epochs: int = 10, **fit_kwargs) -> list[list[float]]:
        """Greedy training: each RBM on the hidden probabilities of the one below.

        Returns:
            Per layer, the reconstruction-error history of :meth:`BernoulliRBM.fit`.
        """
        hist = []
        x = data
        for layer in self.layers:
            hist.append(layer.fit(x, epochs=epochs, **fit_kwargs))
            x = layer.hidden_probs(x)
        return hist

    def sample(self, n: int, k: int = 100, *, probabilities: bool = True) -> torch.Tensor:
        """Fantasy samples: k Gibbs steps in the top RBM from uniform noise, then a downward pass.

        Args:
            n: number of samples. k: Gibbs steps in the top RBM.
            probabilities: return the bottom layer's ``p(v | h)`` (smooth images) instead of a
                binary sample.

        Returns:
            [n, V] in the model's dtype.
        """
        check_int("n", n, op="DBN.sample", lo=0)
        top = self.layers[-1]
        start = top._bernoulli(
            torch.full((n, top.n_visible), 0.5, device=top.weight.device, dtype=top.weight.dtype)
        )
        h = top.gibbs_full(start, k).v
        for i, layer in enumerate(reversed(list(self.layers)[:-1])):
            p = layer.visible_probs(h)
            last = i == len(self.layers) - 2
            h = p if (last and probabilities) else layer._bernoulli(p)
        if len(self.layers) == 1:
            return top.gibbs_full(start, k).v_prob if probabilities else h
        return h
