"""One epoch of persistent contrastive divergence in an RBM: ``genfast.ops.pcd_epoch``.

(The module is ``genfast.ops.pcd``: ``genfast.ops.pcd_epoch`` is the function.)

Every mini-batch update of an epoch of PCD-k (Tieleman 2008; the loop of
:class:`genfast.sklearn.BernoulliRBM`, scikit-learn's ``BernoulliRBM._fit``) in one call. On
the CPU the whole epoch runs in C++ (csrc/pcd_epoch_cpu.cpp): at scikit-learn's default of 10
rows per mini-batch an update is a few microseconds of arithmetic, and one Python-level update
(a Gibbs op call, three in-place products, the slicing) costs far more than that. The other
backends compose the same epoch from :func:`genfast.ops.gibbs` calls (one per mini-batch, on the
Gibbs backend named by ``backend``) and in-place ``torch`` products. Specification, including
the stream position of every draw: :mod:`genfast.reference.pcd_epoch`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from genfast import _backends
from genfast.ops._common import (
    check_choice,
    check_int,
    check_number,
    eager_fast_path,
    philox_key,
    resolve_backend,
)
from genfast.ops.gibbs_sampling import _SIGMA_MIN, MAX_K, _i64, check_rbm_tensors
from genfast.reference import pcd_epoch as _ref

_OP = "genfast.ops.pcd_epoch"
# The backend values are the Gibbs op's: "cpu" runs the fused C++ epoch, "reference" the oracle,
# and every other value the composed epoch with that Gibbs backend.
_FAMILY = "gibbs"


class PcdEpochResult(NamedTuple):
    """Outputs of :func:`pcd_epoch` (all in the dtype of ``weight``).

    Attributes:
        weight: [H, V] the weights after the epoch.
        visible_bias: [V] b after the epoch.
        hidden_bias: [H] c after the epoch.
        v_chain: [C, V] the chains' visible state after the epoch.
        h_chain: [C, H] the hidden sample ``v_chain`` was drawn from (zeros when x has no rows).
    """

    weight: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor
    v_chain: torch.Tensor
    h_chain: torch.Tensor


def _epoch_composed(x, w, b, c, chain, philox, batch_size, learning_rate, k, gaussian, sigma, gibbs_backend):
    """The epoch as a Python loop over mini-batches: one :func:`genfast.ops.gibbs` call and three
    in-place products per update, on float32 working copies (what the estimator ran before the
    fused epoch). The stream positions are the reference's."""
    from genfast.ops.gibbs_sampling import gibbs

    n_hidden, n_visible = w.shape
    n_chains = chain.shape[0]
    sig = float(sigma) if gaussian else 1.0
    inv_s = 1.0 / sig
    visible = "gaussian" if gaussian else "bernoulli"
    h_chain = torch.zeros(n_chains, n_hidden, dtype=w.dtype, device=w.device)
    seed, pos = (int(t) for t in philox.tolist())  # one host read per epoch
    for start, stop in _ref.batch_slices(x.shape[0], batch_size):
        v_pos = x[start:stop]
        nb = stop - start
        stacked = torch.cat([v_pos, chain])
        if k == 1:
            out = gibbs(stacked, w, b, c, k=1, seed=seed, offset=pos, visible=visible, sigma=sig,
                        backend=gibbs_backend)
            hs = out.h_prob
            new_chain, h_chain = out.v[nb:], out.h[nb:]
        else:
            hs = torch.addmm(c, stacked, w.T, alpha=inv_s).sigmoid_()
            out = gibbs(chain, w, b, c, k=k, seed=seed, offset=pos, visible=visible, sigma=sig,
                        backend=gibbs_backend)
            new_chain, h_chain = out.v, out.h
        pos = _i64(pos + _ref.num_counters(nb, batch_size, n_chains, n_visible, n_hidden, k))
        lr = float(learning_rate) / nb
        # +1 for the data rows, -1 for the chains: one product updates W, two vector products the biases
        sign = torch.cat([w.new_ones(nb), -w.new_ones(n_chains)])
        signed = stacked * sign[:, None]
        w.addmm_(hs.T, signed, alpha=lr * inv_s)
        c.addmv_(hs.T, sign, alpha=lr)
        b.addmv_(signed.T, w.new_ones(nb + n_chains), alpha=lr * inv_s * inv_s)
        chain = new_chain
    # copies: the last chains are views into the last Gibbs call's outputs (a storage offset)
    keep = torch.contiguous_format
    return w, b, c, chain.clone(memory_format=keep), h_chain.clone(memory_format=keep)


