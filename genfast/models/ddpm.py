"""DDPM: a denoising diffusion probabilistic model with a small UNet, trained with the epsilon
loss, sampled through genfast's fused DDPM / DDIM schedulers, optionally class-conditional with
classifier-free guidance (and a negative class)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_choice, check_image_range, check_int, check_number
from genfast.training.engine import EMA, Task

from ._schedule import _alphas_cumprod
from ._unet import UNet

__all__ = ["DDPM"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_FORMAT_VERSION = 1
_SAMPLERS = ("ddpm", "ddim")


class DDPM(nn.Module):
    """Denoising diffusion probabilistic model for small images.

    Holds the noise-prediction UNet ``eps_theta(x_t, t, y)``, an exponential moving average
    (EMA) copy of its weights used for sampling, and the noise schedule. Training is algorithm 1
    of Ho et al. (2020): ``t ~ U{0..T-1}``, ``x_t = add_noise(x_0, eps, t)``, minimise
    ``|eps - eps_theta(x_t, t, y)|^2``. With ``num_classes`` set, the label is replaced by a
    "null" label with probability ``class_dropout`` so that one network learns both the
    conditional and the unconditional model, and sampling can use classifier-free guidance (Ho &
    Salimans, 2021). Sampling is algorithm 2 through :class:`genfast.samplers.DDPMScheduler`
    (1000 steps) or :class:`genfast.samplers.DDIMScheduler` (Song et al., 2021; 50 steps), whose
    ``step`` is one fused op.

    Args:
        image_size: side of the square images (or ``(H, W)``), divisible by
            ``2 ** (len(channel_mult) - 1)``.
        in_channels: image channels C.
        base_channels: UNet width at full resolution.
        channel_mult: UNet width multipliers per resolution level.
        num_res_blocks: residual blocks per UNet level.
        num_heads: attention heads at the lowest resolution.
        num_classes: K for a class-conditional model, or None for an unconditional one.
        class_dropout: probability of training with the null label (conditional models only).
        dropout: dropout inside the residual blocks.
        num_train_timesteps: T.
        beta_schedule: ``"linear"`` (Ho et al.) or ``"squaredcos_cap_v2"`` (Nichol & Dhariwal,
            2021, cosine), as the schedulers name them.
        beta_start: first beta of the linear schedule.
        beta_end: last beta of the linear schedule.
        clip_sample: clamp the x0 prediction to [-1, 1] in each sampling step.
        ema_decay: EMA decay per optimisation step (warmed up as ``min(decay, (1+n)/(10+n))``).

    Raises:
        ValueError / TypeError: an argument out of range or of the wrong type (the message names it).

    Source: Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models", algorithms 1-2
    and appendix B; Ho & Salimans (2021), "Classifier-Free Diffusion Guidance".
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 8,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        num_heads: int = 4,
        num_classes: int | None = None,
        class_dropout: float = 0.1,
        dropout: float = 0.0,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        clip_sample: bool = True,
        ema_decay: float = 0.999,
    ):
        super().__init__()
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(hw) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in hw):
            raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
        check_int("in_channels", in_channels, lo=1)
        check_int("base_channels", base_channels, lo=1)
        check_int("num_res_blocks", num_res_blocks, lo=1)
        check_int("num_train_timesteps", num_train_timesteps, lo=1)
        channel_mult = tuple(channel_mult)
        if not channel_mult or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in channel_mult
        ):
            raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, got {channel_mult!r}")
        f = 2 ** (len(channel_mult) - 1)
        if hw[0] % f or hw[1] % f:
            raise ValueError(f"image_size {hw} must be divisible by 2**(len(channel_mult)-1) = {f}")
        if num_classes is not None:
            check_int("num_classes", num_classes, lo=1)
        if not 0.0 <= class_dropout < 1.0:
            raise ValueError(f"class_dropout must be in [0, 1), got {class_dropout}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(
                "beta_schedule must be 'linear', 'scaled_linear' or 'squaredcos_cap_v2', "
                f"got {beta_schedule!r}"
            )
        self.config = {
            "image_size": list(hw),
            "in_channels": in_channels,
            "base_channels": base_channels,
            "channel_mult": list(channel_mult),
            "num_res_blocks": num_res_blocks,
            "num_heads": num_heads,
            "num_classes": num_classes,
            "class_dropout": float(class_dropout),
            "dropout": float(dropout),
            "num_train_timesteps": num_train_timesteps,
            "beta_schedule": beta_schedule,
            "beta_start": float(beta_start),
            "beta_end": float(beta_end),
            "clip_sample": bool(clip_sample),
            "ema_decay": float(ema_decay),
        }
        self.unet = UNet(
            in_channels, base_channels, channel_mult, num_res_blocks, num_heads, num_classes, dropout
        )
        self.ema = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.ema_updates = 0
        self.training_info: dict = {}
        # not saved: a function of the config
        self.register_buffer(
            "alphas_cumprod", _alphas_cumprod(num_train_timesteps, beta_schedule, beta_start, beta_end),
            persistent=False,
        )

    # ------------------------------------------------------------------ properties
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this model makes."""
        return (self.config["in_channels"], *self.config["image_size"])

    @property
    def num_classes(self) -> int | None:
        """K for a class-conditional model, else None."""
        return self.config["num_classes"]

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    def make_scheduler(self, sampler: str = "ddpm", backend: str = "auto"):
        """A genfast scheduler with this model's noise schedule.

        Args:
            sampler: ``"ddpm"`` (:class:`genfast.samplers.DDPMScheduler`, ancestral, variance
                ``fixed_small``) or ``"ddim"`` (:class:`genfast.samplers.DDIMScheduler`, eta 0).
            backend: backend of the fused step op: ``"auto"``, ``"cpu"``, ``"cuda"``,
                ``"triton"`` or ``"reference"`` (see :func:`genfast.ops.backends`).

        Returns:
            The scheduler (diffusers' API: ``set_timesteps``, ``timesteps``, ``step``).

        Raises:
            ValueError: unknown ``sampler`` or ``backend``.
        """
        # imported here: genfast.samplers imports diffusers, needed to sample but not to train
        from genfast.samplers import make_scheduler

        check_choice("sampler", sampler, _SAMPLERS)
        return make_scheduler(sampler, **self._noise_schedule(), backend=backend)

    def _noise_schedule(self) -> dict:
        """The training schedule as :func:`genfast.samplers.make_scheduler`'s keyword arguments."""
        c = self.config
        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "clip_sample")
        return {k: c[k] for k in keys}

    # ------------------------------------------------------------------ model
    def _labels(self, class_labels, batch: int, device, name: str = "class_labels") -> torch.Tensor | None:
        if class_labels is None:
            return None
        k = self.num_classes
        if k is None:
            raise ValueError(f"{name} given but the model is unconditional (num_classes=None)")
        if isinstance(class_labels, bool):
            raise TypeError(f"{name} must be an int or an int64 tensor [B], got bool")
        if isinstance(class_labels, int):
            class_labels = torch.full((batch,), class_labels, dtype=torch.long)
        if not isinstance(class_labels, torch.Tensor) or class_labels.is_floating_point():
            raise TypeError(
                f"{name} must be an int or an integer tensor [B], got {type(class_labels).__name__}"
            )
        class_labels = class_labels.reshape(-1)
        if class_labels.numel() == 1:
            class_labels = class_labels.expand(batch)
        if class_labels.numel() != batch:
            raise ValueError(f"{name} must hold {batch} labels, got {class_labels.numel()}")
        if class_labels.numel() and (int(class_labels.min()) < 0 or int(class_labels.max()) >= k):
            raise ValueError(
                f"{name} must lie in [0, {k - 1}], got values {class_labels.unique().tolist()[:10]}"
            )
        return class_labels.to(device=device, dtype=torch.long)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        use_ema: bool = False,
    ) -> torch.Tensor:
        """Predicted noise ``eps_theta(x_t, t, y)``.

        Args:
            x: ``[B, C, H, W]`` noisy images ``x_t``, float.
            timesteps: ``[B]`` (or scalar) int64 timesteps in ``[0, T)``.
            class_labels: ``[B]`` int64 labels in ``[0, K)``, or None for the unconditional
                (null-label) model. The null label itself is index K.
            use_ema: use the EMA weights instead of the trained ones.

        Returns:
            ``[B, C, H, W]`` predicted noise, dtype of ``x``.
        """
        net = self.ema if use_ema else self.unet
        return net(x, timesteps, class_labels)

    def loss(
        self,
        x0: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        timesteps: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        drop_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The simplified training objective ``L_simple`` (Ho et al., 2020, eq. 14, algorithm 1).

        Args:
            x0: ``[B, C, H, W]`` clean images in [-1, 1], float32.
            class_labels: ``[B]`` int64 labels in ``[0, K)`` (conditional models; each is replaced
                by the null label with probability ``class_dropout``), or None (null labels).
            generator: CPU generator for t, the noise and the label dropout (None: global RNG).
            timesteps: ``[B]`` int64 timesteps to use instead of drawing them.
            noise: ``[B, C, H, W]`` noise to use instead of drawing it.
            drop_mask: ``[B]`` bool, which labels become the null label, instead of drawing it.

        Returns:
            0-dim tensor: the mean squared error between the noise and its prediction.

        Raises:
            ValueError: ``x0`` is not ``[B, *image_shape]`` or labels are out of range.
        """
        if not isinstance(x0, torch.Tensor) or x0.dim() != 4 or tuple(x0.shape[1:]) != self.image_shape:
            raise ValueError(
                f"x0 must be [B, {', '.join(map(str, self.image_shape))}], got {getattr(x0, 'shape', x0)}"
            )
        b, dev = x0.shape[0], x0.device
        labels = self._labels(class_labels, b, dev)
        if timesteps is None:
            timesteps = torch.randint(0, self.config["num_train_timesteps"], (b,), generator=generator)
        t = timesteps.to(dev)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator)
        noise = noise.to(dev, x0.dtype)
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. eq. 4), as diffusers' add_noise
        ab = self.alphas_cumprod.to(x0.dtype)[t].reshape(b, 1, 1, 1)
        x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * noise
        if self.num_classes is not None:
            null = torch.full((b,), self.num_classes, dtype=torch.long, device=dev)
            if labels is None:
                labels = null
            else:
                if drop_mask is None:
                    drop_mask = torch.rand(b, generator=generator) < self.config["class_dropout"]
                drop = drop_mask.to(dev)
                labels = torch.where(drop, null, labels)
        return F.mse_loss(self.unet(x_t, t, labels), noise)

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step of the sampling weights: ``ema <- d ema + (1 - d) theta``, with the decay
        warmed up as ``d = min(ema_decay, (1 + n) / (10 + n))`` after n updates (as in
        ``diffusers.training_utils.EMAModel``)."""
        from genfast.training.engine import ema_step_

        ema_step_(self.ema, self.unet, self.config["ema_decay"], self.ema_updates)
        self.ema_updates += 1

    def fit(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        time_budget_s: float | None = None,
        batch_size: int = 128,
        lr: float = 2e-3,
        warmup_steps: int = 100,
        seed: int = 0,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
        **engine,
    ) -> dict:
        """Trains the model with AdamW on a data set held in memory (algorithm 1 of Ho et al.).

        Training stops after ``steps`` optimisation steps or ``time_budget_s`` seconds, whichever
        comes first. The learning rate warms up linearly over ``warmup_steps`` steps, then
        follows a cosine decay to 0 over the run's progress (the larger of the fraction of steps
        and the fraction of the time budget used), so a time-limited run still ends annealed.
        The EMA weights are updated after every step.

        Args:
            images: ``[N, C, H, W]`` float32 in [-1, 1], on any device (batches are moved to the
                model's device), or a ``Dataset`` / ``DataLoader`` of such images (and labels).
            labels: ``[N]`` int64 labels in ``[0, K)`` for a conditional model, or None.
            steps: number of optimisation steps, or None for no limit (then ``time_budget_s``
                is required).
            time_budget_s: wall-clock budget in seconds, or None.
            batch_size: images per step.
            lr: peak learning rate.
            warmup_steps: linear warm-up length in steps.
            seed: seed of batches, timesteps, noise and label dropout.
            progress: show a tqdm progress bar.
            callback: called as ``callback(step, loss)`` after each step.
            **engine: further :class:`genfast.training.Trainer` options (``out_dir``,
                ``save_every``, ``resume``, ``overwrite``, ``min_steps``, ...).

        Returns:
            dict with ``steps`` (int), ``seconds`` (float), ``loss`` (mean of the last 100 steps)
            and ``losses`` (list of every step's loss).

        Raises:
            ValueError: neither ``steps`` nor ``time_budget_s`` is given, shapes do not match,
                images outside [-1, 1] (e.g. uint8 or [0, 255] data), or a conditional model
                gets no labels.
        """
        from genfast.training import Trainer, warmup_cosine

        if steps is None and time_budget_s is None:
            raise ValueError("give steps or time_budget_s (or both)")
        if steps is not None:
            check_int("steps", steps, lo=1)
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0, got {time_budget_s}")
        check_int("batch_size", batch_size, lo=1)
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
                raise ValueError(f"images must be [N, {', '.join(map(str, self.image_shape))}], "
                                 f"got {tuple(images.shape)}")
            if len(images) == 0:
                raise ValueError("images is empty")
            check_image_range(images, "images")
            if self.num_classes is not None and labels is None:
                raise ValueError("labels are required to train a class-conditional model (num_classes is set)")
            if labels is not None:
                labels = self._labels(labels, len(images), "cpu", "labels") if self.num_classes is not None else None
        opt = torch.optim.AdamW(self.unet.parameters(), lr=lr, weight_decay=0.0)
        trainer = Trainer(_DDPMTask(self, opt), steps=steps, time_budget_s=time_budget_s, batch_size=batch_size,
                          seed=seed, progress=progress, lr_schedule=warmup_cosine(warmup_steps), grad_clip=1.0,
                          callback=None if callback is None else (lambda i, out: callback(i, out["loss"])),
                          **engine)
        out = trainer.fit(images, labels)
        losses = [h["loss"] for h in out["history"]]
        tail = losses[-100:]
        info = {"steps": out["steps"], "seconds": out["seconds"],
                "loss": sum(tail) / len(tail) if tail else float("nan"), "losses": losses}
        prev = self.training_info
        self.training_info = {
            "steps": prev.get("steps", 0) + len(losses),
            "seconds": prev.get("seconds", 0.0) + out["seconds"],
            "final_loss": info["loss"],
            "batch_size": batch_size,
            "lr": lr,
        }
        return info

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        n: int = 64,
        *,
        sampler: str = "ddpm",
        num_inference_steps: int | None = None,
        class_labels: int | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        negative_class: int | None = None,
        seed: int = 0,
        eta: float = 0.0,
        backend: str = "auto",
        batch_size: int | None = None,
        use_ema: bool = True,
        progress: bool = False,
    ) -> torch.Tensor:
        """Generates images (algorithm 2 of Ho et al., or DDIM) through genfast's fused samplers.

        Each step calls the UNet once (on a doubled batch under guidance), then the scheduler's
        ``step``, one fused op that forms the guided noise ``eps_u + w (eps_c - eps_u)``, the x0
        prediction, clipping, the posterior mean and fresh Philox noise. The initial noise and
        the op's Philox stream are seeded by ``seed``, so a call is repeatable on one backend.

        Classifier-free guidance: with ``class_labels`` and ``guidance_scale`` w != 1, the
        unconditional branch uses the null label; with ``negative_class``, it uses that class
        instead (Stable Diffusion's negative prompt), so samples are pushed away from it. With
        ``class_labels=None`` and a ``negative_class``, the conditional branch is the null label.

        Args:
            n: number of images.
            sampler: ``"ddpm"`` (ancestral, default 1000 steps) or ``"ddim"`` (deterministic for
                eta=0, default 50 steps).
            num_inference_steps: steps of the sampler (None: 1000 for ddpm, 50 for ddim).
            class_labels: an int or ``[n]`` int64 labels in ``[0, K)``, or None (unconditional).
            guidance_scale: w; 1.0 means no guidance.
            negative_class: a class in ``[0, K)`` for the unconditional branch, or None.
            seed: seed of the initial noise and of the sampler's noise.
            eta: DDIM's eta (0: deterministic); ignored by ddpm.
            backend: backend of the fused step op (see :func:`genfast.ops.backends`).
            batch_size: images per UNet call (None: all n at once).
            use_ema: sample with the EMA weights (the trained weights otherwise).
            progress: show a tqdm progress bar over the steps.

        Returns:
            ``[n, C, H, W]`` float32 on the model's device, clamped to [-1, 1].

        Raises:
            ValueError / TypeError: an argument out of range or of the wrong type (the message
                names it), guidance or labels for an unconditional model.
        """
        check_int("n", n, lo=1)
        from genfast.samplers.factory import inference_steps

        check_choice("sampler", sampler, _SAMPLERS)
        steps = inference_steps(sampler, num_inference_steps, self.config["num_train_timesteps"])
        check_number("guidance_scale", guidance_scale, float32=False)
        dev = self.device
        cond = self._labels(class_labels, n, dev)
        neg = None
        if negative_class is not None:
            check_int("negative_class", negative_class)
            neg = self._labels(negative_class, n, dev, "negative_class")
        guided = (
            guidance_scale != 1.0 and self.num_classes is not None and (cond is not None or neg is not None)
        )
        if guidance_scale != 1.0 and not guided:
            raise ValueError(
                "guidance_scale != 1 needs a class-conditional model and class_labels or negative_class"
            )
        null = None
        if self.num_classes is not None:
            null = torch.full((n,), self.num_classes, dtype=torch.long, device=dev)
        if guided:
            cond = null if cond is None else cond
            uncond = null if neg is None else neg
        net = self.ema if use_ema else self.unet
        was_training = net.training
        net.eval()
        sched = self.make_scheduler(sampler, backend)
        sched.set_timesteps(steps, device=dev)
        bs = n if batch_size is None else check_int("batch_size", batch_size, lo=1)
        step_kwargs = {"eta": float(eta)} if sampler == "ddim" else {}
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn((n, *self.image_shape), generator=g).to(dev)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=len(sched.timesteps),
                desc=f"sample {sampler}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
            )
        devices = []
        if dev.type == "cuda":
            devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
        try:
            with torch.random.fork_rng(devices=devices):
                # with neither generator nor variance_noise the fused op draws its Philox seed
                # from the default generator: seeding it here makes the whole run repeatable
                torch.manual_seed(int(seed) + 1)
                for t in sched.timesteps:
                    outs = []
                    for i in range(0, n, bs):
                        xb = x[i : i + bs]
                        tb = t.reshape(1).expand(xb.shape[0]).to(dev)
                        if guided:
                            eps = net(
                                torch.cat([xb, xb]),
                                torch.cat([tb, tb]),
                                torch.cat([cond[i : i + bs], uncond[i : i + bs]]),
                            )
                            e_c, e_u = eps.chunk(2)
                            out = sched.step(
                                e_c,
                                t,
                                xb,
                                model_output_uncond=e_u,
                                guidance_scale=float(guidance_scale),
                                **step_kwargs,
                            ).prev_sample
                        else:
                            labels = cond[i : i + bs] if cond is not None else None
                            out = sched.step(net(xb, tb, labels), t, xb, **step_kwargs).prev_sample
                        outs.append(out)
                    x = torch.cat(outs) if len(outs) > 1 else outs[0]
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            net.train(was_training)
        return x.clamp_(-1.0, 1.0)

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Writes a checkpoint: ``config.json`` and ``model.safetensors`` (never a pickle).

        The safetensors file holds the trained weights (keys ``unet.*``) and the EMA weights
        (``ema.*``); the JSON holds the constructor arguments, the number of EMA updates, the
        training record and ``extra``.

        Args:
            directory: folder to write (created if needed; existing files are replaced).
            extra: JSON-serialisable information to keep (e.g. the data set used).

        Returns:
            The folder.
        """
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(d / WEIGHTS_NAME), metadata={"format": "pt", "model": "DDPM"})
        record = {
            "model": "DDPM",
            "format_version": _FORMAT_VERSION,
            "config": self.config,
            "ema_updates": self.ema_updates,
            "training": {k: v for k, v in self.training_info.items() if k != "losses"},
            "extra": extra or {},
        }
        (d / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> DDPM:
        """Reads a checkpoint written by :meth:`save` (JSON and safetensors only: no unpickling).

        Args:
            directory: the checkpoint folder.
            device: where to put the model (default CPU).

        Returns:
            The model in eval mode; its ``extra`` dict is in ``training_info["extra"]``.

        Raises:
            FileNotFoundError: the folder or one of its two files is missing (the message names it).
            ValueError: a file is corrupt, is not a DDPM checkpoint, or its tensors do not match
                the config (the message names the file).
        """

        from ._zoo_base import build_from_record, read_checkpoint

        cfg_path, w_path, record = read_checkpoint(directory)
        if record.get("model") != "DDPM":
            from genfast._checkpoint import describe

            found = describe(Path(directory))
            what = found[1] if found else f"model {record.get('model')!r}"
            raise ValueError(f"{cfg_path}: key 'model': holds {what}, not a DDPM checkpoint")
        model, record = build_from_record(cls, record, cfg_path, w_path)
        model.ema_updates = int(record.get("ema_updates", 0))
        return model.to(device) if device is not None else model


class _DDPMTask(Task):
    """The DDPM's step for the engine: ``L_simple`` on the batch with t, noise and label dropout
    drawn for the global batch, one AdamW step (clipped to norm 1 by the engine); the engine then
    updates the EMA weights."""

    name = "train ddpm"

    def __init__(self, model: DDPM, opt: torch.optim.Optimizer):
        super().__init__(model)
        self.opt = opt
        self._ema = _DDPMEMA(model)

    def optimizers(self):
        return {"unet": self.opt}

    def sync_modules(self):
        return []

    def training_step(self, batch, ctx):
        m = self.model
        x0 = batch.images.float()
        labels = batch.labels if m.num_classes is not None else None
        t = ctx.randint(m.config["num_train_timesteps"])
        noise = ctx.randn(*m.image_shape)
        drop = ctx.rand() < m.config["class_dropout"] if m.num_classes is not None else None
        loss = m.loss(x0, labels, timesteps=t, noise=noise, drop_mask=drop)
        ctx.update(loss, self.opt)
        return {"loss": loss.detach()}

    def ema(self):
        return self._ema


class _DDPMEMA(EMA):
    """The engine's EMA of ``unet`` into ``ema`` (the same rule as :meth:`DDPM.update_ema`), its
    update count kept in ``DDPM.ema_updates`` (saved with the model)."""

    def __init__(self, model: DDPM):
        self.model = model
        n = model.ema_updates
        super().__init__(model.unet, model.ema, model.config["ema_decay"])
        self.num_updates = n  # the base class starts the count at 0

    @property
    def num_updates(self) -> int:
        return self.model.ema_updates

    @num_updates.setter
    def num_updates(self, n: int) -> None:
        self.model.ema_updates = int(n)
