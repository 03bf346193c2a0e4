"""Pure-PyTorch oracle of vector quantisation: the nearest-code search and the quantise step.

Written to be read, not to be fast: it materialises the N x K distance matrix (and, for the
EMA statistics, the N x K one-hot), in float64. Same signatures as :mod:`genfast.ops.vq`.

Definitions (van den Oord et al. 2017, "Neural Discrete Representation Learning", eq. (1)-(3)):

* nearest code: ``k*(i) = argmin_k ||z_i - e_k||^2`` (or ``argmax_k cos(z_i, e_k)`` with
  ``use_cosine_sim``, the normalised codebook of Yu et al. 2022, "Vector-quantized image
  modeling with improved VQGAN"); ties go to the lowest index, as ``torch.argmin``;
* the returned distance is ``||z_i - e_k*||^2`` (or the cosine similarity
  ``z.e / (max(|z|, eps) max(|e|, eps))``, eps = 1e-12 as ``F.normalize``);
* ``z_q = e_k*``; straight-through estimator ``z + sg[z_q - z]``; codebook loss
  ``mean ||sg[z] - z_q||^2``; commitment loss ``beta * mean ||z - sg[z_q]||^2`` (means over
  all N * D elements, as ``F.mse_loss``);
* EMA statistics: ``counts_k = sum_i [k*(i) = k]`` and ``sums_k = sum_i [k*(i) = k] z_i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64)


def _out_dtype(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def distance_matrix(z: torch.Tensor, codebook: torch.Tensor, use_cosine_sim: bool = False) -> torch.Tensor:
    """The full [N, K] matrix, in float64: squared distances, or cosine similarities.

    The expanded form ``|z|^2 - 2 z.e + |e|^2`` is exact for integer-valued inputs (exact ties
    stay ties) and accurate to about 1e-16 relative otherwise.
    """
    zw, ew = _wide(z), _wide(codebook)
    if use_cosine_sim:
        return F.normalize(zw, dim=1, eps=NORM_EPS) @ F.normalize(ew, dim=1, eps=NORM_EPS).T
    d2 = zw.pow(2).sum(1, keepdim=True) - 2.0 * zw @ ew.T + ew.pow(2).sum(1)[None, :]
    return d2.clamp_min(0.0)


def code_distance(
    z: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor, use_cosine_sim: bool = False
) -> torch.Tensor:
    """float64 [N]: the distance (or similarity) of each row of z to the code ``indices``."""
    zw, e = _wide(z), _wide(codebook)[indices]
    if use_cosine_sim:
        return (F.normalize(zw, dim=1, eps=NORM_EPS) * F.normalize(e, dim=1, eps=NORM_EPS)).sum(1)
    return (zw - e).pow(2).sum(1)


def vq_nearest(
    z: torch.Tensor, codebook: torch.Tensor, *, use_cosine_sim: bool = False, backend: str = "reference"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code of each row (reference of :func:`genfast.ops.vq_nearest`).

    Args:
        z: [N, D] float tensor.
        codebook: [K, D] same dtype and device.
        use_cosine_sim: largest cosine similarity instead of smallest squared distance.
        backend: ignored (kept for the signature).

    Returns:
        (indices int64 [N], distances [N] float32, float64 for float64 inputs).
    """
    dm = distance_matrix(z, codebook, use_cosine_sim)
    if z.shape[0] == 0:
        idx = torch.zeros(0, dtype=torch.int64, device=z.device)
    else:
        idx = dm.argmax(1) if use_cosine_sim else dm.argmin(1)
    dist = code_distance(z, codebook, idx, use_cosine_sim)
    return idx, dist.to(_out_dtype(z))


def vq_statistics(
    z: torch.Tensor, indices: torch.Tensor, num_codes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code counts [K] and sums [K, D] through the N x K one-hot (the EMA definition).

    Returns float32 tensors (float64 for float64 z).
    """
    onehot = F.one_hot(indices, num_codes).to(torch.float64)
    counts = onehot.sum(0)
    sums = onehot.T @ _wide(z)
    return counts.to(_out_dtype(z)), sums.to(_out_dtype(z))


def vq_quantize_raw(
    z: torch.Tensor, codebook: torch.Tensor, *, use_cosine_sim: bool = False, return_statistics: bool = False
):
    """The non-differentiable fused quantise pass: (indices, distances, z_q, counts, sums).

    ``z_q`` is the gathered codes in z's dtype; counts/sums are empty ([0] and [0, D]) unless
    ``return_statistics``.
    """
    idx, dist = vq_nearest(z, codebook, use_cosine_sim=use_cosine_sim)
    z_q = codebook[idx]
    if return_statistics:
        counts, sums = vq_statistics(z, idx, codebook.shape[0])
    else:
        counts = torch.zeros(0, dtype=_out_dtype(z), device=z.device)
        sums = torch.zeros(0, z.shape[1], dtype=_out_dtype(z), device=z.device)
    return idx, dist, z_q, counts, sums


def vq_quantize(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    beta: float = 0.25,
    use_cosine_sim: bool = False,
    return_statistics: bool = False,
    backend: str = "reference",
):
    """Reference autograd quantise step (what :func:`genfast.ops.vq_quantize` computes).

    Returns:
        dict with ``z_q`` (straight-through, [N, D]), ``indices``, ``distances``,
        ``codebook_loss``, ``commitment_loss`` (0-dim, z's dtype), ``counts``, ``sums``.
    """
    idx, dist, _, counts, sums = vq_quantize_raw(
        z.detach(), codebook.detach(), use_cosine_sim=use_cosine_sim, return_statistics=return_statistics
    )
    e = codebook[idx]  # differentiable gather (embedding backward: index_add)
    codebook_loss = F.mse_loss(e, z.detach()) if z.numel() else z.new_zeros(())
    commitment_loss = beta * F.mse_loss(z, e.detach()) if z.numel() else z.new_zeros(())
    z_q = z + (e - z).detach()
    return {
        "z_q": z_q,
        "indices": idx,
        "distances": dist,
        "codebook_loss": codebook_loss,
        "commitment_loss": commitment_loss,
        "counts": counts,
        "sums": sums,
    }


__all__ = [
    "vq_nearest",
    "vq_quantize",
    "vq_quantize_raw",
    "vq_statistics",
    "distance_matrix",
    "code_distance",
]
