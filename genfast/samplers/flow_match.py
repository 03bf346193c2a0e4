"""``FlowMatchEulerDiscreteScheduler``: diffusers' flow-matching Euler sampler (SD3, Flux) on
genfast's fused solver step."""

from __future__ import annotations

import os
from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput

from genfast.samplers._fused import SolverStepMixin, promote, rows, set_coef, with_backend
from genfast.samplers.euler import _reject_integer_timestep


@with_backend
class FlowMatchEulerDiscreteScheduler(SolverStepMixin, diffusers.FlowMatchEulerDiscreteScheduler):
    """Euler integration of a rectified-flow / flow-matching ODE (Esser et al. 2024, SD3; Lipman
    et al. 2023), drop-in for ``diffusers.FlowMatchEulerDiscreteScheduler`` (0.42): a subclass with
    the same constructor arguments (``shift``, ``use_dynamic_shifting`` with ``mu``,
    ``shift_terminal``, Karras / exponential / beta sigmas, ``invert_sigmas``,
    ``stochastic_sampling``, ...), config and helpers; ``step`` runs as one pass of
    :func:`genfast.ops.solver_step`.

    ``per_token_timesteps`` (a per-token sigma, not a per-row one) runs diffusers' own step.

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).
    """

    _gf_variant = ("flow",)

    def _gf_build(self) -> np.ndarray:
        """Rows ``[N, 20]``: prev = x + (sigma_next - sigma) v; stochastic: x_0 = x - sigma v,
        prev = (1 - sigma_next) x_0 + sigma_next z."""
        sig = self._gf_sigmas
        n = len(self._gf_ts)
        sigma, sigma_next = sig[:n], sig[1:n + 1]
        table = rows(n)
        if self.config.stochastic_sampling:
            set_coef(table, c_x=1.0, c_g=-sigma, b_m=1.0 - sigma_next, b_z=sigma_next)
        else:
            set_coef(table, c_g=1.0, a_x=1.0, b_y=1.0, b_m=sigma_next - sigma)
        return table

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: Optional[torch.Generator] = None,
        per_token_timesteps: Optional[torch.Tensor] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[FlowMatchEulerDiscreteSchedulerOutput, tuple]:
        """One Euler step of the flow ODE from ``sigmas[i]`` to ``sigmas[i + 1]``, fused (with
        ``backend="auto"``, the deterministic float32 step without guidance is one ``torch.add``:
        nothing is faster for a single axpy).

        Args:
            model_output: the predicted velocity ``[B, ...]``.
            timestep: one of ``scheduler.timesteps`` (integer indices are refused, as diffusers).
            sample: ``x``, ``[B, ...]``.
            s_churn, s_tmin, s_tmax, s_noise: accepted and unused, as in diffusers.
            generator: the noise of ``stochastic_sampling``, drawn as diffusers draws it; without
                it, genfast's Philox generator in the kernel.
            per_token_timesteps: diffusers' per-token schedule; runs diffusers' own step.
            return_dict: return a ``FlowMatchEulerDiscreteSchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``FlowMatchEulerDiscreteSchedulerOutput(prev_sample)`` in ``model_output``'s dtype.

        Raises:
            ValueError: an integer timestep; mismatched shapes or devices.

        Mirrors ``diffusers.FlowMatchEulerDiscreteScheduler.step``.
        """
        _reject_integer_timestep("FlowMatchEulerDiscreteScheduler", timestep)
        if per_token_timesteps is not None:
            if model_output_uncond is not None:
                raise ValueError("FlowMatchEulerDiscreteScheduler.step: fused guidance needs per_token_timesteps=None")
            return super().step(model_output, timestep, sample, s_churn, s_tmin, s_tmax, s_noise, generator,
                                per_token_timesteps, return_dict)
        self._gf_begin(model_output, timestep, sample)
        self._gf_ready()
        if (self.backend == "auto" and model_output_uncond is None and not self._gf_c["stochastic_sampling"]
                and sample.dtype == torch.float32 and model_output.dtype == torch.float32
                and not os.environ.get("GENFAST_BACKEND")):
            # The deterministic float32 step is one memory-bound axpy, prev = x + dt v: one torch.add
            # (alpha=dt) is the fastest path, ahead of the fused op's call overhead and of diffusers'
            # two elementwise ops (benchmarks/RESULTS.md, "Drop-in schedulers"); dt as diffusers
            # forms it, the difference of two float32 sigmas.
            i = self.step_index
            dt = float(np.float32(self._gf_sigmas[i + 1]) - np.float32(self._gf_sigmas[i]))
            return self._gf_output(FlowMatchEulerDiscreteSchedulerOutput, return_dict,
                                   torch.add(sample, model_output, alpha=dt))
        cd = promote(sample.dtype, torch.float32)  # diffusers upcasts the sample
        noise = None
        if self._gf_c["stochastic_sampling"]:
            noise = self._gf_noise(generator, None, sample.shape, cd, sample.device)
        row = self._gf_row(self._gf_variant, sample.device, self._gf_build, self.step_index)
        out = self._gf_run(model_output, sample, row, compute_dtype=promote(cd, model_output.dtype),
                           model_output_uncond=model_output_uncond, guidance_scale=guidance_scale,
                           guidance_rescale=guidance_rescale, round_converted=False, return_converted=False,
                           noise_args=noise)
        return self._gf_output(FlowMatchEulerDiscreteSchedulerOutput, return_dict, out.prev_sample,
                               model_output.dtype)


__all__ = ["FlowMatchEulerDiscreteScheduler"]
