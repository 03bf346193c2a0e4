"""The Bernoulli / Gaussian-Bernoulli RBM's part of the training engine: CD-k / PCD-k updates with
SGD + momentum (no autograd), the statistics averaged over ranks under torch.distributed, and
optional iterate averaging of the parameters (``BernoulliRBM.fit(ema_decay=...)``)."""

from __future__ import annotations

import torch

from genfast.training.engine import Task, ema_decay_at


class _RBMTask(Task):
    """CD-k / PCD-k with SGD + momentum for the engine, without autograd.

    Under W processes every rank runs the fused Gibbs op on a tensor of the global batch's size
    with its own rows in place (rows ``rank::W``; the other rows are zeros, or the whole set of
    persistent chains, which every rank holds), so each chain consumes the Philox numbers it
    consumes in one process: Gibbs chains are independent row by row, and the counters of a
    ``[B, V]`` call are laid out by global row. That costs W times the Gibbs work of the local
    rows and buys exact agreement with one process; the CD statistics of the local rows are then
    averaged over ranks (an all-reduce), so every rank applies the same update.
    """

    name = "rbm"
    supports_amp = False  # float32 statistics / log-likelihoods

    def __init__(self, model, *, k, persistent, lr, momentum, weight_decay, ema_decay=None):
        super().__init__(model)
        self.k, self.persistent, self.lr, self.momentum, self.weight_decay = k, persistent, lr, momentum, weight_decay
        self.vel = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in model._params().items()}
        self.ema_decay = ema_decay
        self.avg = ({n: p.detach().float().clone() for n, p in model._params().items()}
                    if ema_decay is not None else None)
        self.avg_updates = 0

    @torch.no_grad()
    def _update_average(self):
        if self.avg is None:
            return
        d = ema_decay_at(self.ema_decay, self.avg_updates)
        for name, p in self.model._params().items():
            self.avg[name].lerp_(p.float(), 1.0 - d)
        self.avg_updates += 1

    @torch.no_grad()
    def apply_average(self):
        """Put the averaged parameters into the model (after training; no-op without ema_decay)."""
        if self.avg is None:
            return
        for name, p in self.model._params().items():
            p.copy_(self.avg[name].to(p.dtype))

    @torch.no_grad()
    def training_step(self, batch, ctx):
        m = self.model
        vb = m._check_v(batch.images.reshape(batch.images.shape[0], -1).to(m.weight.device))
        if ctx.world_size == 1:
            grad = m.cd_gradient(vb, k=self.k, persistent=self.persistent)
        else:
            w, r, b = ctx.world_size, ctx.rank, vb.shape[0]
            if self.persistent:
                if m.persistent_chains.shape[0] != b * w:
                    if m.visible == "bernoulli":
                        m.persistent_chains = m._bernoulli(torch.full((b * w, m.n_visible), 0.5, device=vb.device,
                                                                      dtype=vb.dtype))
                    else:
                        full = torch.zeros(b * w, m.n_visible, device=vb.device, dtype=vb.dtype)
                        full[r::w] = vb
                        ctx.all_reduce_sum([full])
                        m.persistent_chains = full
                start = m.persistent_chains
            else:
                start = torch.zeros(b * w, m.n_visible, device=vb.device, dtype=vb.dtype)
                start[r::w] = vb
            neg = m.gibbs_full(start, self.k).v
            if self.persistent:
                m.persistent_chains = neg.detach().clone()
            grad = m._gradient_from(vb, neg[r::w])
            ctx.all_reduce_mean(list(grad.values()))
        for name, p in m._params().items():
            g = grad[name] - (self.weight_decay * p.float() if name == "weight" else 0.0)
            self.vel[name].mul_(self.momentum).add_(g, alpha=self.lr)
            p.copy_((p.float() + self.vel[name]).to(p.dtype))
        self._update_average()
        rec = m.visible_probs(m.hidden_probs(vb)).float()
        stats = torch.tensor([float(((rec - vb.float()) ** 2).sum()), float(vb.numel())], dtype=torch.float64)
        ctx.all_reduce_sum([stats])
        return {"recon_error": float(stats[0] / stats[1]), "sq_err": float(stats[0]), "count": float(stats[1])}

    def sync_modules(self):
        return []

    def extra_state(self):
        tensors = {f"velocity.{k}": v for k, v in self.vel.items()}
        meta = {"offset": self.model.offset}
        if self.avg is not None:
            tensors.update({f"average.{k}": v for k, v in self.avg.items()})
            meta["average_updates"] = self.avg_updates
        return tensors, meta

    def load_extra_state(self, tensors, meta, where):
        from genfast._checkpoint import checkpoint_error

        off = meta.get("offset")
        if isinstance(off, bool) or not isinstance(off, int) or not 0 <= off < 2**64:
            raise checkpoint_error(where, "extra.offset", f"must be an integer in [0, 2^64), got {off!r}")
        for k, v in self.vel.items():
            t = tensors.get(f"velocity.{k}")
            if t is None or t.shape != v.shape or not bool(torch.isfinite(t).all()):
                raise checkpoint_error(where, f"extra.velocity.{k}", "missing, of the wrong shape or not finite")
            v.copy_(t)
        if self.avg is not None:
            n = meta.get("average_updates")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise checkpoint_error(where, "extra.average_updates",
                                       f"must be a non-negative integer (the run averaged its parameters), got {n!r}")
            for k, v in self.avg.items():
                t = tensors.get(f"average.{k}")
                if t is None or t.shape != v.shape or not bool(torch.isfinite(t).all()):
                    raise checkpoint_error(where, f"extra.average.{k}", "missing, of the wrong shape or not finite")
                v.copy_(t)
            self.avg_updates = n
        self.model.offset = off
