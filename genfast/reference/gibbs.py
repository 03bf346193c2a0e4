"""Pure-PyTorch oracle of block Gibbs sampling in a restricted Boltzmann machine.

This module is the specification of :func:`genfast.ops.gibbs`; every backend (C++ CPU, CUDA,
Triton) produces the same chain for the same seed, up to the float-rounding rule below.

Model (Hinton 2010, "A practical guide to training restricted Boltzmann machines", sections 3
and 13.2; Smolensky 1986; Freund and Haussler 1992). Visible states ``v [B, V]``, weight
``W [H, V]`` (the layout of scikit-learn's ``BernoulliRBM.components_``), visible bias
``b [V]``, hidden bias ``c [H]``, noise scale ``sigma`` (Gaussian visible units only; 1 for
Bernoulli visible units). One full Gibbs step is

* hidden half-step:  ``h_prob = sigmoid(c + (v @ W.T) / sigma)``,  ``h = 1[u_h < h_prob]``;
* visible half-step: Bernoulli: ``v_prob = sigmoid(b + h @ W)``, ``v = 1[u_v < v_prob]``;
  Gaussian: ``v_mean = b + sigma * (h @ W)``, ``v = v_mean + sigma * z_v``.

The random numbers. Each draw uses one number of genfast's counter-based Philox stream
(:mod:`genfast.reference.random`, four numbers per Philox counter): ``u`` is the uniform at
that position, ``z`` the normal at that position. For a call with ``k``
steps on ``B`` chains at ``offset``, step ``s`` (0-based) starts at
``base_s = offset + s * B * (H + V)``; the hidden unit ``j`` of chain ``b`` uses
``base_s + b * H + j`` and the visible unit ``i`` of chain ``b`` uses
``base_s + B * H + b * V + i``. A call consumes ``k * B * (H + V)`` numbers
(:func:`num_counters`); ``k`` steps at ``offset`` equal ``k1`` steps at ``offset`` followed by
``k - k1`` steps at ``offset + num_counters(B, V, H, k1)`` from the returned visible state.

Precision. The chain's state and all arithmetic are float32 (float64 for float64 inputs);
bfloat16 / float16 weights are widened exactly, and the outputs are rounded to the input dtype
at the end. A Bernoulli draw fires when ``u < p`` with ``u`` a multiple of ``2^-24`` in [0, 1):
so ``p = 0`` never fires and ``p = 1`` always does.

The comparison rule. Backends sum the products in different orders, so their probabilities
differ from this oracle's by float rounding (about ``1e-7`` here). A draw can then differ only
where ``u`` lies within that rounding of ``p``; tests therefore compare a backend with the oracle
*teacher-forced*: each half-step of the oracle is fed the backend's previous state, and a sample
may differ from the oracle's only where ``|u - p_oracle| <= 1e-5`` (in practice about one draw
in 10^5 at most), while the probabilities must agree to ``1e-5``. Within one backend the chain
is deterministic: same seed, same chain.
"""

from __future__ import annotations

import torch

from genfast.reference.random import rand as philox_rand
from genfast.reference.random import randn as philox_randn

VISIBLE_TYPES = ("bernoulli", "gaussian")


def num_counters(batch: int, n_visible: int, n_hidden: int, k: int) -> int:
    """Stream positions (numbers) consumed by ``k`` Gibbs steps of ``batch`` chains."""
    return int(k) * int(batch) * (int(n_hidden) + int(n_visible))


def counter_offsets(batch: int, n_visible: int, n_hidden: int, step: int, offset: int = 0) -> tuple[int, int]:
    """Stream positions of element 0 of the hidden draw and of the visible draw of ``step``.

    Returns:
        ``(hidden_offset, visible_offset)``: the hidden unit ``j`` of chain ``b`` uses
        ``hidden_offset + b * n_hidden + j``, the visible unit ``i`` uses
        ``visible_offset + b * n_visible + i`` (positions modulo 2^64).
    """
    base = int(offset) + int(step) * int(batch) * (int(n_hidden) + int(n_visible))
    return base % 2**64, (base + int(batch) * int(n_hidden)) % 2**64


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def hidden_probs(v: torch.Tensor, weight: torch.Tensor, hidden_bias: torch.Tensor,
                 sigma: float = 1.0) -> torch.Tensor:
    """``p(h = 1 | v) = sigmoid(c + (v @ W.T) / sigma)`` in the compute dtype, shape [B, H]."""
    cd = _compute_dtype(weight.dtype)
    acc = v.to(cd) @ weight.to(cd).T
    # 1 / sigma rounded as the kernels compute it: in float32
    one = torch.tensor(1.0, dtype=torch.float32)
    inv_sigma = (one / torch.tensor(float(sigma), dtype=torch.float32)).to(cd)
    return torch.sigmoid(hidden_bias.to(cd) + inv_sigma * acc)


