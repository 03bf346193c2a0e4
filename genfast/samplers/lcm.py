"""``LCMScheduler``: diffusers' latent-consistency-model sampler on genfast's fused solver step."""

from __future__ import annotations

from typing import Optional, Union

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_lcm import LCMSchedulerOutput

from genfast.samplers._fused import SolverStepMixin, rows, set_coef, with_backend


@with_backend
class LCMScheduler(SolverStepMixin, diffusers.LCMScheduler):
    """Multistep latent-consistency sampling (Luo et al. 2023, Algorithm 1; Song et al. 2023's
    boundary-condition scalings), drop-in for ``diffusers.LCMScheduler`` (0.42): a subclass with the
    same constructor arguments, config, attributes and helpers; ``step`` runs as one pass of
    :func:`genfast.ops.solver_step` (x_0 prediction, clipping or dynamic thresholding, the
    consistency combination and the re-noising in one pass).

    Extra keyword argument: ``backend`` (genfast's, not saved in the config).
    """

    _gf_variant = ("lcm",)

    def _gf_build(self) -> np.ndarray:
        """Rows ``[N, 20]``: x_0 from the prediction, denoised = c_skip x + c_out x_0, then
        prev = sqrt(abar_prev) denoised + sqrt(1 - abar_prev) z (denoised itself at the last step)."""
        cfg = self.config
        ts = self._gf_ts.astype(np.int64)
        n = len(ts)
        ac = self.alphas_cumprod.detach().to("cpu", torch.float64).numpy()
        final = float(self.final_alpha_cumprod)
        prev_t = np.concatenate([ts[1:], ts[-1:]])  # the last step's "previous" timestep is itself
        a_t = ac[ts]
        a_prev = np.where(prev_t >= 0, ac[np.maximum(prev_t, 0)], final)
        c_skip, c_out = (np.asarray(v, dtype=np.float64)
                         for v in self.get_scalings_for_boundary_condition_discrete(ts.astype(np.float64)))
        table = rows(n)
        pred = cfg.prediction_type
        if pred == "epsilon":
            set_coef(table, c_x=1 / np.sqrt(a_t), c_g=-np.sqrt(1 - a_t) / np.sqrt(a_t))
        elif pred == "sample":
            set_coef(table, c_g=1.0)
        elif pred == "v_prediction":
            set_coef(table, c_x=np.sqrt(a_t), c_g=-np.sqrt(1 - a_t))
        else:
            raise ValueError(f"prediction_type given as {pred} must be one of `epsilon`, `sample` or"
                             " `v_prediction` for `LCMScheduler`.")
        last = np.arange(n) == self.num_inference_steps - 1
        set_coef(table, t_m=1.0, u_m=1.0, a_x=c_skip, a_m=c_out, b_y=np.where(last, 1.0, np.sqrt(a_prev)),
                 b_z=np.where(last, 0.0, np.sqrt(1 - a_prev)))
        return table

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        return_dict: bool = True,
        *,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 1.0,
        guidance_rescale: float = 0.0,
    ) -> Union[LCMSchedulerOutput, tuple]:
        """One LCM step: the consistency function's estimate, re-noised to the next timestep, fused.

        Args:
            model_output: ``[B, C, ...]`` model output.
            timestep: the current timestep (int or tensor); only the first call reads it.
            sample: ``x_t``, ``[B, C, ...]``.
            generator: the re-noising noise, drawn as diffusers draws it (every step but the last);
                without it, genfast's Philox generator in the kernel.
            return_dict: return an ``LCMSchedulerOutput`` (True) or a tuple.
            {guidance_args}

        Returns:
            ``LCMSchedulerOutput(prev_sample, denoised)``, both in ``sample``'s dtype.

        Raises:
            ValueError: ``set_timesteps`` not called; mismatched shapes or devices.

        Mirrors ``diffusers.LCMScheduler.step``.
        """
        self._gf_check_schedule()
        self._gf_begin(model_output, timestep, sample)
        self._gf_ready()
        cfg = self._gf_c
        i = self.step_index
        cd = torch.promote_types(sample.dtype, model_output.dtype)
        noise = None
        if i != self.num_inference_steps - 1:
            noise = self._gf_noise(generator, None, model_output.shape, cd, model_output.device)
        row = self._gf_row(self._gf_variant, sample.device, self._gf_build, i)
        thresholding = bool(cfg["thresholding"])
        clip = float(cfg["clip_sample_range"]) if cfg["clip_sample"] and not thresholding else None
        out = self._gf_run(model_output, sample, row, compute_dtype=cd, model_output_uncond=model_output_uncond,
                           guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, clip_sample_range=clip,
                           thresholding=thresholding, return_converted=False, return_corrected=True,
                           noise_args=noise)
        return self._gf_output(LCMSchedulerOutput, return_dict, out.prev_sample, denoised=out.corrected)


__all__ = ["LCMScheduler"]
