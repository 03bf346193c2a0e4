"""Parallel tempering for Bernoulli RBMs, on the fused Gibbs op.

A ladder of inverse temperatures ``1 = beta_0 > beta_1 > ... > beta_{K-1}`` (geometric by
default) holds one set of chains per temperature. Chain ``i`` samples
``p_beta(v, h) ~ exp(-beta E(v, h))``, the RBM with ``W``, ``b`` and ``c`` scaled by ``beta``, so
its Gibbs steps are one :func:`genfast.ops.gibbs` call with the scaled parameters (the op is
unchanged). After every sweep, neighbours ``(i, i + 1)`` (even pairs, then odd pairs) swap their
visible states with probability ``min(1, exp(F_i(v_i) + F_{i+1}(v_{i+1}) - F_i(v_{i+1}) -
F_{i+1}(v_i)))``, ``F_beta`` the free energy of the scaled RBM (the hidden units summed out: the
chains' next Gibbs step redraws ``h``). Hot chains cross between modes; swaps carry their states
down to ``beta = 1``, whose samples are the model's.

:func:`pt_sample` draws fantasy particles that way; :func:`fit_pt` trains with the ``beta = 1``
chains as the negative phase (Desjardins et al. 2010, Algorithm 1), in place of CD's chains
started at the data; :func:`class_coverage` counts the digit classes among samples.

Source: Desjardins, Courville, Bengio, Vincent & Delalleau 2010, "Tempered Markov chain Monte
Carlo for training of restricted Boltzmann machines" (AISTATS); Swendsen & Wang 1986; Geyer 1991.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import genfast.ops as O
from genfast._checks import check_count, check_int

__all__ = ["ParallelTempering", "class_coverage", "coverage_experiment", "fit_pt", "geometric_betas", "pt_sample"]


def geometric_betas(num_temperatures: int = 10, beta_min: float = 0.1) -> torch.Tensor:
    """A geometric ladder ``beta_i = beta_min ** (i / (K - 1))`` from 1 down to ``beta_min``.

    Args:
        num_temperatures: K >= 2.
        beta_min: the hottest chain's inverse temperature, in (0, 1).

    Returns:
        ``[K]`` float64, decreasing, ``beta_0 = 1``.

    Raises:
        ValueError / TypeError: K < 2, beta_min outside (0, 1).
    """
    check_int("num_temperatures", num_temperatures, lo=2)
    if not 0.0 < float(beta_min) < 1.0:
        raise ValueError(f"beta_min must be in (0, 1), got {beta_min}")
    i = torch.arange(num_temperatures, dtype=torch.float64)
    return float(beta_min) ** (i / (num_temperatures - 1))


class ParallelTempering:
    """The chains of a parallel-tempering sampler for a :class:`genfast.models.BernoulliRBM`.

    Args:
        rbm: the RBM (Bernoulli visible units); its parameters are read at every sweep, so the
            sampler follows a model being trained.
        n_chains: chains per temperature, >= 1.
        betas: ``[K]`` inverse temperatures, the first 1, all in (0, 1] (default
            :func:`geometric_betas` (10, 0.1)).

    Attributes:
        v: ``[K, n_chains, V]`` current visible states (0/1).
        swaps_tried, swaps_accepted: ``[K - 1]`` counts per neighbouring pair.

    Raises:
        TypeError / ValueError: not a Bernoulli RBM, bad ``n_chains`` or ``betas``.
    """

    def __init__(self, rbm, n_chains: int = 64, betas: torch.Tensor | None = None):
        from genfast.models import BernoulliRBM

        if not isinstance(rbm, BernoulliRBM) or rbm.visible != "bernoulli":
            raise TypeError(f"rbm must be a genfast BernoulliRBM, got {type(rbm).__name__}")
        check_count("n_chains", n_chains, lo=1)
        betas = geometric_betas() if betas is None else torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or float(betas[0]) != 1.0 or bool(((betas <= 0) | (betas > 1)).any()):
            raise ValueError(f"betas must hold >= 2 values in (0, 1], the first 1, got {betas.tolist()}")
        self.rbm, self.n_chains, self.betas = rbm, n_chains, betas
        k = betas.numel()
        dev = rbm.weight.device
        self.v = rbm._bernoulli(torch.full((k * n_chains, rbm.n_visible), 0.5, device=dev,
                                           dtype=rbm.weight.dtype)).view(k, n_chains, -1)
        self.swaps_tried = torch.zeros(k - 1, dtype=torch.long)
        self.swaps_accepted = torch.zeros(k - 1, dtype=torch.long)
        self._parity = 0

    def _free_energy(self, v: torch.Tensor, beta: float) -> torch.Tensor:
        r = self.rbm
        v = v.float()
        return -beta * (v @ r.visible_bias.float()) - F.softplus(
            beta * (v @ r.weight.float().T + r.hidden_bias.float())).sum(-1)

    @torch.no_grad()
    def sweep(self, k: int = 1) -> torch.Tensor:
        """``k`` Gibbs steps in every chain (one fused op call per temperature), then one round of
        swaps between neighbours (even pairs and odd pairs alternate between calls).

        Args:
            k: Gibbs steps per temperature, >= 1.

        Returns:
            ``[n_chains, V]`` the ``beta = 1`` chains' visible states.
        """
        r = self.rbm
        check_count("k", k, lo=1)
        nv, nh = r.n_visible, r.n_hidden
        for i, beta in enumerate(self.betas.tolist()):
            off = r._counters(O.gibbs_num_counters(self.n_chains, nv, nh, k))
            out = O.gibbs(self.v[i].contiguous(), (beta * r.weight).contiguous(), beta * r.visible_bias,
                          beta * r.hidden_bias, k=k, seed=r.seed, offset=off, backend=r.backend)
            self.v[i] = out.v
        u = O.rand((self.betas.numel(), self.n_chains), seed=r.seed, offset=r._counters(self.betas.numel()
                   * self.n_chains), device=self.v.device)
        for i in range(self._parity, self.betas.numel() - 1, 2):
            bi, bj = float(self.betas[i]), float(self.betas[i + 1])
            vi, vj = self.v[i], self.v[i + 1]
            log_a = (self._free_energy(vi, bi) + self._free_energy(vj, bj)
                     - self._free_energy(vj, bi) - self._free_energy(vi, bj))
            acc = torch.log(u[i].float().clamp_min(1e-30)) < log_a
            a = acc.unsqueeze(1)
            self.v[i], self.v[i + 1] = torch.where(a, vj, vi), torch.where(a, vi, vj)
            self.swaps_tried[i] += self.n_chains
            self.swaps_accepted[i] += int(acc.sum())
        self._parity ^= 1
        return self.v[0]

    def acceptance(self) -> torch.Tensor:
        """``[K - 1]`` swap acceptance rate of each neighbouring pair (NaN before any swap)."""
        return self.swaps_accepted.double() / self.swaps_tried.double()


@torch.no_grad()
def pt_sample(rbm, n: int = 64, sweeps: int = 1000, betas: torch.Tensor | None = None, k: int = 1,
              probabilities: bool = True) -> torch.Tensor:
    """Fantasy particles of an RBM by parallel tempering.

    Args:
        rbm: a :class:`genfast.models.BernoulliRBM`.
        n: particles (chains per temperature), >= 1.
        sweeps: sweeps (``k`` Gibbs steps + swaps each), >= 1.
        betas: the ladder (default :func:`geometric_betas` (10, 0.1)).
        k: Gibbs steps per sweep.
        probabilities: return ``p(v = 1 | h)`` of a last Gibbs step at ``beta = 1`` (smoother
            images, as ``genfast sample rbm``) instead of the binary states.

    Returns:
        ``[n, V]`` float32 in [0, 1].

    Raises:
        TypeError / ValueError: as :class:`ParallelTempering`, bad ``sweeps``.
    """
    check_count("sweeps", sweeps, lo=1)
    pt = ParallelTempering(rbm, n, betas)
    for _ in range(sweeps):
        v = pt.sweep(k)
    if probabilities:
        return rbm.gibbs_full(v.contiguous(), 1).v_prob.float()
    return v.float()


def fit_pt(rbm, data: torch.Tensor, *, epochs: int = 10, batch_size: int = 100, lr: float = 0.05,
           momentum: float = 0.5, betas: torch.Tensor | None = None, k: int = 1, seed: int = 0) -> list[float]:
    """Trains an RBM with parallel tempering's ``beta = 1`` chains as the negative phase.

    The same SGD with momentum as :meth:`genfast.models.BernoulliRBM.fit`; each mini-batch
    runs one sweep of a persistent :class:`ParallelTempering` sampler with ``batch_size`` chains
    per temperature and uses its ``beta = 1`` states as the model samples.

    Args:
        rbm: a :class:`genfast.models.BernoulliRBM`, trained in place.
        data: ``[N, V]`` binary (or [0, 1]) training data on the RBM's device.
        epochs, batch_size, lr, momentum: as :meth:`~genfast.models.BernoulliRBM.fit`.
        betas: the ladder (default :func:`geometric_betas` (10, 0.1)).
        k: Gibbs steps per sweep.
        seed: seed of the batch order.

    Returns:
        Mean squared reconstruction error of each epoch (a monitoring figure).

    Raises:
        TypeError / ValueError: bad data or settings.

    Source: Desjardins et al. 2010, Algorithm 1 (PT as the negative phase of SML).
    """
    data = rbm._check_v(data, "data")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        check_count(name, v, lo=1)
    pt = ParallelTempering(rbm, batch_size, betas)
    vel = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in rbm._params().items()}
    g = torch.Generator().manual_seed(int(seed))
    history = []
    for _ in range(epochs):
        perm = torch.randperm(data.shape[0], generator=g)
        err, count = 0.0, 0
        for s in range(0, data.shape[0] - batch_size + 1, batch_size):
            vb = data[perm[s:s + batch_size].to(data.device)]
            v_neg = pt.sweep(k)
            grad = rbm._gradient_from(vb, v_neg)
            with torch.no_grad():
                for name, p in rbm._params().items():
                    vel[name].mul_(momentum).add_(grad[name], alpha=lr)
                    p.copy_((p.float() + vel[name]).to(p.dtype))
            rec = rbm.visible_probs(rbm.hidden_probs(vb)).float()
            err += float(((rec - vb.float()) ** 2).sum())
            count += vb.numel()
        history.append(err / max(count, 1))
    rbm.pt_acceptance = pt.acceptance()
    return history


def class_coverage(images: torch.Tensor, metric=None) -> dict:
    """How many digit classes a set of samples covers, by the digit classifier.

    Args:
        images: ``[N, 1, 8, 8]`` float in [-1, 1] (RBM samples: ``2 p - 1`` reshaped).
        metric: a :class:`genfast.metrics.DigitMetric` (default: built from the digits, cached).

    Returns:
        ``{"classes": number of classes predicted at least once, "counts": [10 ints],
        "entropy": entropy of the predicted class histogram (nats; log 10 = 2.30 is uniform)}``.
    """
    from genfast.metrics import DigitMetric

    if metric is None:
        metric = DigitMetric.from_data()
    pred = metric.predict(images.float().to(metric.device)).cpu()
    counts = torch.bincount(pred, minlength=metric.num_classes)
    p = counts.double() / counts.sum()
    ent = float(-(p[p > 0] * p[p > 0].log()).sum())
    return {"classes": int((counts > 0).sum()), "counts": counts.tolist(), "entropy": ent,
            "uniform_entropy": math.log(metric.num_classes)}


def coverage_experiment(n_hidden: int = 128, epochs: int = 15, n: int = 100, gibbs_steps: int = 1000,
                        num_temperatures: int = 10, beta_min: float = 0.1, seed: int = 0, log=None) -> list[dict]:
    """Class coverage of RBM samples with and without parallel tempering, at equal Gibbs budgets.

    Two RBMs on the binarised digits (``n_hidden`` units, batch 50, lr 0.05, ``epochs``
    epochs): one trained by PCD-1 (the zoo's recipe), one by :func:`fit_pt`. Each is sampled
    ``n`` times by plain Gibbs (``gibbs_steps`` steps from uniform noise, ``genfast sample
    rbm``'s sampler) and by :func:`pt_sample` with ``gibbs_steps // num_temperatures`` sweeps
    (the same number of Gibbs steps in all), and the samples' classes are counted by the digit
    classifier (:func:`class_coverage`).

    Args:
        n_hidden, epochs: the RBMs.
        n: particles per sampler.
        gibbs_steps: Gibbs steps per particle (PT: summed over the ladder).
        num_temperatures, beta_min: the ladder (:func:`geometric_betas`).
        seed: seed of the RBMs and the samplers.
        log: optional ``log(str)``.

    Returns:
        One dict per (training, sampler): ``training``, ``sampler``, ``classes``, ``entropy``,
        ``counts``, ``seconds`` (training + sampling of that row's model and sampler).
    """
    import time

    from genfast.data import load_digits
    from genfast.metrics import DigitMetric
    from genfast.models import BernoulliRBM

    x = (load_digits("train")[0].flatten(1) > 0).float()
    metric = DigitMetric.from_data()
    betas = geometric_betas(num_temperatures, beta_min)
    rows = []
    for training in ("PCD-1", "PT"):
        t0 = time.perf_counter()
        rbm = BernoulliRBM(64, n_hidden, seed=seed)
        if training == "PCD-1":
            rbm.fit(x, epochs=epochs, batch_size=50, lr=0.05, k=1, persistent=True)
        else:
            fit_pt(rbm, x, epochs=epochs, batch_size=50, lr=0.05, betas=betas, seed=seed)
        train_s = time.perf_counter() - t0
        for sampler in ("Gibbs", "PT"):
            t1 = time.perf_counter()
            if sampler == "Gibbs":
                start = rbm._bernoulli(torch.full((n, 64), 0.5))
                p = rbm.gibbs_full(start, gibbs_steps).v_prob.float()
            else:
                p = pt_sample(rbm, n, sweeps=max(1, gibbs_steps // num_temperatures), betas=betas)
            cov = class_coverage(p.view(n, 1, 8, 8) * 2 - 1, metric)
            row = {"training": training, "sampler": sampler, "classes": cov["classes"], "entropy": cov["entropy"],
                   "counts": cov["counts"], "seconds": train_s + time.perf_counter() - t1}
            rows.append(row)
            if log:
                log(f"train {training}, sample {sampler}: {row['classes']} classes, entropy {row['entropy']:.2f}, "
                    f"counts {row['counts']}")
    return rows