def _resolve(backend, weight):
    """The backend that runs: "cpu" (the C++ epoch), "reference", "composed" (auto off the CPU:
    the Gibbs op's own "auto" per mini-batch) or a Gibbs backend value for the composed epoch.

    float64: the C++ epoch computes in float64 (the same formulas, the double exp), so float64
    runs there on "auto" (CPU tensors) and "cpu"; the oracle elsewhere on "auto"; every other
    backend computes in float32 and refuses float64 (the project's float64 policy)."""
    env = os.environ.get("GENFAST_BACKEND")
    if weight.dtype == torch.float64:
        if backend == "cpu" or (backend == "auto" and not env and weight.device.type == "cpu"
                                and _backends.backends()["cpu"]):
            _backends.resolve("cpu", weight.device, _OP, _FAMILY)  # raises off the CPU or without _C
            return "cpu"
        return "reference" if backend == "auto" else resolve_backend(backend, weight, _OP, _FAMILY)
    if backend == "auto" and weight.device.type != "cpu" and not env:
        return "composed"
    return resolve_backend(backend, weight, _OP, _FAMILY)


def _pcd_epoch_impl(x, weight, visible_bias, hidden_bias, v_chain, philox, batch_size, learning_rate, k,
                    gaussian, sigma, backend):
    resolved = _resolve(backend, weight)
    if _backends.split_backend(resolved)[0] != "cpu":  # the C++ epoch checks its inputs itself
        _check_finite(x, weight, visible_bias, hidden_bias, v_chain)
    if resolved == "reference":
        seed, offset = (int(t) for t in philox.tolist())
        out = _ref.pcd_epoch(x, weight, visible_bias, hidden_bias, v_chain, batch_size=batch_size,
                             learning_rate=learning_rate, k=k, seed=seed, offset=offset,
                             visible="gaussian" if gaussian else "bernoulli", sigma=sigma)
        return tuple(t.contiguous() for t in out)
    dt = weight.dtype
    # working copies of the state in the compute dtype: float32, float64 for float64 (C++ only)
    cd = torch.float64 if dt == torch.float64 else torch.float32
    w = weight.to(cd, copy=True).contiguous()
    b = visible_bias.to(cd, copy=True).contiguous()
    c = hidden_bias.to(cd, copy=True).contiguous()
    chain = v_chain.to(cd, copy=True).contiguous()
    xf = x.to(cd).contiguous()
    if _backends.split_backend(resolved)[0] == "cpu":
        h_chain = torch.zeros(v_chain.shape[0], weight.shape[0], dtype=cd)
        mod = _backends.cpu_module()
        p = mod.PcdEpochParams(
            x=xf.data_ptr(), weight=w.data_ptr(), visible_bias=b.data_ptr(), hidden_bias=c.data_ptr(),
            v_chain=chain.data_ptr(), h_chain=h_chain.data_ptr(), philox=philox.data_ptr(), n=x.shape[0],
            n_visible=weight.shape[1], n_hidden=weight.shape[0], n_chains=v_chain.shape[0], batch_size=batch_size,
            k=k, learning_rate=float(learning_rate), gaussian=gaussian, sigma=float(sigma), float64=cd == torch.float64)
        bad = mod.pcd_epoch(p)
        if bad:
            raise ValueError(f"{_OP}: {_INPUT_NAMES[bad - 1]} must be finite (no NaN or inf)")
    else:
        gibbs_backend = "auto" if resolved == "composed" else resolved
        w, b, c, chain, h_chain = _epoch_composed(xf, w, b, c, chain, philox, batch_size, learning_rate, k,
                                                  gaussian, sigma, gibbs_backend)
    return tuple(t.to(dt) if t.dtype != dt else t for t in (w, b, c, chain, h_chain))


