"""``EulerDiscreteScheduler`` and ``EulerAncestralDiscreteScheduler``: diffusers' Euler samplers
(Karras et al. 2022) on genfast's fused solver step."""

from __future__ import annotations

from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteSchedulerOutput

from genfast.samplers._fused import SolverStepMixin, promote, rows, set_coef, with_backend


def _euler_output(scheduler, output_class, return_dict, out, dtype):
    """The end of a step as diffusers' Euler schedulers give it: ``prev_sample`` in ``dtype`` (the
    model output's), ``pred_original_sample`` in float32."""
    pred_original_sample = out.converted
    if pred_original_sample.dtype != torch.float32:
        pred_original_sample = pred_original_sample.float()
    return scheduler._gf_output(output_class, return_dict, out.prev_sample, dtype,
                                pred_original_sample=pred_original_sample)


def _reject_integer_timestep(owner: str, timestep) -> None:
    # diffusers' isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)), without the legacy
    # type objects' slow __instancecheck__: CPU int32 / int64 tensors
    if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and timestep.device.type == "cpu"
                                     and timestep.dtype in (torch.int32, torch.int64)):
        raise ValueError(
            "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to"
            f" `{owner}.step()` is not supported. Make sure to pass one of the `scheduler.timesteps` as a timestep.")


def _x0_coefficients(pred: str, sigma, scale_in: np.ndarray, noise_in: np.ndarray, sigma_eps, owner: str) -> dict:
    """Coefficients of x_0 = c_x x + c_g g + c_z z for Euler's prediction types, where the sample
    the model saw is ``x_hat = x + noise_in z`` and ``sigma_eps`` multiplies an epsilon prediction."""
    if pred in ("original_sample", "sample"):
        return dict(c_g=1.0)
    if pred == "epsilon":
        return dict(c_x=1.0, c_z=noise_in, c_g=-sigma_eps)
    if pred == "v_prediction":
        return dict(c_x=scale_in, c_z=noise_in * scale_in, c_g=-sigma / np.sqrt(sigma**2 + 1))
    raise ValueError(f"prediction_type given as {pred} must be one of `epsilon`, or `v_prediction` ({owner})")


