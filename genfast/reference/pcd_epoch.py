"""Pure-PyTorch oracle of one epoch of persistent contrastive divergence in an RBM.

This module is the specification of :func:`genfast.ops.pcd_epoch`: the C++ CPU kernel
(csrc/pcd_epoch_cpu.cpp) and the composed backends produce the same parameters and chains for
the same seed, up to the float-rounding rule of :mod:`genfast.reference.gibbs`.

One epoch is the mini-batch loop of :class:`genfast.sklearn.BernoulliRBM` (scikit-learn's
``BernoulliRBM._fit``, with the persistent chain kept in the visible layer; Tieleman 2008).
The data ``x [N, V]`` is cut into consecutive mini-batches of ``batch_size`` rows (the last may
be shorter: scikit-learn's ``gen_even_slices`` over ``ceil(N / batch_size) * batch_size``); the
``C`` chains ``v_chain [C, V]`` persist across them. For a mini-batch ``v_pos [nb, V]``, with
``inv_sigma = 1 / sigma`` (sigma = 1 for Bernoulli visible units) and ``lr = learning_rate / nb``:

1. ``hs = sigmoid(c + [v_pos; v_chain] W^T * inv_sigma)``  ([nb + C, H], the current parameters,
   :func:`genfast.reference.gibbs.hidden_probs`, which rounds ``inv_sigma`` to float32);
2. the chains advance ``k`` Gibbs steps under the same parameters (their first hidden draw uses
   the rows ``hs[nb:]``), giving ``v_chain'`` and the hidden sample ``h_chain`` it was drawn from;
3. ``W += lr * inv_sigma * (hs[:nb]^T v_pos - hs[nb:]^T v_chain)``,
   ``c += lr * (sum hs[:nb] - sum hs[nb:])``,
   ``b += lr * inv_sigma^2 * (sum v_pos - sum v_chain)``, with the chains *before* step 2;
4. ``v_chain = v_chain'``.

The random numbers. The chains' draws are those of :func:`genfast.ops.gibbs` on the rows that
the estimator passes to it, so the op reproduces the estimator's per-batch loop: with ``k = 1``
one Gibbs call on the stacked ``R = nb + C`` rows ``[v_pos; v_chain]`` (the chains are rows
``nb ..``; the data rows' draws are positions nobody reads), with ``k > 1`` a ``k``-step call on
the ``R = C`` chains alone. Step ``s`` of a mini-batch starting at stream position ``p`` then
draws hidden unit ``j`` of chain ``r`` at ``p + s R (H + V) + (shift + r) H + j`` and visible unit
``i`` at ``p + s R (H + V) + R H + (shift + r) V + i`` (``shift = nb`` for ``k = 1``, else 0), and
the mini-batch consumes ``k R (H + V)`` positions (:func:`num_counters`).

Precision: the parameters and chains are float32 throughout the epoch (float64 for float64
inputs) and rounded to the input dtype at the end.
"""

from __future__ import annotations

import torch

from genfast.reference.gibbs import bernoulli_draw, hidden_probs, visible_half_step


def _rows_per_call(nb: int, n_chains: int, k: int) -> tuple[int, int]:
    """(R, shift): rows of the Gibbs call that advances the chains, and the chains' first row."""
    return (nb + n_chains, nb) if int(k) == 1 else (n_chains, 0)


def batch_slices(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The mini-batches ``[start, stop)`` of an epoch over ``n`` rows (scikit-learn's slices)."""
    return [(s, min(s + int(batch_size), int(n))) for s in range(0, int(n), int(batch_size))]


def num_counters(n: int, batch_size: int, n_chains: int, n_visible: int, n_hidden: int, k: int = 1) -> int:
    """Stream positions consumed by one epoch over ``n`` rows."""
    total = 0
    for start, stop in batch_slices(n, batch_size):
        rows, _ = _rows_per_call(stop - start, n_chains, k)
        total += int(k) * rows * (int(n_visible) + int(n_hidden))
    return total


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def pcd_epoch(x: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
              v_chain: torch.Tensor, *, batch_size: int, learning_rate: float, k: int = 1, seed: int,
              offset: int = 0, visible: str = "bernoulli", sigma: float = 1.0):
    """One epoch of mini-batch PCD-k (reference implementation).

    Args / Returns: as :func:`genfast.ops.pcd_epoch`: ``(weight, visible_bias, hidden_bias,
    v_chain, h_chain)`` in ``weight.dtype``; ``h_chain`` is zeros when ``x`` has no rows.
    """
    cd = _compute_dtype(weight.dtype)
    n_hidden, n_visible = weight.shape
    n_chains = v_chain.shape[0]
    sigma = float(sigma) if visible == "gaussian" else 1.0
    inv_sigma = 1.0 / sigma  # of the update; the hidden probabilities round it to float32 (gibbs')
    w = weight.to(cd).clone()
    b = visible_bias.to(cd).clone()
    c = hidden_bias.to(cd).clone()
    chain = v_chain.to(cd).clone()
    h_chain = torch.zeros(n_chains, n_hidden, dtype=cd, device=weight.device)
    pos = int(offset)
    for start, stop in batch_slices(x.shape[0], batch_size):
        v_pos = x[start:stop].to(cd)
        nb = stop - start
        hs = hidden_probs(torch.cat([v_pos, chain]), w, c, sigma)
        rows, shift = _rows_per_call(nb, n_chains, k)
        state = chain
        for s in range(int(k)):
            base = pos + s * rows * (n_hidden + n_visible)
            hp = hs[nb:] if s == 0 else hidden_probs(state, w, c, sigma)
            h_chain = bernoulli_draw(hp, seed=seed, offset=(base + shift * n_hidden) % 2**64)
            state, _ = visible_half_step(h_chain, w, b, seed=seed,
                                         offset=(base + rows * n_hidden + shift * n_visible) % 2**64,
                                         visible=visible, sigma=sigma)
        pos += int(k) * rows * (n_hidden + n_visible)
        lr = float(learning_rate) / nb
        h_pos, h_neg = hs[:nb], hs[nb:]
        w += (lr * inv_sigma) * (h_pos.T @ v_pos - h_neg.T @ chain)
        c += lr * (h_pos.sum(0) - h_neg.sum(0))
        b += (lr * inv_sigma * inv_sigma) * (v_pos.sum(0) - chain.sum(0))
        chain = state
    dt = weight.dtype
    return w.to(dt), b.to(dt), c.to(dt), chain.to(dt), h_chain.to(dt)
