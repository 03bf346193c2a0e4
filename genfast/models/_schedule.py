"""The noise schedule of the diffusion models, computed as diffusers computes it (so that training
does not import diffusers)."""

from __future__ import annotations

import math

import torch

__all__ = ["alphas_cumprod"]


def alphas_cumprod(num_train_timesteps: int, beta_schedule: str, beta_start: float,
                    beta_end: float) -> torch.Tensor:
    """float32 ``[T]`` cumulative products of ``1 - beta`` for the training loss, computed as
    diffusers' ``DDPMScheduler`` computes them (a test checks they are equal), so that training
    does not import diffusers. ``squaredcos_cap_v2``: Nichol & Dhariwal (2021), eq. (17), betas
    capped at 0.999."""
    T = num_train_timesteps
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    else:
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)],
                             dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


_alphas_cumprod = alphas_cumprod  # the name the models import