@with_backend
class EulerDiscreteScheduler(SolverStepMixin, diffusers.EulerDiscreteScheduler):
    """Euler sampler of Karras et al. 2022 (Algorithm 2, with ``s_churn``), drop-in for
    ``diffusers.EulerDiscreteScheduler`` (0.42): a subclass with the same constructor arguments,
    config, attributes and helpers (``scale_model_input``, Karras / exponential / beta sigmas,
    ``timestep_type``, ``final_sigmas_type``, ...); ``step`` runs as one pass of
    :func:`genfast.ops.solver_step` and ``scale_model_input`` never reads a device value.

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).
    """

    def _gf_default_tables(self):
        return ((("euler", 0.0, 0.0, float("inf"), 1.0), lambda: self._gf_build(0.0, 0.0, float("inf"), 1.0)),)

    def _gf_build(self, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> np.ndarray:
        """Rows ``[N, 20]``: x_hat = x + c z (churn), x_0, then prev = x_hat + (x_hat - x_0) dt / sigma_hat."""
        sig = self._gf_sigmas
        n = len(self._gf_ts)
        sigma, sigma_next = sig[:n], sig[1:n + 1]
        gamma = np.where((s_tmin <= sigma) & (sigma <= s_tmax), min(s_churn / (len(sig) - 1), 2**0.5 - 1), 0.0)
        sigma_hat = sigma * (gamma + 1)
        c = np.where(gamma > 0, np.sqrt(np.maximum(sigma_hat**2 - sigma**2, 0.0)) * s_noise, 0.0)
        table = rows(n)
        scale_in = 1 / (sigma**2 + 1)
        # gamma > 0 exactly where diffusers draws the churn noise (step() decides that on the host)
        set_coef(table, **_x0_coefficients(self.config.prediction_type, sigma, scale_in, c, sigma_hat,
                                            "EulerDiscreteScheduler"))
        with np.errstate(divide="ignore", invalid="ignore"):
            k = (sigma_next - sigma_hat) / sigma_hat  # dt / sigma_hat
        set_coef(table, a_x=1.0, a_z=c, b_y=1.0 + k, b_m=-k)
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
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[EulerDiscreteSchedulerOutput, tuple]:
        """One Euler step from ``sigmas[i]`` to ``sigmas[i + 1]`` (Karras et al. 2022, Alg. 2), fused.

        Args:
            model_output: ``[B, C, ...]`` model output for the scaled input.
            timestep: one of ``scheduler.timesteps`` (float or tensor; integer indices are refused,
                as diffusers); only the first call reads it.
            sample: ``x``, ``[B, C, ...]``.
            s_churn, s_tmin, s_tmax, s_noise: Karras et al.'s stochasticity (Python numbers).
            generator: for the churn noise, drawn as diffusers draws it; without it, genfast's
                Philox generator in the kernel.
            return_dict: return an ``EulerDiscreteSchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``EulerDiscreteSchedulerOutput(prev_sample, pred_original_sample)``: ``prev_sample``
            in ``model_output``'s dtype, ``pred_original_sample`` in float32 (as diffusers).

        Raises:
            ValueError: an integer timestep; mismatched shapes or devices.
            TypeError: non-tensor inputs; ``s_*`` not numbers.

        Mirrors ``diffusers.EulerDiscreteScheduler.step``.
        """
        _reject_integer_timestep("EulerDiscreteScheduler", timestep)
        self._gf_begin(model_output, timestep, sample, diffusers.schedulers.scheduling_euler_discrete.logger)
        try:
            key = tuple(float(v) for v in (s_churn, s_tmin, s_tmax, s_noise))
        except (TypeError, ValueError):
            raise TypeError("EulerDiscreteScheduler.step: s_churn, s_tmin, s_tmax and s_noise must be numbers") \
                from None
        i = self.step_index
        self._gf_ready()
        noise = None
        if key[0] > 0 and key[1] <= self._gf_sigma_list[i] <= key[2]:  # diffusers' gamma > 0: churn noise
            noise = self._gf_noise(generator, None, model_output.shape, model_output.dtype, model_output.device)
        row = self._gf_row(("euler",) + key, model_output.device, lambda: self._gf_build(*key), i)
        # diffusers computes in float32 from an upcast sample: the op computes in float32 whatever
        # the dtype, and keeps x_0 unrounded (round_converted=False)
        out = self._gf_run(model_output, sample, row, compute_dtype=promote(sample.dtype, model_output.dtype),
                           model_output_uncond=model_output_uncond, guidance_scale=guidance_scale,
                           guidance_rescale=guidance_rescale, round_converted=False, noise_args=noise)
        return _euler_output(self, EulerDiscreteSchedulerOutput, return_dict, out, model_output.dtype)


@with_backend
class EulerAncestralDiscreteScheduler(SolverStepMixin, diffusers.EulerAncestralDiscreteScheduler):
    """Ancestral Euler sampler (Karras et al. 2022; k-diffusion's ``sample_euler_ancestral``),
    drop-in for ``diffusers.EulerAncestralDiscreteScheduler`` (0.42): a subclass with the same
    constructor arguments, config, attributes and helpers; ``step`` runs as one pass of
    :func:`genfast.ops.solver_step`.

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).
    """

    _gf_variant = ("euler-a",)

    def _gf_build(self) -> np.ndarray:
        """Rows ``[N, 20]``: prev = x + (x - x_0) (sigma_down - sigma) / sigma + sigma_up z."""
        pred = self.config.prediction_type
        if pred == "sample":
            raise NotImplementedError("prediction_type not implemented yet: sample")
        sig = self._gf_sigmas
        n = len(self._gf_ts)
        s_from, s_to = sig[:n], sig[1:n + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma_up = np.sqrt(s_to**2 * (s_from**2 - s_to**2) / s_from**2)
            sigma_down = np.sqrt(s_to**2 - sigma_up**2)
            k = (sigma_down - s_from) / s_from
        table = rows(n)
        set_coef(table, **_x0_coefficients(pred, s_from, 1 / (s_from**2 + 1), np.zeros(n), s_from,
                                            "EulerAncestralDiscreteScheduler"))
        set_coef(table, a_x=1.0, b_y=1.0 + k, b_m=-k, b_z=sigma_up)
        return table

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[EulerAncestralDiscreteSchedulerOutput, tuple]:
        """One ancestral Euler step, fused.

        Args:
            model_output, timestep, sample, return_dict: as :meth:`EulerDiscreteScheduler.step`.
            generator: the noise, drawn as diffusers draws it (every step); without it, genfast's
                Philox generator in the kernel.
            {guidance_args}

        Returns:
            ``EulerAncestralDiscreteSchedulerOutput(prev_sample, pred_original_sample)``;
            ``prev_sample`` in ``model_output``'s dtype, ``pred_original_sample`` in float32.

        Raises:
            ValueError: an integer timestep; mismatched shapes or devices.
            NotImplementedError: ``prediction_type="sample"`` (as diffusers).

        Mirrors ``diffusers.EulerAncestralDiscreteScheduler.step``.
        """
        _reject_integer_timestep("EulerDiscreteScheduler", timestep)
        self._gf_begin(model_output, timestep, sample, diffusers.schedulers.scheduling_euler_ancestral_discrete.logger)
        row = self._gf_row(self._gf_variant, model_output.device, self._gf_build, self.step_index)
        noise = self._gf_noise(generator, None, model_output.shape, model_output.dtype, model_output.device)
        out = self._gf_run(model_output, sample, row,
                           compute_dtype=promote(sample.dtype, model_output.dtype),
                           model_output_uncond=model_output_uncond, guidance_scale=guidance_scale,
                           guidance_rescale=guidance_rescale, round_converted=False, noise_args=noise)
        return _euler_output(self, EulerAncestralDiscreteSchedulerOutput, return_dict, out, model_output.dtype)


__all__ = ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"]
