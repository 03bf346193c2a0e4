"""``UniPCMultistepScheduler``: diffusers' UniPC (Zhao et al. 2023) on genfast's fused solver step."""

from __future__ import annotations

from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from genfast.samplers._fused import SolverStepMixin, output_conversion, rows, set_coef, with_backend

MAX_ORDER = 3  # the op stores at most 3 earlier model outputs


def _bh_coefficients(h: float, rks: list, order: int, predict_x0: bool, solver_type: str, corrector: bool):
    """(h_phi_1, B_h, rhos) of UniPC's B(h) update for one step (Zhao et al. 2023, Algorithms 2-3),
    in float64, following diffusers' ``multistep_uni_{p,c}_bh_update``."""
    hh = -h if predict_x0 else h
    h_phi_1 = np.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial_i = 1
    b_h = hh if solver_type == "bh1" else np.expm1(hh)
    r_all = np.array(list(rks) + [1.0])
    big_r, b = [], []
    for k in range(1, order + 1):
        big_r.append(r_all ** (k - 1))
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    big_r, b = np.array(big_r), np.array(b)
    try:
        if corrector:
            rhos = np.array([0.5]) if order == 1 else np.linalg.solve(big_r, b)
        elif order == 1:
            rhos = np.zeros(0)
        elif order == 2:
            rhos = np.array([0.5])
        else:
            rhos = np.linalg.solve(big_r[:-1, :-1], b[:-1])
    except np.linalg.LinAlgError:  # diffusers' torch.linalg.solve raises here; the step does too
        raise _Singular from None
    return h_phi_1, b_h, rhos


class _Singular(Exception):
    """A UniPC linear system of the schedule is singular."""


class SingularScheduleError(ValueError, torch.linalg.LinAlgError):
    """UniPC's linear system for the order at this step is singular for this schedule. A
    ``ValueError`` (genfast's rule) that is also the ``torch.linalg.LinAlgError`` diffusers'
    ``torch.linalg.solve`` raises there, so existing ``except`` clauses still work."""


