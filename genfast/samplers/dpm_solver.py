"""``DPMSolverMultistepScheduler``: diffusers' DPM-Solver(++) on genfast's fused solver step."""

from __future__ import annotations

from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from genfast.samplers._fused import SolverStepMixin, output_conversion, promote, rows, set_coef, with_backend


@with_backend
class DPMSolverMultistepScheduler(SolverStepMixin, diffusers.DPMSolverMultistepScheduler):
    """Multistep DPM-Solver / DPM-Solver++ (Lu et al. 2022, arXiv:2206.00927 and 2211.01095),
    drop-in for ``diffusers.DPMSolverMultistepScheduler`` (0.42): a subclass with the same
    constructor arguments, config, attributes and helpers; ``step`` runs as one pass of
    :func:`genfast.ops.solver_step`.

    Every option of diffusers' class is supported: ``algorithm_type`` ``dpmsolver++``,
    ``sde-dpmsolver++``, ``dpmsolver``, ``sde-dpmsolver``; ``solver_order`` 1-3; ``solver_type``
    midpoint/heun; ``thresholding``; every ``prediction_type`` (incl. ``flow_prediction``);
    ``use_karras_sigmas`` / ``use_lu_lambdas`` / exponential / beta / flow sigmas,
    ``lower_order_final``, ``euler_at_final``, ``final_sigmas_type`` (schedules come from
    diffusers' own ``set_timesteps``). The per-step coefficients (Lu et al. 2022b, eq. (5) and
    Algorithm 2; the SDE forms of their Sec. 4) are computed once per schedule in float64.

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).

    Raises:
        ValueError / NotImplementedError: as diffusers' constructor; ``backend`` not a known
            backend (ValueError).
    """

    _gf_variant = ("dpm",)

    def _gf_build(self) -> np.ndarray:
        """Coefficient rows ``[N, 3 (order), 20]`` for every step index and solver order."""
        cfg = self.config
        sig = self._gf_sigmas
        n, alpha, sigma, lam = self._gf_alpha_sigma()
        i = np.arange(n)
        table = rows(n, 3)
        with np.errstate(all="ignore"):  # rows that a step never uses (order > i + 1) may hold inf/NaN
            at, st, a0, s0 = alpha[i + 1], sigma[i + 1], alpha[i], sigma[i]
            h = lam[i + 1] - lam[i]
            r0 = (lam[i] - lam[i - 1]) / h
            r1 = (lam[i - 1] - lam[i - 2]) / h
            algo = cfg.algorithm_type
            em, ep = np.exp(-h), np.exp(h)
            if algo == "dpmsolver++":
                cs, cz = st / s0, 0.0
                d0 = -at * (em - 1.0)
                d1_mid, d1_heun = -0.5 * at * (em - 1.0), at * ((em - 1.0) / h + 1.0)
                d1_3, d2_3 = d1_heun, -at * ((em - 1.0 + h) / h**2 - 0.5)
            elif algo == "dpmsolver":
                cs, cz = at / a0, 0.0
                d0 = -st * (ep - 1.0)
                d1_mid, d1_heun = -0.5 * st * (ep - 1.0), -st * ((ep - 1.0) / h - 1.0)
                d1_3, d2_3 = d1_heun, -st * ((ep - 1.0 - h) / h**2 - 0.5)
            elif algo == "sde-dpmsolver++":
                e2 = np.exp(-2.0 * h)
                cs, cz = st / s0 * em, st * np.sqrt(1.0 - e2)
                d0 = at * (1.0 - e2)
                d1_mid, d1_heun = 0.5 * at * (1.0 - e2), at * ((1.0 - e2) / (-2.0 * h) + 1.0)
                d1_3, d2_3 = d1_heun, at * ((1.0 - e2 - 2.0 * h) / (2.0 * h) ** 2 - 0.5)
            else:  # sde-dpmsolver; diffusers has no third-order form of it
                cs, cz = at / a0, st * np.sqrt(np.exp(2.0 * h) - 1.0)
                d0 = -2.0 * st * (ep - 1.0)
                d1_mid, d1_heun = -st * (ep - 1.0), -2.0 * st * ((ep - 1.0) / h - 1.0)
                d1_3 = d2_3 = np.full(n, np.nan)
            d1 = d1_mid if cfg.solver_type == "midpoint" else d1_heun
            # order 1: D0 = m0; order 2: D1 = (m0 - m1) / r0; order 3 (Lu et al. 2022b, Alg. 2):
            # D1 = D1_0 + rho (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1), rho = r0 / (r0 + r1),
            # with D1_0 = (m0 - m1) / r0 and D1_1 = (m1 - m2) / r1, written out per m_k below
            rho = r0 / (r0 + r1)
            per_order = (
                dict(b_m=d0),
                dict(b_m=d0 + d1 / r0, b_h1=-d1 / r0),
                dict(b_m=d0 + d1_3 * (1 + rho) / r0 + d2_3 / (r0 * (r0 + r1)),
                     b_h1=d1_3 * (-(1 + rho) / r0 - rho / r1) + d2_3 * (-1 / r0 - 1 / r1) / (r0 + r1),
                     b_h2=d1_3 * rho / r1 + d2_3 / (r1 * (r0 + r1))),
            )
            for o, combo in enumerate(per_order):
                set_coef(table[:, o], a_x=1.0, b_y=cs, b_z=cz, **combo)
            # model-output conversion at sigma_s0 (diffusers' convert_model_output)
            pred = cfg.prediction_type
            if algo in ("dpmsolver++", "sde-dpmsolver++"):  # x_0 prediction; thresholded as is
                conv = output_conversion(True, a0, s0, sig[i])
                view = dict(t_m=1.0, u_m=1.0)
            else:  # epsilon; thresholding acts on its x_0 view and converts back
                conv = output_conversion(False, a0, s0, sig[i])
                view = dict(t_m=-s0 / a0, t_x=1 / a0, u_m=-a0 / s0, u_x=1 / s0)
            if pred not in conv:
                raise ValueError(
                    f"prediction_type given as {pred} must be one of {', '.join(sorted(conv))} for "
                    f"the DPMSolverMultistepScheduler with algorithm_type={algo!r}")
            for o in range(3):
                set_coef(table[:, o], **conv[pred], **view)
        return table

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        variance_noise: Optional[torch.Tensor] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[SchedulerOutput, tuple]:
        """One multistep DPM-Solver step ``x_s -> x_t`` (Lu et al. 2022b, Algorithm 2), fused.

        Args:
            model_output: ``[B, C, ...]`` model output (with ``variance_type`` learned, the first
                3 channels are used, as diffusers).
            timestep: the current timestep (int or tensor); only the first call reads it, to find
                the step index (see ``_init_step_index``).
            sample: ``x_s``, ``[B, C, ...]``.
            generator: for the SDE variants' noise, drawn exactly as diffusers draws it; without it
                (and without ``variance_noise``) the noise comes from genfast's Philox generator
                in the kernel, seeded from torch's default generator of the device.
            variance_noise: explicit noise for the SDE variants (as diffusers).
            return_dict: return a ``SchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``SchedulerOutput(prev_sample)`` in ``model_output``'s dtype, or ``(prev_sample,)``.

        Raises:
            ValueError: ``set_timesteps`` not called; mismatched shapes or devices.
            TypeError: non-tensor inputs.
            NotImplementedError: third order with ``sde-dpmsolver`` (diffusers has none either).

        Mirrors ``diffusers.DPMSolverMultistepScheduler.step``.
        """
        self._gf_check_schedule()
        self._gf_ready()
        cfg = self._gf_c
        if cfg["prediction_type"] == "epsilon" and cfg["variance_type"] in ("learned", "learned_range"):
            model_output = model_output[:, :3]
            if model_output_uncond is not None:
                model_output_uncond = model_output_uncond[:, :3]
        self._gf_begin(model_output, timestep, sample)
        i, n = self._step_index, self._gf_n
        solver_order, algo = cfg["solver_order"], cfg["algorithm_type"]
        lower_order_final = i == n - 1 and (
            cfg["euler_at_final"] or (cfg["lower_order_final"] and n < 15) or cfg["final_sigmas_type"] == "zero")
        lower_order_second = i == n - 2 and cfg["lower_order_final"] and n < 15
        if solver_order == 1 or self.lower_order_nums < 1 or lower_order_final:
            order = 1
        elif solver_order == 2 or self.lower_order_nums < 2 or lower_order_second:
            order = 2
        else:
            order = 3
        if order == 3 and algo == "sde-dpmsolver":
            raise NotImplementedError("DPMSolverMultistepScheduler: no third-order sde-dpmsolver update")
        sde = algo in ("sde-dpmsolver", "sde-dpmsolver++")
        noise = self._gf_noise(generator, variance_noise, model_output.shape, torch.float32, model_output.device) \
            if sde else None
        cd = model_output.dtype if sample.dtype == model_output.dtype else promote(sample.dtype, model_output.dtype)
        row = self._gf_row(self._gf_variant, model_output.device, self._gf_build, (i, order - 1))
        outputs = self.model_outputs
        out = self._gf_run(
            model_output, sample, row, compute_dtype=cd, history=[outputs[-1 - k] for k in range(order - 1)],
            model_output_uncond=model_output_uncond, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            thresholding=bool(cfg["thresholding"]), noise_args=noise)
        outputs[:-1] = outputs[1:]
        outputs[-1] = out.converted
        if self.lower_order_nums < solver_order:
            self.lower_order_nums += 1
        return self._gf_output(SchedulerOutput, return_dict, out.prev_sample, model_output.dtype)


__all__ = ["DPMSolverMultistepScheduler"]