def visible_mean(h: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor,
                 visible: str = "bernoulli", sigma: float = 1.0) -> torch.Tensor:
    """``p(v = 1 | h) = sigmoid(b + h @ W)`` (Bernoulli) or the mean ``b + sigma * (h @ W)``
    (Gaussian), in the compute dtype, shape [B, V]."""
    cd = _compute_dtype(weight.dtype)
    acc = h.to(cd) @ weight.to(cd)
    if visible == "gaussian":
        return visible_bias.to(cd) + torch.tensor(float(sigma), dtype=torch.float32).to(cd) * acc
    return torch.sigmoid(visible_bias.to(cd) + acc)


def bernoulli_draw(p: torch.Tensor, *, seed: int, offset: int) -> torch.Tensor:
    """``1[u < p]`` with ``u`` the Philox uniform at ``offset + flat index`` (same dtype as p)."""
    u = philox_rand(p.shape, seed=seed, offset=offset, device=p.device).to(p.dtype)
    return (u < p).to(p.dtype)


def gaussian_draw(mean: torch.Tensor, sigma: float, *, seed: int, offset: int) -> torch.Tensor:
    """``mean + sigma * z`` with ``z`` the Philox normal at ``offset + flat index``."""
    z = philox_randn(mean.shape, seed=seed, offset=offset, dtype=torch.float64, device=mean.device)
    s = torch.tensor(float(sigma), dtype=torch.float32).to(mean.dtype)
    return mean + s * z.to(mean.dtype)


def hidden_half_step(v, weight, hidden_bias, *, seed, offset, sigma=1.0):
    """One hidden half-step: returns ``(h, h_prob)`` in the compute dtype; ``offset`` is the
    counter of element 0 (see :func:`counter_offsets`)."""
    p = hidden_probs(v, weight, hidden_bias, sigma)
    return bernoulli_draw(p, seed=seed, offset=offset), p


def visible_half_step(h, weight, visible_bias, *, seed, offset, visible="bernoulli", sigma=1.0):
    """One visible half-step: returns ``(v, v_prob_or_mean)`` in the compute dtype."""
    m = visible_mean(h, weight, visible_bias, visible, sigma)
    if visible == "gaussian":
        return gaussian_draw(m, sigma, seed=seed, offset=offset), m
    return bernoulli_draw(m, seed=seed, offset=offset), m


def gibbs(v: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor, *,
          k: int = 1, seed: int, offset: int = 0, visible: str = "bernoulli", sigma: float = 1.0):
    """``k`` full block-Gibbs steps from ``v`` (reference implementation).

    Args / Returns: as :func:`genfast.ops.gibbs`: ``(v, h, v_prob, h_prob)`` where ``h`` is the
    last hidden sample (drawn from ``h_prob``) and ``v`` the last visible sample (drawn from
    ``v_prob``, the mean for Gaussian visible units), all in ``v.dtype``.
    """
    batch, n_visible = v.shape
    n_hidden = weight.shape[0]
    sigma = float(sigma) if visible == "gaussian" else 1.0
    state = v.to(_compute_dtype(weight.dtype))
    for s in range(int(k)):
        off_h, off_v = counter_offsets(batch, n_visible, n_hidden, s, offset)
        h, h_prob = hidden_half_step(state, weight, hidden_bias, seed=seed, offset=off_h, sigma=sigma)
        state, v_prob = visible_half_step(h, weight, visible_bias, seed=seed, offset=off_v, visible=visible,
                                          sigma=sigma)
    dt = v.dtype
    return state.to(dt), h.to(dt), v_prob.to(dt), h_prob.to(dt)
