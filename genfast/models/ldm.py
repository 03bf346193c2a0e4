"""Latent diffusion with text prompts (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models"), the Stable Diffusion mechanism at the digits' scale.

- A KL-regularised convolutional autoencoder (:class:`KLAutoencoder`, the VAE family's objective
  with a small KL weight, Rombach et al. sec. 3.1) maps a ``1 x 32 x 32`` image to a
  ``4 x 8 x 8`` latent; latents are multiplied by ``scaling_factor`` (1 / their standard
  deviation, measured when the diffusion stage starts) so the diffusion sees unit variance, as
  Stable Diffusion's 0.18215.
- A prompt is tokenised over the captions' vocabulary (:class:`~genfast.nn.WordTokenizer`) and
  encoded by a small transformer (:class:`~genfast.nn.TextEncoder`) trained with the model.
- The denoiser is a UNet whose lowest-resolution blocks cross-attend to the prompt's tokens
  (``denoiser="unet"``) or a DiT with adaLN-Zero and cross-attention (``"dit"``).
- Training (:meth:`LatentDiffusion.training_step`): the first ``autoencoder_steps`` steps train
  the autoencoder, then it is frozen and the denoiser and text encoder learn ``L_simple`` on the
  latents (Ho et al. 2020, eq. 14) with captions made from the labels and measured attributes
  (:mod:`genfast.data.captions`), each caption replaced by the empty prompt with probability
  ``prompt_dropout`` so that one model is conditional and unconditional (Ho & Salimans 2021).
- Sampling with any genfast sampler (the fused steps), classifier-free guidance, and
  ``negative_prompt`` in place of the unconditional branch (diffusers' semantics);
  :meth:`~LatentDiffusion.img2img` (SDEdit) and :meth:`~LatentDiffusion.inpaint` edit images.
- Sampling and editing use an exponential moving average of the denoiser's and the text
  encoder's weights by default (``ema_decay``, as Rombach et al.'s and diffusers' training
  scripts; ``use_ema=False`` for the trained weights).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_choice, check_int, check_number
from genfast.models._dit import DiT
from genfast.models._guided import check_inpaint_options, denoise, start_index
from genfast.models._schedule import _alphas_cumprod
from genfast.models._unet import UNet
from genfast.models._zoo_base import ZooModel

__all__ = ["KLAutoencoder", "LatentDiffusion"]


class KLAutoencoder(nn.Module):
    """Convolutional autoencoder with a diagonal Gaussian posterior over a spatial latent.

    ``[B, C, H, W] -> (mean, logvar) [B, latent_channels, H/4, W/4]`` by two stride-2 stages;
    the decoder mirrors it with nearest-neighbour upsampling and ends in ``tanh`` (images in
    [-1, 1]). Loss: squared error plus ``kl_weight`` times the KL to N(0, I) (Kingma & Welling
    2014; the small weight of Rombach et al. 2022, sec. 3.1, keeps the latents detailed).

    Args:
        in_channels: C. latent_channels: latent channels. channels: width of the first stage.
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, channels: int = 32):
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * c, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, in_channels, 3, padding=1), nn.Tanh(),
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)`` of q(z | x), each ``[B, latent_channels, H/4, W/4]`` (logvar clamped to [-30, 20])."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in [-1, 1] from latents."""
        return self.decoder(z)

    def loss(self, x: torch.Tensor, kl_weight: float, noise=None):
        """``(loss, reconstruction error, KL)``, each averaged over the batch (sums over pixels /
        latents); ``noise(shape)`` draws the reparameterisation noise (default ``torch.randn``)."""
        mean, logvar = self.posterior(x)
        eps = (torch.randn(mean.shape) if noise is None else noise(mean.shape)).to(mean)
        z = mean + torch.exp(0.5 * logvar) * eps
        rec = (self.decode(z) - x).square().flatten(1).sum(1).mean()
        kl = 0.5 * (mean.square() + logvar.exp() - logvar - 1).flatten(1).sum(1).mean()
        return rec + kl_weight * kl, rec, kl