@torch.library.custom_op("genfast::pcd_epoch", mutates_args=())
def _pcd_epoch_op(x: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
                  v_chain: torch.Tensor, philox: torch.Tensor, batch_size: int, learning_rate: float, k: int,
                  gaussian: bool, sigma: float,
                  backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _pcd_epoch_impl(x, weight, visible_bias, hidden_bias, v_chain, philox, batch_size, learning_rate, k,
                           gaussian, sigma, backend)


@_pcd_epoch_op.register_fake
def _pcd_epoch_fake(x, weight, visible_bias, hidden_bias, v_chain, philox, batch_size, learning_rate, k, gaussian,
                    sigma, backend):
    return (torch.empty_like(weight), torch.empty_like(visible_bias), torch.empty_like(hidden_bias),
            torch.empty_like(v_chain), v_chain.new_empty((v_chain.shape[0], weight.shape[0])))


def _validate(x, weight, visible_bias, hidden_bias, v_chain, batch_size, learning_rate, k, visible, sigma,
              backend):
    op = _OP
    check_rbm_tensors(op, weight, visible_bias, hidden_bias, {"x": x, "v_chain": v_chain})
    check_int("batch_size", batch_size, op=op, lo=1, hi=2**31 - 1)
    check_int("k", k, op=op, lo=1, hi=MAX_K)
    learning_rate = check_number("learning_rate", learning_rate, op=op, lo=0.0, lo_open=True)
    check_choice("visible", visible, _ref_visible_types(), op=op)
    sigma = check_number("sigma", sigma, op=op)
    if not _SIGMA_MIN <= sigma <= 3.4028234663852886e38:
        raise ValueError(f"{op}: sigma must be a positive normal float32 number (>= 1.2e-38), got {sigma}")
    _backends.check_backend(backend, op, _FAMILY)
    if weight.dtype == torch.float64 and backend not in ("auto", "reference", "cpu"):
        resolve_backend(backend, weight, op, _FAMILY)  # raises the TypeError of the float64 policy
    return learning_rate, sigma


_INPUT_NAMES = ("x", "weight", "visible_bias", "hidden_bias", "v_chain")


def _check_finite(x, weight, visible_bias, hidden_bias, v_chain):
    """Non-finite inputs are rejected: one update spreads a NaN to every weight, and the CPU
    kernel skips the zero entries of the data and the chains (exact only for finite weights).
    Checked in the implementation, on real tensors (not on fake ones while tracing)."""
    for name, t in zip(_INPUT_NAMES, (x, weight, visible_bias, hidden_bias, v_chain)):
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{_OP}: {name} must be finite (no NaN or inf)")


def _ref_visible_types():
    from genfast.reference.gibbs import VISIBLE_TYPES

    return VISIBLE_TYPES


def pcd_epoch(x: torch.Tensor, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor,
              v_chain: torch.Tensor, *, batch_size: int, learning_rate: float, k: int = 1, seed=None, offset=0,
              visible: str = "bernoulli", sigma: float = 1.0, backend: str = "auto") -> PcdEpochResult:
    """One epoch of mini-batch persistent contrastive divergence (PCD-k) in an RBM, fused.

    The mini-batch loop of :class:`genfast.sklearn.BernoulliRBM.fit` (scikit-learn's
    ``BernoulliRBM._fit`` with the chains kept in the visible layer; Tieleman 2008, "Training
    restricted Boltzmann machines using approximations to the likelihood gradient"): ``x`` is cut
    into consecutive mini-batches of ``batch_size`` rows (the last may be shorter); for each,
    with ``h(v) = sigmoid(c + v W^T / sigma)`` under the current parameters and the chains' state
    ``v_chain`` before the mini-batch,
    ``W += lr / sigma (h(v_pos)^T v_pos - h(v_chain)^T v_chain)``,
    ``c += lr sum(h(v_pos) - h(v_chain))``, ``b += lr / sigma^2 sum(v_pos - v_chain)`` with
    ``lr = learning_rate / rows``, while the chains advance ``k`` Gibbs steps
    (:func:`genfast.ops.gibbs`) under the parameters before the update. Spec and stream
    positions: :mod:`genfast.reference.pcd_epoch`.

    Args:
        x: [N, V] data (values in [0, 1] for Bernoulli visible units), float32, float16, bfloat16
            or float64 (float64 runs on "auto", "cpu" and "reference"). N may be 0 (nothing
            changes).
        weight: [H, V] weights W, same dtype and device as x.
        visible_bias: [V] b. hidden_bias: [H] c. Same dtype.
        v_chain: [C, V] visible state of the C persistent chains (C may be 0: no negative phase).
        batch_size: rows per mini-batch, an int >= 1.
        learning_rate: step size, a finite float > 0.
        k: Gibbs steps of the chains per mini-batch, an int >= 1.
        seed: Philox key (int, or a one-element int64 tensor); None draws one from torch's default
            generator.
        offset: stream position of the epoch's first draw (int or one-element int64 tensor); an
            epoch consumes :func:`pcd_epoch_num_counters` positions.
        visible: "bernoulli" or "gaussian" (real visible units of standard deviation sigma).
        sigma: standard deviation of Gaussian visible units, a positive normal float32 (ignored
            for Bernoulli units).
        backend: a :func:`genfast.ops.gibbs` backend value. "cpu": the whole epoch in C++;
            "reference": the oracle; any other value: the epoch composed in Python from one
            :func:`genfast.ops.gibbs` call per mini-batch on that backend and in-place ``torch``
            products ("torch": stock PyTorch throughout). "auto": "cpu" for CPU tensors (float64
            included), the composed epoch with the Gibbs op's "auto" on other devices (the
            reference for float64 there); ``GENFAST_BACKEND`` overrides it.

    Non-finite values: every input tensor must be finite (ValueError); the results match the
    reference while the weights stay finite (a learning rate that overflows them is not
    reproduced bit for bit).

    Returns:
        PcdEpochResult ``(weight, visible_bias, hidden_bias, v_chain, h_chain)``: [H, V], [V], [H],
        [C, V], [C, H] in weight's dtype, new tensors (the inputs are not modified). The state is
        float32 throughout the epoch (float64 for float64 inputs) and rounded to the input dtype
        at the end. float64 on "cpu" matches the float64 oracle to ~1e-12 for Bernoulli visible
        units; Gaussian ones draw the oracle's normals to float32 accuracy (the kernels' normals
        are float32, the oracle evaluates Box-Muller in float64).

    Raises:
        TypeError: a non-tensor, an unsupported or mixed dtype, a non-int batch_size, k or seed,
            float64 with an explicit backend other than "cpu" and "reference".
        ValueError: wrong ranks, mismatched sizes, devices differ, batch_size or k < 1, a
            learning rate that is not a finite float > 0, unknown ``visible``, sigma not a positive
            normal float32, unknown backend, non-finite input values.
        BackendUnavailableError: the requested backend cannot run here.
    """
    learning_rate, sigma = _validate(x, weight, visible_bias, hidden_bias, v_chain, batch_size, learning_rate, k,
                                     visible, sigma, backend)
    philox = philox_key(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64).item() if seed is None else seed,
                        offset, weight.device, op=_OP)
    args = (x.contiguous(), weight.contiguous(), visible_bias.contiguous(), hidden_bias.contiguous(),
            v_chain.contiguous(), philox, int(batch_size), float(learning_rate), int(k), visible == "gaussian",
            float(sigma), backend)
    tensors = (x, weight, visible_bias, hidden_bias, v_chain)
    out = _pcd_epoch_impl(*args) if eager_fast_path(*tensors) else _pcd_epoch_op(*args)
    return PcdEpochResult(*out)


