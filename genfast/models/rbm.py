"""Restricted Boltzmann machines and deep belief networks on genfast's Gibbs op.

* :class:`BernoulliRBM`: binary visible and hidden units (Smolensky 1986; Hinton 2002), the
  parameter layout and the free energy / pseudo-likelihood of scikit-learn's
  ``sklearn.neural_network.BernoulliRBM``; trained by CD-k or persistent CD (Tieleman 2008)
  with the persistent chains kept on the model's device; the exact log partition function by
  enumeration (min(V, H) <= 20) and annealed importance sampling (Salakhutdinov and Murray
  2008) for larger models.
* :class:`GaussianBernoulliRBM`: real visible units with a fixed noise scale sigma (Hinton 2010,
  "A practical guide to training RBMs", section 13.2); the exact log partition function (a
  closed-form Gaussian integral summed over the hidden states, n_hidden <= 20) and AIS with a
  Gaussian base model for larger ones.
* :class:`~genfast.models.dbn.DBN` (in :mod:`genfast.models.dbn`): a greedy layer-wise stack of
  these Bernoulli RBMs.

Every stochastic step goes through :func:`genfast.ops.gibbs` / :func:`genfast.ops.rand` with
the model's own Philox key and counter, so runs are reproducible on every backend.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import genfast.ops as O
from genfast._checks import check_int

__all__ = ["BernoulliRBM", "GaussianBernoulliRBM"]


class BernoulliRBM(nn.Module):
    """Restricted Boltzmann machine with binary visible and hidden units.

    Energy ``E(v, h) = -b.v - c.h - h W v`` (Hinton 2010, eq. 1); ``p(h_j = 1 | v) =
    sigmoid(c_j + W_j v)``, ``p(v_i = 1 | h) = sigmoid(b_i + h W_:i)``. Mirrors scikit-learn's
    ``BernoulliRBM``: ``weight`` is ``components_``, ``visible_bias`` is ``intercept_visible_``,
    ``hidden_bias`` is ``intercept_hidden_``.

    Args:
        n_visible: V >= 1. n_hidden: H >= 1.
        seed: Philox key of the model's random numbers (int). Each draw advances the model's
            counter, so successive calls draw fresh numbers and a re-seeded model repeats them.
        device / dtype: of the parameters (float32, float16 or bfloat16; products accumulate
            in float32).
        backend: the genfast backend of the Gibbs steps ("auto", "cpu", "cuda", "triton", ...).

    Raises:
        TypeError / ValueError: non-int or non-positive sizes.
    """

    visible = "bernoulli"

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        seed: int = 0,
        device=None,
        dtype=torch.float32,
        backend: str = "auto",
    ):
        super().__init__()
        op = type(self).__name__
        check_int("n_visible", n_visible, op=op, lo=1)
        check_int("n_hidden", n_hidden, op=op, lo=1)
        g = torch.Generator().manual_seed(int(seed))
        # N(0, 0.01^2) weights, zero biases: Hinton (2010), section 8
        w = 0.01 * torch.randn(n_hidden, n_visible, generator=g)
        self.weight = nn.Parameter(w.to(device=device, dtype=dtype), requires_grad=False)
        self.visible_bias = nn.Parameter(
            torch.zeros(n_visible, device=device, dtype=dtype), requires_grad=False
        )
        self.hidden_bias = nn.Parameter(
            torch.zeros(n_hidden, device=device, dtype=dtype), requires_grad=False
        )
        self.register_buffer("persistent_chains", torch.empty(0, n_visible, device=device, dtype=dtype))
        self.seed = int(seed)
        self.offset = 0
        self.backend = backend
        self.config = {"n_visible": n_visible, "n_hidden": n_hidden, "seed": int(seed), "backend": backend}

    # ------------------------------------------------------------------ basics
    @property
    def n_visible(self) -> int:
        return self.weight.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.weight.shape[0]

    def _counters(self, n: int) -> int:
        off = self.offset
        self.offset += int(n)
        return off

    def _check_v(self, v, name="v", binary=False):
        op = type(self).__name__
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {v.dtype}")
        if v.dim() != 2 or v.shape[1] != self.n_visible:
            raise ValueError(f"{op}: {name} must be [B, {self.n_visible}], got {tuple(v.shape)}")
        if v.device != self.weight.device:
            raise ValueError(f"{op}: {name} is on {v.device} but the model is on {self.weight.device}")
        if self.visible == "bernoulli" and v.numel():
            if binary and not bool(((v == 0) | (v == 1)).all()):
                raise ValueError(f"{op}: {name} must be binary (0/1) here")
            if not binary and bool(((v < 0) | (v > 1)).any()):
                raise ValueError(f"{op}: {name} must lie in [0, 1] for Bernoulli visible units")
        return v.to(self.weight.dtype)

    def _sigma(self) -> float:
        return 1.0

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h = 1 | v)``: [B, V] -> [B, H] (float32 accumulation)."""
        v = self._check_v(v)
        x = v.float() @ self.weight.float().T / self._sigma() + self.hidden_bias.float()
        return torch.sigmoid(x).to(self.weight.dtype)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``p(v = 1 | h)`` (the mean for Gaussian visible units): [B, H] -> [B, V]."""
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[1] != self.n_hidden:
            raise ValueError(f"{type(self).__name__}: h must be a [B, {self.n_hidden}] tensor")
        acc = h.float() @ self.weight.float()
        if self.visible == "gaussian":
            return (self.visible_bias.float() + self._sigma() * acc).to(self.weight.dtype)
        return torch.sigmoid(acc + self.visible_bias.float()).to(self.weight.dtype)

    def _draw(self, fn, p):
        """``fn`` (``O.rand`` or ``O.randn``) of ``p``'s shape from the model's Philox stream, the
        counters advanced past it."""
        return fn(tuple(p.shape), seed=self.seed, offset=self._counters(p.numel()), device=p.device,
                  backend=self.backend)

    def _bernoulli(self, p):
        return (self._draw(O.rand, p) < p.float()).to(p.dtype)

    def sample_hidden(self, v: torch.Tensor) -> torch.Tensor:
        """``h ~ p(h | v)``, [B, H] of 0/1 (scikit-learn's ``_sample_hiddens``)."""
        return self._bernoulli(self.hidden_probs(v))

    def sample_visible(self, h: torch.Tensor) -> torch.Tensor:
        """``v ~ p(v | h)``, [B, V] (scikit-learn's ``_sample_visibles``)."""
        p = self.visible_probs(h)
        if self.visible == "gaussian":
            return (p.float() + self._sigma() * self._draw(O.randn, p)).to(p.dtype)
        return self._bernoulli(p)

    def gibbs(self, v: torch.Tensor, k: int = 1) -> torch.Tensor:
        """``k`` block-Gibbs steps from ``v`` (one fused :func:`genfast.ops.gibbs` call).

        Mirrors scikit-learn's ``BernoulliRBM.gibbs`` (k = 1). Returns the visible sample [B, V].
        """
        return self.gibbs_full(v, k).v

    def gibbs_full(self, v: torch.Tensor, k: int = 1) -> O.GibbsResult:
        """As :meth:`gibbs`, returning the whole :class:`genfast.ops.GibbsResult`."""
        v = self._check_v(v)
        check_int("k", k, op=type(self).__name__, lo=1)
        off = self._counters(O.gibbs_num_counters(v.shape[0], self.n_visible, self.n_hidden, k))
        return O.gibbs(
            v,
            self.weight,
            self.visible_bias,
            self.hidden_bias,
            k=k,
            seed=self.seed,
            offset=off,
            visible=self.visible,
            sigma=self._sigma(),
            backend=self.backend,
        )

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -b.v - sum_j softplus(c_j + W_j v)`` [B] in float32 (sklearn's
        ``_free_energy``; ``p(v) = exp(-F(v)) / Z``)."""
        v = self._check_v(v).float()
        return -(v @ self.visible_bias.float()) - F.softplus(
            v @ self.weight.float().T + self.hidden_bias.float()
        ).sum(1)

    def pseudo_likelihood(self, v: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Stochastic pseudo-log-likelihood [B], as scikit-learn's ``score_samples``.

        ``V * log sigmoid(F(v~) - F(v))`` where ``v~`` is ``v`` with one feature per sample flipped
        (Besag 1975; Marlin et al. 2010).

        Args:
            v: [B, V] binary data.
            index: [B] int64 feature to flip per sample (default: drawn from the model's Philox
                stream); pass ``np.random.RandomState(rs).randint(0, V, B)`` to reproduce
                scikit-learn's ``score_samples`` with ``random_state=rs``.
        """
        v = self._check_v(v, binary=True)
        if index is None:
            u = O.rand((v.shape[0],), seed=self.seed, offset=self._counters(v.shape[0]), device=v.device)
            index = (u.double() * self.n_visible).long().clamp(max=self.n_visible - 1)
        index = torch.as_tensor(index, device=v.device).long()
        if index.shape != (v.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: index must be [B] = [{v.shape[0]}], got {tuple(index.shape)}"
            )
        fe = self.free_energy(v)
        vf = v.clone()
        rows = torch.arange(v.shape[0], device=v.device)
        vf[rows, index] = 1 - vf[rows, index]
        return self.n_visible * F.logsigmoid(self.free_energy(vf) - fe)

    # --------------------------------------------------------------- training
    def cd_gradient(self, v_data: torch.Tensor, k: int = 1, persistent: bool = False) -> dict:
        """Contrastive-divergence estimate of the gradient of the mean log-likelihood.

        ``dW = <h v>_data - <h v>_model``, ``db = <v>_data - <v>_model``, ``dc = <h>_data -
        <h>_model`` (Hinton 2002, eq. 5; Tieleman 2008 for persistent chains), with data-side
        hidden probabilities, and model-side statistics from the chain's last visible sample and
        its hidden probabilities (what scikit-learn's ``_fit`` does for k = 1). The negative
        chain starts at the data (CD-k) or at the persistent chains (PCD-k), which it advances.

        Returns:
            dict with ``weight``, ``visible_bias``, ``hidden_bias`` (float32, ascent direction).
        """
        v_data = self._check_v(v_data)
        start = v_data
        if persistent:
            if self.persistent_chains.shape[0] != v_data.shape[0]:
                self.persistent_chains = (
                    self._bernoulli(torch.full_like(v_data, 0.5))
                    if self.visible == "bernoulli"
                    else v_data.clone()
                )
            start = self.persistent_chains
        neg = self.gibbs_full(start, k)
        v_neg = neg.v
        if persistent:
            self.persistent_chains = v_neg.detach().clone()
        return self._gradient_from(v_data, v_neg)

    def _stats_weight(self, v):
        return v.float()

    def _gradient_from(self, v_data, v_neg):
        b = v_data.shape[0]
        h_pos = self.hidden_probs(v_data).float()
        h_neg = self.hidden_probs(v_neg).float()
        vp, vn = self._stats_weight(v_data), self._stats_weight(v_neg)
        return {
            "weight": (h_pos.T @ vp - h_neg.T @ vn) / b,
            "visible_bias": self._visible_bias_stat(v_data) - self._visible_bias_stat(v_neg),
            "hidden_bias": h_pos.mean(0) - h_neg.mean(0),
        }

    def _visible_bias_stat(self, v):
        return v.float().mean(0)

    def fit(
        self,
        data: torch.Tensor,
        *,
        epochs: int = 10,
        batch_size: int = 100,
        lr: float = 0.05,
        k: int = 1,
        persistent: bool = False,
        momentum: float = 0.5,
        weight_decay: float = 0.0,
        ema_decay: float | None = None,
        progress=None,
        **engine,
    ) -> list[float]:
        """Train by CD-k (or PCD-k) with SGD + momentum (Hinton 2010, sections 9-10), through
        :class:`genfast.training.Trainer`: the update is applied without autograd, and under
        several processes the CD statistics are averaged over ranks (see :class:`_RBMTask`).

        Args:
            data: [N, V] training data (binary or in [0, 1] for Bernoulli visible units), or a
                ``Dataset`` / ``DataLoader`` of such rows.
            epochs, batch_size, lr, k, persistent, momentum, weight_decay: the usual options.
            ema_decay: average the parameters over the iterates, ``avg <- d avg + (1 - d) theta``
                after every update with ``d = min(ema_decay, (1 + n) / (10 + n))`` (the warm-up of
                diffusers' ``EMAModel``), and leave the average in the model at the end (the
                persistent chains keep running on the raw iterates during training). Iterate
                averaging (Polyak & Juditsky 1992) removes most of the oscillation of PCD's
                model distribution between a few modes (Tieleman & Hinton 2009 discuss it): on
                the binarised digits (64 x 128, PCD-1, lr 0.05, 60 epochs) the samples after 1000
                Gibbs steps from noise covered 10 of 10 classes with decay 0.99 on 3 of 3 seeds,
                against 7 classes holding at least 2% of the samples without it. None: off.
            progress: anything but None/False shows a tqdm bar.
            **engine: further :class:`genfast.training.Trainer` options (``out_dir``,
                ``save_every``, ``resume``, ``seed`` (default: the model's seed plus its Philox
                counter, so each call shuffles differently), ...).

        Returns:
            Mean squared reconstruction error of each epoch (a monitoring figure, not the loss).
        """
        from genfast.training import Trainer

        if isinstance(data, torch.Tensor):
            data = self._check_v(data, "data")
        check_int("epochs", epochs, op=type(self).__name__, lo=1)
        check_int("batch_size", batch_size, op=type(self).__name__, lo=1)
        from genfast.training.distributed import info as dist_info

        n, world = len(data), dist_info().world_size
        per_epoch = max(1, n // batch_size) if world > 1 else max(1, math.ceil(n / batch_size))
        if ema_decay is not None:
            if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0.0 <= ema_decay < 1.0:
                raise ValueError(f"{type(self).__name__}.fit: ema_decay must be a float in [0, 1) or None, "
                                 f"got {ema_decay!r}")
        from ._rbm_task import _RBMTask

        task = _RBMTask(self, k=k, persistent=persistent, lr=lr, momentum=momentum, weight_decay=weight_decay,
                        ema_decay=ema_decay)
        # as before the engine: a fresh shuffle per call (the Philox counter moves on with training)
        engine.setdefault("seed", (self.seed + self.offset) % (1 << 62))
        out = Trainer(task, steps=epochs * per_epoch, batch_size=batch_size, drop_last=world > 1,
                      progress=progress is not None and progress is not False, **engine).fit(data)
        task.apply_average()
        hist, history = out["history"], []
        for e in range(0, len(hist), per_epoch):
            chunk = hist[e:e + per_epoch]
            history.append(sum(h["sq_err"] for h in chunk) / max(sum(h["count"] for h in chunk), 1))
        return history

    def _params(self):
        return {"weight": self.weight, "visible_bias": self.visible_bias, "hidden_bias": self.hidden_bias}

    # ------------------------------------------------------ partition function
    def log_partition(self, method: str = "auto", **ais_kwargs) -> float:
        """``log Z``: exact by enumeration when min(V, H) <= 20, else AIS (``method="auto"``).

        Args:
            method: "auto", "exact" or "ais".
            **ais_kwargs: passed to :meth:`ais_log_partition`.

        Raises:
            ValueError: "exact" on a model with min(V, H) > 20, or an unknown method.
        """
        if method not in ("auto", "exact", "ais"):
            raise ValueError(
                f"{type(self).__name__}: method must be 'auto', 'exact' or 'ais', got {method!r}"
            )
        small = min(self.n_visible, self.n_hidden) <= 20
        if method == "exact" or (method == "auto" and small):
            if not small:
                raise ValueError(
                    f"{type(self).__name__}: exact log Z needs min(n_visible, n_hidden) <= 20, "
                    f"got ({self.n_visible}, {self.n_hidden})"
                )
            return self.exact_log_partition()
        return self.ais_log_partition(**ais_kwargs)[0]

    @staticmethod
    def _configs(n, start, stop, device):
        idx = torch.arange(start, stop, device=device)
        return ((idx[:, None] >> torch.arange(n, device=device)) & 1).double()

    def exact_log_partition(self, chunk: int = 1 << 15) -> float:
        """``log Z`` by summing over all states of the smaller layer (float64), in chunks."""
        w = self.weight.double()
        b, c = self.visible_bias.double(), self.hidden_bias.double()
        terms = []
        if self.n_hidden <= self.n_visible:
            n = self.n_hidden
            for s in range(0, 1 << n, chunk):
                h = self._configs(n, s, min(s + chunk, 1 << n), w.device)
                terms.append(h @ c + F.softplus(h @ w + b).sum(1))
        else:
            n = self.n_visible
            for s in range(0, 1 << n, chunk):
                v = self._configs(n, s, min(s + chunk, 1 << n), w.device)
                terms.append(v @ b + F.softplus(v @ w.T + c).sum(1))
        return float(torch.logsumexp(torch.cat(terms), 0))

    # AIS hooks (Salakhutdinov and Murray 2008): the base model A has W = 0 and hidden bias 0, and
    # the intermediate models interpolate the energies, E_beta = (1 - beta) E_A + beta E_B.
    def _ais_base_bias(self, data):
        """Default base visible bias: the log-odds of the data's mean (S&M's base-rate model), or 0."""
        if data is None:
            return torch.zeros(self.n_visible, dtype=torch.float64, device=self.weight.device)
        p = self._check_v(data, "data").double().mean(0).clamp(1e-3, 1 - 1e-3)
        return torch.log(p) - torch.log1p(-p)

    def _ais_start(self, base, n_chains, key):
        """``(log Z_A, v_0)``: Z_A = 2^H prod_i (1 + e^{b_A,i}); v_0 [M, V] ~ p_A (Bernoulli)."""
        log_za = float(F.softplus(base).sum()) + self.n_hidden * math.log(2.0)
        u = O.rand((n_chains, self.n_visible), seed=key, offset=(1 << 62), device=base.device)
        return log_za, (u.double() < torch.sigmoid(base)).float()

    def _log_pstar(self, v, beta, base_bias):
        """``log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta (c_j + W_j v))`` [M]
        (float64): the unnormalised marginal of the beta-interpolated model."""
        v = v.double()
        vis = (1 - beta) * (v @ base_bias) + beta * (v @ self.visible_bias.double())
        return vis + F.softplus(beta * (v @ self.weight.double().T + self.hidden_bias.double())).sum(1)

    def _ais_model(self, beta, base_bias):
        """(weight, visible_bias, hidden_bias) in float32 of the intermediate model at ``beta``."""
        vb = ((1 - beta) * base_bias + beta * self.visible_bias.double()).float()
        return beta * self.weight.float(), vb, beta * self.hidden_bias.float()

    def ais_log_partition(
        self,
        n_chains: int = 100,
        n_betas: int = 10000,
        base_visible_bias=None,
        seed: int | None = None,
        data: torch.Tensor | None = None,
    ) -> tuple[float, float]:
        """Annealed importance sampling estimate of ``log Z`` (Salakhutdinov and Murray 2008).

        AIS (Neal 2001) runs M chains through the temperatures ``0 = beta_0 < ... < beta_K = 1``
        (linear here) of the family ``p*_beta(v)`` that interpolates the energies of a base model A
        (W = 0, hidden bias 0, visible bias ``b_A``, whose ``Z_A`` is known in closed form) and of
        this model B. Chain m starts at ``v_1 ~ p_A`` and moves by one Gibbs step
        (:func:`genfast.ops.gibbs`) of the model at ``beta_k`` (which leaves ``p_beta_k``
        invariant); its importance weight is

            ``w_m = prod_{k=1..K} p*_{beta_k}(v_k) / p*_{beta_{k-1}}(v_k)``

        and ``Z_B / Z_A ~= mean_m w_m`` (unbiased; its logarithm is biased low, the usual
        behaviour of AIS). For binary visible units
        ``p*_beta(v) = exp((1 - beta) b_A.v + beta b.v) prod_j (1 + exp(beta (c_j + W_j v)))`` and
        ``Z_A = 2^H prod_i (1 + exp(b_A,i))``; :class:`GaussianBernoulliRBM` documents its own.

        Args:
            n_chains: number of independent AIS runs M (int >= 1).
            n_betas: number of temperatures K + 1 (int >= 2).
            base_visible_bias: [V] visible bias ``b_A`` of the base model (any float dtype, cast to
                float64). Default: derived from ``data`` if given (the paper's base-rate model),
                else the class default (0 for Bernoulli visible units).
            seed: Philox key of the chains (default: the model's seed); the model's counter is not
                advanced, so the estimate is reproducible.
            data: optional [N, V] training data for the default base model.

        Returns:
            ``(log_Z, log_Z_std)``: the estimate ``log Z_A + log mean_m w_m`` and the standard
            deviation of the log-weights divided by sqrt(M) (a rough error bar), as floats.

        Raises:
            TypeError / ValueError: a non-int or too small ``n_chains`` / ``n_betas``;
                ``base_visible_bias`` not of shape [V]; ``data`` of the wrong shape or device.
        """
        check_int("n_chains", n_chains, op="ais_log_partition", lo=1)
        check_int("n_betas", n_betas, op="ais_log_partition", lo=2)
        dev = self.weight.device
        base = (
            self._ais_base_bias(data)
            if base_visible_bias is None
            else torch.as_tensor(base_visible_bias, device=dev).double()
        )
        if base.shape != (self.n_visible,):
            raise ValueError(
                f"ais_log_partition: base_visible_bias must be [{self.n_visible}], got {tuple(base.shape)}"
            )
        key = self.seed if seed is None else int(seed)
        off = 0
        log_za, v = self._ais_start(base, n_chains, key)
        logw = torch.zeros(n_chains, dtype=torch.float64, device=dev)
        betas = torch.linspace(0, 1, n_betas).tolist()
        for i in range(1, n_betas):
            beta_prev, beta = betas[i - 1], betas[i]
            logw += self._log_pstar(v, beta, base) - self._log_pstar(v, beta_prev, base)
            if i < n_betas - 1:
                w, vb, hb = self._ais_model(beta, base)
                out = O.gibbs(v, w, vb, hb, k=1, seed=key, offset=off, visible=self.visible,
                              sigma=self._sigma(), backend=self.backend)
                off += O.gibbs_num_counters(n_chains, self.n_visible, self.n_hidden, 1)
                v = out.v
        log_mean = float(torch.logsumexp(logw, 0)) - math.log(n_chains)
        std = float(logw.std()) / math.sqrt(n_chains) if n_chains > 1 else float("nan")
        return log_za + log_mean, std

    def log_likelihood(self, v: torch.Tensor, log_z: float | None = None) -> torch.Tensor:
        """``log p(v) = -F(v) - log Z`` [B] (float64); ``log_z`` from :meth:`log_partition` by default."""
        v = self._check_v(v, binary=self.visible == "bernoulli")
        lz = self.log_partition() if log_z is None else float(log_z)
        return -self.free_energy(v).double() - lz

    # ------------------------------------------------------------- interop
    @classmethod
    def from_sklearn(cls, estimator, **kwargs) -> BernoulliRBM:
        """Build from a fitted ``sklearn.neural_network.BernoulliRBM`` (components_,
        intercept_visible_, intercept_hidden_)."""
        for a in ("components_", "intercept_visible_", "intercept_hidden_"):
            if not hasattr(estimator, a):
                raise ValueError(f"from_sklearn: estimator has no {a}; is it fitted?")
        comp = torch.as_tensor(estimator.components_, dtype=torch.float32)
        m = cls(comp.shape[1], comp.shape[0], **kwargs)
        with torch.no_grad():
            m.weight.copy_(comp)
            m.visible_bias.copy_(torch.as_tensor(estimator.intercept_visible_, dtype=torch.float32))
            m.hidden_bias.copy_(torch.as_tensor(estimator.intercept_hidden_, dtype=torch.float32))
        return m

    def to_sklearn(self):
        """A ``sklearn.neural_network.BernoulliRBM`` with this model's parameters (float64)."""
        import numpy as np
        from sklearn.neural_network import BernoulliRBM as SkRBM

        est = SkRBM(n_components=self.n_hidden, random_state=self.seed)
        est.components_ = self.weight.detach().double().cpu().numpy()
        est.intercept_visible_ = self.visible_bias.detach().double().cpu().numpy()
        est.intercept_hidden_ = self.hidden_bias.detach().double().cpu().numpy()
        est.h_samples_ = np.zeros((est.batch_size, self.n_hidden))
        est.n_features_in_ = self.n_visible
        est.random_state_ = np.random.RandomState(self.seed)
        return est


class GaussianBernoulliRBM(BernoulliRBM):
    """RBM with real Gaussian visible units of fixed standard deviation ``sigma``.

    Energy ``E = |v - b|^2 / (2 sigma^2) - c.h - (v / sigma) W^T h`` (Hinton 2010, section 13.2):
    ``p(h_j = 1 | v) = sigmoid(c_j + W_j v / sigma)``, ``v | h ~ N(b + sigma h W, sigma^2)``.
    Standardise the data (zero mean, unit variance) and keep sigma = 1, as the guide advises.

    ``log Z``: :meth:`exact_log_partition` (n_hidden <= 20) or :meth:`ais_log_partition`
    (Salakhutdinov and Murray 2008, with a Gaussian base model). The base model A has W = 0,
    hidden bias 0 and visible mean ``b_A`` (the data's mean when ``data`` is given, else b), so
    ``Z_A = (2 pi sigma^2)^(V/2) 2^H`` and ``v ~ N(b_A, sigma^2 I)`` samples it exactly. The
    intermediate model ``(1 - beta) E_A + beta E`` is again a Gaussian-Bernoulli RBM (weight
    ``beta W``, hidden bias ``beta c``, visible bias ``(1 - beta) b_A + beta b``, same sigma), whose
    Gibbs step (h | v, then v | h, the Gaussian v | h in closed form) is the AIS transition, and the
    chains are weighted by the ratios of its marginal
    ``log p*_beta(v) = -((1 - beta) |v - b_A|^2 + beta |v - b|^2) / (2 sigma^2)
    + sum_j softplus(beta (c_j + W_j v / sigma))``.

    Args:
        n_visible, n_hidden, seed, device, dtype, backend: as :class:`BernoulliRBM`.
        sigma: float > 0.

    Raises:
        ValueError: sigma not a finite float > 0 (and the errors of :class:`BernoulliRBM`).
    """

    visible = "gaussian"

    def __init__(self, n_visible: int, n_hidden: int, *, sigma: float = 1.0, **kwargs):
        super().__init__(n_visible, n_hidden, **kwargs)
        if not (
            isinstance(sigma, (int, float))
            and not isinstance(sigma, bool)
            and math.isfinite(sigma)
            and sigma > 0
        ):
            raise ValueError(f"GaussianBernoulliRBM: sigma must be a finite float > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.config["sigma"] = self.sigma

    def _sigma(self) -> float:
        return self.sigma

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = |v - b|^2 / (2 sigma^2) - sum_j softplus(c_j + W_j v / sigma)`` [B]."""
        v = self._check_v(v).float()
        s = self.sigma
        quad = ((v - self.visible_bias.float()) ** 2).sum(1) / (2 * s * s)
        return quad - F.softplus(v @ self.weight.float().T / s + self.hidden_bias.float()).sum(1)

    def _stats_weight(self, v):
        return v.float() / self.sigma

    def _visible_bias_stat(self, v):
        return (v.float() - self.visible_bias.float()).mean(0) / self.sigma**2

    def exact_log_partition(self, chunk: int = 1 << 15) -> float:
        """``log Z`` by summing over the hidden states (H <= 20); the Gaussian integral is closed:
        ``log Z = V/2 log(2 pi sigma^2) + logsumexp_h [c.h + b.a + sigma^2 |a|^2 / 2]``, a = hW/sigma."""
        if self.n_hidden > 20:
            raise ValueError(f"GaussianBernoulliRBM: exact log Z needs n_hidden <= 20, got {self.n_hidden}")
        w, b, c, s = self.weight.double(), self.visible_bias.double(), self.hidden_bias.double(), self.sigma
        terms = []
        for st in range(0, 1 << self.n_hidden, chunk):
            h = self._configs(self.n_hidden, st, min(st + chunk, 1 << self.n_hidden), w.device)
            a = h @ w / s
            terms.append(h @ c + a @ b + 0.5 * s * s * (a * a).sum(1))
        return 0.5 * self.n_visible * math.log(2 * math.pi * s * s) + float(
            torch.logsumexp(torch.cat(terms), 0)
        )

    def log_partition(self, method: str = "auto", **ais_kwargs) -> float:
        """``log Z``: exact (a sum over the hidden states) when n_hidden <= 20, else AIS
        (``method="auto"``); "exact" or "ais" force one.

        Raises:
            ValueError: "exact" with n_hidden > 20, or an unknown method.
        """
        if method not in ("auto", "exact", "ais"):
            raise ValueError(f"GaussianBernoulliRBM: method must be 'auto', 'exact' or 'ais', got {method!r}")
        if method == "exact" or (method == "auto" and self.n_hidden <= 20):
            return self.exact_log_partition()
        return self.ais_log_partition(**ais_kwargs)[0]

    # AIS hooks of BernoulliRBM.ais_log_partition for Gaussian visible units (the class docstring
    # has the base model and the interpolating family; _ais_model is inherited: the intermediate
    # model has the same parameters as with binary visible units).
    def _ais_base_bias(self, data):
        """Default base visible mean ``b_A``: the data's mean (the base-rate model) if given, else
        the model's visible bias b (then only W and c are annealed)."""
        if data is None:
            return self.visible_bias.detach().double()
        return self._check_v(data, "data").double().mean(0)

    def _ais_start(self, base, n_chains, key):
        """``(log Z_A, v_0)`` with ``v_0 [M, V] ~ N(b_A, sigma^2 I)`` (Philox normals)."""
        s = self.sigma
        log_za = 0.5 * self.n_visible * math.log(2 * math.pi * s * s) + self.n_hidden * math.log(2.0)
        z = O.randn((n_chains, self.n_visible), seed=key, offset=(1 << 62), device=base.device)
        return log_za, (base + s * z.double()).float()

    def _log_pstar(self, v, beta, base_bias):
        """``log p*_beta(v)`` [M] in float64 (the formula in the class docstring)."""
        v, s = v.double(), self.sigma
        quad = (1 - beta) * ((v - base_bias) ** 2).sum(1) + beta * ((v - self.visible_bias.double()) ** 2).sum(1)
        pre = beta * (v @ self.weight.double().T / s + self.hidden_bias.double())
        return -quad / (2 * s * s) + F.softplus(pre).sum(1)