@with_backend
class UniPCMultistepScheduler(SolverStepMixin, diffusers.UniPCMultistepScheduler):
    """UniPC, the unified predictor-corrector of Zhao et al. 2023 (arXiv:2302.04867), drop-in for
    ``diffusers.UniPCMultistepScheduler`` (0.42): a subclass with the same constructor arguments,
    config, attributes and helpers; ``step`` (the corrector UniC for the current sample, then the
    predictor UniP) runs as one pass of :func:`genfast.ops.solver_step`, for ``solver_type``
    ``bh1``/``bh2``, ``predict_x0`` True/False, ``solver_order`` 1-3, ``disable_corrector``,
    ``lower_order_final``, ``thresholding`` and every prediction type. ``solver_order > 3`` and a
    ``solver_p`` (another scheduler as predictor) run diffusers' own step.

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).
    """

    _gf_variant = ("unipc",)

    def _gf_build(self) -> np.ndarray:
        """Rows ``[N, 4 (corrector order, 0 = none), 3 (predictor order), 20]``."""
        cfg = self.config
        sig = self._gf_sigmas
        n, alpha, sigma, lam = self._gf_alpha_sigma()
        table = rows(n, MAX_ORDER + 1, MAX_ORDER)
        singular = np.zeros(table.shape[:-1], dtype=bool)
        x0 = self.predict_x0
        pred = cfg.prediction_type
        with np.errstate(all="ignore"):  # rows no step uses may hold inf/NaN
            for i in range(n):
                a0, s0 = alpha[i], sigma[i]
                conv = output_conversion(x0, a0, s0, sig[i])
                if pred not in conv:
                    raise ValueError(f"prediction_type given as {pred} must be one of {', '.join(sorted(conv))} "
                                     "for the UniPCMultistepScheduler.")
                set_coef(table[i], **conv[pred], t_m=1.0, u_m=1.0)
                for oc in range(MAX_ORDER + 1):
                    if oc > i:  # the corrector reaches back to step i - oc
                        table[i, oc] = np.nan
                        continue
                    try:
                        y1 = self._corrector_row(i, oc, alpha, sigma, lam, cfg, x0) if oc else dict(a_x=1.0)
                    except _Singular:
                        singular[i, oc] = True
                        continue
                    for op in range(1, MAX_ORDER + 1):
                        if op > i + 1:  # the predictor reaches back to step i - (op - 1)
                            table[i, oc, op - 1] = np.nan
                            continue
                        try:
                            p_row = self._predictor_row(i, op, alpha, sigma, lam, cfg, x0)
                        except _Singular:
                            singular[i, oc, op - 1] = True
                            continue
                        set_coef(table[i, oc, op - 1], **y1, **p_row)
        # host-side (a set of Python tuples, which torch.compile reads as constants)
        self._gf_singular = {(int(a), int(b), int(c) + 1) for a, b, c in zip(*np.nonzero(singular))}
        return table

    @staticmethod
    def _combo(t: int, s0: int, ks: list, order: int, alpha, sigma, lam, cfg, x0: bool, corrector: bool):
        """UniPC's x_t = c_x x - c_1 h_phi_1 m0 - c_1 B_h sum_k rho_k (m_k - m0) / r_k, returned as
        (c_x, coefficient of m0, {k: coefficient of m_k}) (+ the corrector's rho of the new output)."""
        h = lam[t] - lam[s0]
        rks = [(lam[k] - lam[s0]) / h for k in ks]
        h_phi_1, b_h, rhos = _bh_coefficients(h, rks, order, x0, cfg.solver_type, corrector)
        c1 = alpha[t] if x0 else sigma[t]
        cx = sigma[t] / sigma[s0] if x0 else alpha[t] / alpha[s0]
        m0 = -c1 * h_phi_1
        mk = {}
        for j, rk in enumerate(rks):
            w = c1 * b_h * rhos[j] / rk
            mk[j] = -w
            m0 += w
        new = None
        if corrector:  # the new output enters as rho_last (m_t - m0)
            new = -c1 * b_h * rhos[-1]
            m0 -= new
        return cx, m0, mk, new

    def _corrector_row(self, i, order, alpha, sigma, lam, cfg, x0) -> dict:
        # corrects x_t (step i) from last_sample (step i - 1) with the outputs of steps i-1, i-2, ...:
        # m0 = h1 (the newest stored), m_k = h_{k+1}, and the new output m at step i
        ks = [i - (k + 1) for k in range(1, order)]
        cx, c_m0, mk, new = self._combo(i, i - 1, ks, order, alpha, sigma, lam, cfg, x0, corrector=True)
        row = dict(a_s=cx, a_h1=c_m0, a_m=new)
        for j, c in mk.items():
            row[f"a_h{j + 2}"] = c
        return row

    def _predictor_row(self, i, order, alpha, sigma, lam, cfg, x0) -> dict:
        # predicts step i + 1 from the (corrected) x at step i with m0 = the new output m and
        # m_k = h_k, the outputs of steps i - k
        ks = [i - k for k in range(1, order)]
        cx, c_m0, mk, _ = self._combo(i + 1, i, ks, order, alpha, sigma, lam, cfg, x0, corrector=False)
        row = dict(b_y=cx, b_m=c_m0)
        for j, c in mk.items():
            row[f"b_h{j + 1}"] = c
        return row

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[SchedulerOutput, tuple]:
        """One UniPC step: UniC corrects the current sample with the new model output, then UniP
        predicts the next one, in one fused pass.

        Args:
            model_output: ``[B, C, ...]`` model output at ``sample``.
            timestep: the current timestep (int or tensor); only the first call reads it.
            sample: ``x_t`` from the previous predictor, ``[B, C, ...]``.
            return_dict: return a ``SchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``SchedulerOutput(prev_sample)`` in ``sample``'s dtype, or ``(prev_sample,)``.

        Raises:
            ValueError: ``set_timesteps`` not called; mismatched shapes or devices.

        Mirrors ``diffusers.UniPCMultistepScheduler.step``.
        """
        self._gf_check_schedule()
        self._gf_ready()
        cfg = self._gf_c
        solver_order = cfg["solver_order"]
        if self.solver_p is not None or solver_order > MAX_ORDER:
            if model_output_uncond is not None:
                raise ValueError("UniPCMultistepScheduler.step: fused guidance needs solver_p=None and "
                                 f"solver_order <= {MAX_ORDER}")
            if self.step_index is None:
                self._init_step_index(timestep)
            return super().step(model_output, timestep, sample, return_dict)
        self._gf_begin(model_output, timestep, sample)
        i = self.step_index
        use_corrector = i > 0 and (i - 1) not in self.disable_corrector and self.last_sample is not None
        oc = self.this_order if use_corrector else 0
        if cfg["lower_order_final"]:
            this_order = min(solver_order, self._gf_n - i)
        else:
            this_order = solver_order
        this_order = min(this_order, self.lower_order_nums + 1)
        history = [self.model_outputs[-1 - k] for k in range(max(oc, this_order - 1))]
        cd = torch.promote_types(sample.dtype, model_output.dtype)
        row = self._gf_row(self._gf_variant, sample.device, self._gf_build, (i, oc, this_order - 1))
        if (i, oc, this_order) in self._gf_singular:
            raise SingularScheduleError(
                f"UniPCMultistepScheduler.step: the UniPC linear system of step {i} (corrector order {oc}, predictor "
                f"order {this_order}) is singular for this schedule (diffusers' torch.linalg.solve fails there too); "
                "try lower_order_final=True")
        out = self._gf_run(model_output, sample, row, compute_dtype=cd, history=history,
                           last_sample=self.last_sample if use_corrector else None,
                           model_output_uncond=model_output_uncond, guidance_scale=guidance_scale,
                           guidance_rescale=guidance_rescale,
                           thresholding=bool(cfg["thresholding"]) and self.predict_x0,
                           return_corrected=use_corrector)
        self.model_outputs[:-1] = self.model_outputs[1:]
        self.timestep_list[:-1] = self.timestep_list[1:]
        self.model_outputs[-1] = out.converted
        self.timestep_list[-1] = timestep
        self.this_order = this_order
        self.last_sample = out.corrected if use_corrector else sample
        if self.lower_order_nums < solver_order:
            self.lower_order_nums += 1
        return self._gf_output(SchedulerOutput, return_dict, out.prev_sample, sample.dtype)


__all__ = ["UniPCMultistepScheduler", "SingularScheduleError"]