def pcd_epoch_num_counters(n: int, batch_size: int, n_chains: int, n_visible: int, n_hidden: int,
                           k: int = 1) -> int:
    """Stream positions consumed by one :func:`pcd_epoch` call over ``n`` rows.

    Args:
        n: data rows N. batch_size: rows per mini-batch (>= 1). n_chains: C. n_visible: V.
        n_hidden: H. k: Gibbs steps per mini-batch (>= 1). Ints.

    Returns:
        int: with ``m = ceil(n / batch_size)`` mini-batches, ``(n + m C)(H + V)`` for k = 1
        (each mini-batch's Gibbs call covers its data rows and the chains) and
        ``m k C (H + V)`` for k > 1.

    Raises:
        TypeError: a non-int argument. ValueError: one out of range.
    """
    op = "genfast.ops.pcd_epoch_num_counters"
    for name, value in (("n", n), ("n_chains", n_chains), ("n_visible", n_visible), ("n_hidden", n_hidden)):
        check_int(name, value, op=op, lo=0)
    check_int("batch_size", batch_size, op=op, lo=1)
    check_int("k", k, op=op, lo=1)
    m = -(-n // batch_size)
    if k == 1:
        return (n + m * n_chains) * (n_hidden + n_visible)
    return m * k * n_chains * (n_hidden + n_visible)


__all__ = ["PcdEpochResult", "pcd_epoch", "pcd_epoch_num_counters"]


def _opcheck_samples():
    """(op, args) pairs for tests/test_opcheck.py, which runs torch.library.opcheck on every op."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 5, generator=gen)
    w = torch.randn(3, 5, generator=gen) * 0.1
    b, c = torch.zeros(5), torch.zeros(3)
    chain = (torch.rand(2, 5, generator=gen) < 0.5).float()
    philox = torch.tensor([3, 8], dtype=torch.int64)
    return [(torch.ops.genfast.pcd_epoch.default, (x, w, b, c, chain, philox, 3, 0.1, k, gaussian, 0.8, backend))
            for k in (1, 2) for gaussian in (False, True) for backend in ("cpu", "torch", "reference")]