class LatentDiffusion(ZooModel):
    """Text-conditioned latent diffusion (module docstring), on the zoo's training interface.

    Args:
        image_shape: (C, H, W); H and W divisible by 4 (and the latent side by 2 for the UNet,
            by ``patch_size`` for the DiT). Default (1, 32, 32): the digits scaled up.
        latent_channels, ae_channels, kl_weight: the autoencoder.
        denoiser: ``"unet"`` or ``"dit"``. base_channels: UNet width. dit_dim, dit_depth,
            patch_size: the DiT.
        text_dim, text_depth, max_length: the text encoder and the prompt length in tokens.
        vocabulary: the prompt words (default: :data:`genfast.data.captions.CAPTION_VOCABULARY`).
        num_train_timesteps, beta_schedule, beta_start, beta_end: the noise schedule (default
            Stable Diffusion's scaled-linear 0.00085 -> 0.012).
        prompt_dropout: probability of training on the empty prompt (0.2: the FDD of empty-prompt
            samples fell from 3.2x to 1.9x its floor against 0.1, the other adherence figures
            unchanged; benchmarks/RESULTS.md, "Latent diffusion").
        attribute_keep: probability of keeping each attribute word of a training caption.
        autoencoder_steps: training steps of the autoencoder stage.
        lr: Adam learning rate of both stages.
        ema_decay: decay of the EMA of the denoiser's and text encoder's weights, updated after
            every diffusion step and warmed up as ``min(ema_decay, (1 + n) / (10 + n))``
            (diffusers' ``EMAModel``); in [0, 1).
        seed: initial weights.

    Raises:
        ValueError / TypeError: an argument out of range (named).
    """

    def __init__(self, image_shape=(1, 32, 32), latent_channels: int = 4, ae_channels: int = 32,
                 kl_weight: float = 1e-3, denoiser: str = "unet", base_channels: int = 64, dit_dim: int = 128,
                 dit_depth: int = 4, patch_size: int = 2, text_dim: int = 64, text_depth: int = 2,
                 max_length: int = 8, vocabulary=None, num_train_timesteps: int = 1000,
                 beta_schedule: str = "scaled_linear", beta_start: float = 0.00085, beta_end: float = 0.012,
                 prompt_dropout: float = 0.2, attribute_keep: float = 0.7, autoencoder_steps: int = 1000,
                 lr: float = 1e-3, ema_decay: float = 0.999, seed: int = 0):
        from genfast.data.captions import CAPTION_VOCABULARY
        from genfast.nn.text import TextEncoder, WordTokenizer

        vocabulary = list(CAPTION_VOCABULARY if vocabulary is None else vocabulary)
        config = dict(latent_channels=latent_channels, ae_channels=ae_channels, kl_weight=kl_weight, denoiser=denoiser,
                      base_channels=base_channels, dit_dim=dit_dim, dit_depth=dit_depth, patch_size=patch_size,
                      text_dim=text_dim, text_depth=text_depth, max_length=max_length, vocabulary=vocabulary,
                      num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, beta_start=beta_start,
                      beta_end=beta_end, prompt_dropout=prompt_dropout, attribute_keep=attribute_keep,
                      autoencoder_steps=autoencoder_steps, lr=lr, ema_decay=ema_decay, seed=seed)
        super().__init__(image_shape, config)
        c, h, w = self.image_shape
        if h % 4 or w % 4 or h != w:
            raise ValueError(f"LatentDiffusion: image_shape must be square with a side divisible by 4, "
                             f"got {image_shape}")
        for name in ("latent_channels", "ae_channels", "base_channels", "dit_dim", "dit_depth", "patch_size",
                     "text_dim", "text_depth", "max_length", "num_train_timesteps"):
            check_int(name, config[name], lo=1)
        check_int("autoencoder_steps", autoencoder_steps, lo=0)
        check_choice("denoiser", denoiser, ("unet", "dit"))
        check_choice("beta_schedule", beta_schedule, ("linear", "scaled_linear", "squaredcos_cap_v2"))
        check_number("kl_weight", kl_weight, lo=0.0, float32=False)
        check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        if not 0.0 <= check_number("ema_decay", ema_decay, lo=0.0, float32=False) < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        for name in ("prompt_dropout", "attribute_keep"):
            if not 0.0 <= check_number(name, config[name], lo=0.0, float32=False) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {config[name]}")
        torch.manual_seed(check_int("seed", seed, lo=0))
        self.latent_shape = (latent_channels, h // 4, w // 4)
        self.tokenizer = WordTokenizer(vocabulary, max_length)
        self.autoencoder = KLAutoencoder(c, latent_channels, ae_channels)
        self.text_encoder = TextEncoder(self.tokenizer.vocab_size, max_length, text_dim, text_depth)
        if denoiser == "unet":
            if (h // 4) % 2:
                raise ValueError(f"LatentDiffusion: the UNet needs an even latent side, got {h // 4}")
            self.denoiser = UNet(latent_channels, base_channels, (1, 2), num_res_blocks=1,
                                 num_heads=4, context_dim=text_dim)
        else:
            self.denoiser = DiT(latent_channels, h // 4, patch_size, dit_dim, dit_depth, 4, context_dim=text_dim)
        # the sampling weights: EMAs of the denoiser and the text encoder (in the state dict)
        self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.ema_text_encoder = copy.deepcopy(self.text_encoder).requires_grad_(False)
        self.register_buffer("ema_updates", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("alphas_cumprod", _alphas_cumprod(num_train_timesteps, beta_schedule, beta_start,
                                                               beta_end), persistent=False)
        self.register_buffer("scaling_factor", torch.tensor(0.0))  # 0: not measured yet
        self.register_buffer("caption_terciles", torch.zeros(10, 3, 2))
        self.ae_opt = torch.optim.Adam(self.autoencoder.parameters(), lr=lr)
        self.diffusion_opt = torch.optim.Adam(list(self.denoiser.parameters()) + list(self.text_encoder.parameters()),
                                              lr=lr)

    # ------------------------------------------------------------------ captions and prompts
    def set_captioner(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Measure the caption cut points on the training set (:meth:`fit` does it first)."""
        from genfast.data.captions import DigitCaptioner

        self.caption_terciles.copy_(DigitCaptioner.from_data(images.cpu(), labels.cpu()).terciles)

    @property
    def captioner(self):
        """The :class:`~genfast.data.captions.DigitCaptioner` of the training set.

        Raises:
            ValueError: before :meth:`set_captioner` / :meth:`fit`.
        """
        from genfast.data.captions import DigitCaptioner

        if not bool(self.caption_terciles.any()):
            raise ValueError("LatentDiffusion: the captioner is not set: call fit(images, labels) or "
                             "set_captioner(images, labels) first")
        return DigitCaptioner(self.caption_terciles)

    def encode_prompt(self, prompts, use_ema: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token embeddings [B, L, text_dim], attention mask [B, L])`` of prompts, by the
        trained text encoder or (``use_ema``) its EMA.

        Raises:
            ValueError: a word outside the vocabulary (listed), a prompt too long.
        """
        ids, mask = self.tokenizer(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return (self.ema_text_encoder if use_ema else self.text_encoder)(ids, mask), mask

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step of the sampling weights (``ema <- d ema + (1 - d) theta``, warmed-up d)."""
        from genfast.training.engine import ema_step_

        n = int(self.ema_updates)
        for ema, net in ((self.ema_denoiser, self.denoiser), (self.ema_text_encoder, self.text_encoder)):
            ema_step_(ema, net, self.config["ema_decay"], n)
        self.ema_updates += 1

    # ------------------------------------------------------------------ latents
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latents (the posterior mean times ``scaling_factor``) of ``[B, C, H, W]`` images."""
        x = self._check_images(images, in_range=True)
        return self.autoencoder.posterior(x)[0] * self._scale()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from scaled latents ``[B, *latent_shape]``."""
        return self.autoencoder.decode(latents / self._scale()).clamp(-1, 1)

    def _scale(self) -> float:
        s = float(self.scaling_factor)
        return s if s > 0 else 1.0

    # ------------------------------------------------------------------ training
    def fit(self, images, labels=None, **kwargs) -> dict:
        """:meth:`ZooModel.fit` after measuring the caption cut points on ``(images, labels)``
        (labels are required: the captions name the digit)."""
        if labels is None:
            raise ValueError("LatentDiffusion.fit: labels are required (the captions name the digit)")
        self.set_captioner(images, labels)
        return super().fit(images, labels, **kwargs)

    def training_step(self, batch) -> dict[str, float]:
        """One step: the autoencoder's while ``step_count < autoencoder_steps``, then the
        denoiser's and text encoder's (the autoencoder frozen). ``batch`` is ``(images, labels[, indices])``.

        Returns:
            ``{"loss", "stage", "reconstruction", "kl"}``: the stage's loss (the autoencoder's
            objective, then the diffusion's ``L_simple``), the stage (0 autoencoder, 1 diffusion)
            and the autoencoder's last reconstruction error and KL (the same keys in both stages).

        Raises:
            ValueError: a batch without labels in the diffusion stage, or no captioner yet.
        """
        x, labels, _ = self._unpack(batch)
        self.train()
        if self.step_count < self.config["autoencoder_steps"]:
            loss, rec, kl = self.autoencoder.loss(x, self.config["kl_weight"], noise=self._noise)
            self.ae_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.ae_opt.step()
            self.step_count += 1
            self._last_ae = (float(rec.detach()), float(kl.detach()))
            return {"loss": float(loss.detach()), "stage": 0.0, "reconstruction": self._last_ae[0],
                    "kl": self._last_ae[1]}
        if labels is None:
            raise ValueError("LatentDiffusion.training_step: the diffusion stage needs labels (captions)")
        with torch.no_grad():
            mean, logvar = self.autoencoder.posterior(x)
            z = mean + torch.exp(0.5 * logvar) * self._noise(mean.shape)
            if float(self.scaling_factor) <= 0:  # first diffusion step: unit-variance latents
                self.scaling_factor.fill_(1.0 / float(z.std().clamp_min(1e-6)))
            z0 = z * self.scaling_factor
        # caption words and prompt dropout from torch's global generator (seeded and saved by the engine)
        captions = self.captioner.caption(x.cpu(), labels.cpu(), keep=self.config["attribute_keep"])
        drop = torch.rand(len(captions)) < self.config["prompt_dropout"]
        prompts = ["" if d else c for c, d in zip(captions, drop.tolist())]
        emb, mask = self.encode_prompt(prompts)
        b = x.shape[0]
        t = torch.randint(0, self.config["num_train_timesteps"], (b,), device=x.device)
        noise = self._noise(z0.shape)
        ab = self.alphas_cumprod[t].view(b, 1, 1, 1)
        zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
        loss = F.mse_loss(self.denoiser(zt, t, encoder_hidden_states=emb, encoder_attention_mask=mask), noise)
        self.diffusion_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.diffusion_opt.step()
        self.update_ema()
        self.step_count += 1
        rec, kl = getattr(self, "_last_ae", (float("nan"), float("nan")))
        return {"loss": float(loss.detach()), "stage": 1.0, "reconstruction": rec, "kl": kl}

    # ------------------------------------------------------------------ sampling and editing
    def make_scheduler(self, sampler: str = "dpm++", backend: str = "auto"):
        """A genfast scheduler by name (:func:`genfast.samplers.make_scheduler`) with this model's schedule."""
        from genfast.samplers import make_scheduler

        c = self.config
        return make_scheduler(sampler, num_train_timesteps=c["num_train_timesteps"], beta_start=c["beta_start"],
                              beta_end=c["beta_end"], beta_schedule=c["beta_schedule"], backend=backend)

    def _prompts(self, prompt, n, name):
        if prompt is None:
            return [""] * n
        if isinstance(prompt, str):
            return [prompt] * n
        if not isinstance(prompt, (list, tuple)) or len(prompt) != n:
            raise ValueError(f"{name} must be a string or a list of {n} strings")
        return list(prompt)

    def _eps_fn(self, prompt, negative_prompt, guidance_scale, n, use_ema=True):
        cond, cmask = self.encode_prompt(self._prompts(prompt, n, "prompt"), use_ema)
        net = self.ema_denoiser if use_ema else self.denoiser
        guided = guidance_scale != 1.0
        if guided:
            unc, umask = self.encode_prompt(self._prompts(negative_prompt, n, "negative_prompt"), use_ema)
            ctx, mask = torch.cat([cond, unc]), torch.cat([cmask, umask])
        elif negative_prompt is not None:
            raise ValueError("negative_prompt needs guidance_scale != 1 (it replaces the unconditional branch)")

        def eps_fn(z, t):
            tb = t.reshape(1).expand(z.shape[0]).to(z.device)
            if not guided:
                return net(z, tb, encoder_hidden_states=cond, encoder_attention_mask=cmask), None
            e = net(torch.cat([z, z]), torch.cat([tb, tb]), encoder_hidden_states=ctx,
                              encoder_attention_mask=mask)
            return e.chunk(2)

        return eps_fn

    def _setup(self, sampler, steps, guidance_scale, backend):
        from genfast.samplers.factory import inference_steps

        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                or not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite float, got {guidance_scale!r}")
        sched = self.make_scheduler(sampler, backend)
        steps = inference_steps(sampler, steps, self.config["num_train_timesteps"])
        sched.set_timesteps(steps, device=self.device)
        return sched

    @torch.no_grad()
    def sample(self, n: int | None = None, generator: torch.Generator | None = None, *, prompt=None,
               negative_prompt=None, guidance_scale: float = 3.0, sampler: str = "dpm++",
               num_inference_steps: int | None = None, seed: int | None = None, backend: str = "auto",
               progress: bool = False, use_ema: bool = True) -> torch.Tensor:
        """Generate images from prompts.

        Args:
            n: number of images (default: the number of prompts, or 1).
            generator: a CPU generator for the initial noise (the zoo's interface); else ``seed``.
            prompt: a string (for all n), a list of n strings, or None (the empty prompt).
            negative_prompt: replaces the empty prompt of the unconditional branch (string or list).
            guidance_scale: w of classifier-free guidance (1: none).
            sampler: one of :data:`genfast.samplers.SAMPLER_NAMES`. num_inference_steps: its steps.
            seed: seed of the initial noise and the sampler's noise (default 0).
            backend: backend of the fused step op.
            use_ema: denoise with the EMA weights (default) or the trained ones.

        Returns:
            ``[n, C, H, W]`` float32 in [-1, 1].

        Raises:
            ValueError: unknown words, bad sizes, a negative prompt without guidance.
        """
        if n is None:
            n = len(prompt) if isinstance(prompt, (list, tuple)) else 1
        check_int("n", n, lo=0)
        seed = 0 if seed is None else check_int("seed", seed, lo=0)
        g = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.eval()
        sched = self._setup(sampler, num_inference_steps, guidance_scale, backend)
        z = (torch.randn((n, *self.latent_shape), generator=g) * sched.init_noise_sigma).to(self.device)
        if n == 0:
            return torch.empty(0, *self.image_shape, device=self.device)
        eps_fn = self._eps_fn(prompt, negative_prompt, float(guidance_scale), n, bool(use_ema))
        z = denoise(eps_fn, sched, z, guidance_scale=float(guidance_scale), seed=seed, progress=progress)
        return self.decode_latents(z)

    @torch.no_grad()
    def img2img(self, images: torch.Tensor, prompt=None, *, strength: float = 0.6, negative_prompt=None,
                guidance_scale: float = 3.0, sampler: str = "ddim", num_inference_steps: int | None = None,
                seed: int = 0, backend: str = "auto", use_ema: bool = True) -> torch.Tensor:
        """SDEdit (Meng et al. 2022): noise the images' latents to ``strength`` of the schedule and
        denoise them with the prompt.

        Args:
            images: ``[B, C, H, W]`` in [-1, 1]. strength: in [0, 1]; 0 returns the images
                unchanged, 1 starts from pure noise (the images are ignored).
            Other arguments: as :meth:`sample`.

        Returns:
            ``[B, C, H, W]`` float32 in [-1, 1].
        """
        x = self._check_images(images, in_range=True)
        strength = check_number("strength", strength, lo=0.0, float32=False)
        if strength > 1:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        self.eval()
        sched = self._setup(sampler, num_inference_steps, guidance_scale, backend)
        start = start_index(len(sched.timesteps), strength)
        if start >= len(sched.timesteps):
            return x.clone()
        g = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((x.shape[0], *self.latent_shape), generator=g).to(self.device)
        if start == 0:
            z = noise * sched.init_noise_sigma
        else:
            z = sched.add_noise(self.encode_images(x), noise, sched.timesteps[start:start + 1])
        eps_fn = self._eps_fn(prompt, negative_prompt, float(guidance_scale), x.shape[0], bool(use_ema))
        z = denoise(eps_fn, sched, z, start=start, guidance_scale=float(guidance_scale), seed=seed)
        return self.decode_latents(z)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, mask: torch.Tensor, prompt=None, *, negative_prompt=None,
                guidance_scale: float = 3.0, sampler: str = "ddim", num_inference_steps: int | None = None,
                seed: int = 0, backend: str = "auto", use_ema: bool = True, jump_length: int = 1,
                jump_n_sample: int = 1, reconstruction_guidance: float = 0.0) -> torch.Tensor:
        """Regenerate the unknown region of images, keeping the known one.

        The latent of the known region is re-noised from the original to each step's level and
        pasted in after the step (RePaint's replacement, Lugmayr et al. 2022, as diffusers'
        inpainting with a text-to-image model), optionally with RePaint's resampling and Ho et
        al.'s reconstruction guidance (in latent space); the mask is downsampled to the latent
        by max-pooling the unknown region (a latent cell is regenerated if any of its pixels
        is). The decoded result keeps the original pixels wherever ``mask`` is 1.

        Args:
            images: ``[B, C, H, W]`` in [-1, 1]. mask: ``[B or 1, 1, H, W]`` with 1 on the known
                pixels, 0 on those to regenerate.
            jump_length, jump_n_sample: RePaint's resampling (diffusers' ``RePaintScheduler``
                names): each block of ``jump_length`` steps runs ``jump_n_sample`` times, the
                latent re-noised back to the block's first level between runs
                (:func:`genfast.models._guided.denoise`); 1 (default): none. ``jump_n_sample``
                times the model calls; it makes the regenerated region agree with the kept one
                (on the digits, bottom halves regenerated from the top halves with the empty
                prompt: see RESULTS.md). Needs ``sampler`` "ddim" or "ddpm".
            reconstruction_guidance: the weight ``w_r`` of reconstruction guidance (Ho et al.
                2022, eq. (7); :func:`genfast.models._guided.denoise`): the clean-latent estimate
                pulled towards the known latent through the denoiser's gradient at every step;
                0 (default): none. A backward pass per step; from the top half alone (the empty
                prompt) it lifts the digits' inpainting accuracy far more than resampling does
                (RESULTS.md, "Latent diffusion"; 30 there). Needs ``sampler`` "ddim" or "ddpm".
            Other arguments: as :meth:`sample`.

        Returns:
            ``[B, C, H, W]`` float32 in [-1, 1], equal to ``images`` where ``mask`` is 1.

        Raises:
            ValueError: a mask of the wrong shape or with values outside {0, 1}; ``jump_length`` or
                ``jump_n_sample`` not an int >= 1, ``reconstruction_guidance`` negative or not
                finite, or resampling or reconstruction guidance with another sampler.
        """
        x = self._check_images(images, in_range=True)
        m = _check_mask(mask, x)
        jump_length, jump_n_sample, rg = check_inpaint_options(sampler, jump_length, jump_n_sample,
                                                               reconstruction_guidance)
        self.eval()
        sched = self._setup(sampler, num_inference_steps, guidance_scale, backend)
        known = self.encode_images(x)
        lm = 1.0 - F.max_pool2d(1.0 - m, kernel_size=x.shape[-1] // self.latent_shape[-1])
        g = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(known.shape, generator=g).to(self.device)
        z = noise * sched.init_noise_sigma
        eps_fn = self._eps_fn(prompt, negative_prompt, float(guidance_scale), x.shape[0], bool(use_ema))
        z = denoise(eps_fn, sched, z, guidance_scale=float(guidance_scale), seed=seed, known=known, mask=lm,
                    noise=noise, jump_length=jump_length, jump_n_sample=jump_n_sample, reconstruction_guidance=rg)
        out = self.decode_latents(z)
        return m * x + (1 - m) * out


def _check_mask(mask, x):
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() and mask.dtype != torch.bool:
        raise TypeError("mask must be a float or bool tensor")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != x.shape[2:] or mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask must be [B or 1, 1, {x.shape[2]}, {x.shape[3]}], got {tuple(mask.shape)}")
    m = mask.to(x.device, torch.float32)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must hold only 0 (regenerate) and 1 (keep)")
    return m
