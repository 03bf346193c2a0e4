"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning"): a convolutional
encoder, a :class:`genfast.nn.VectorQuantizer` on its feature map (EMA codebook, k-means
initialisation, dead-code replacement) and a convolutional decoder. New images come from an
autoregressive prior over the grid of codes (:class:`genfast.models.CodePrior`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from genfast._checks import check_count
from genfast.nn.vq import VectorQuantizer
from genfast.training.engine import Task


class VQVAEOutput(NamedTuple):
    """Outputs of :meth:`VQVAE.forward`.

    Attributes:
        reconstruction: [B, C, H, W] decoder output (same dtype as the input).
        indices: int64 [B, h, w] grid of codes.
        loss: 0-dim, reconstruction MSE + the quantiser's loss (eq. (3) of the paper).
        reconstruction_loss: 0-dim MSE.
        vq_loss: 0-dim commitment (+ codebook, for a learned codebook) loss.
        perplexity: 0-dim codebook perplexity of this batch.
    """

    reconstruction: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    reconstruction_loss: torch.Tensor
    vq_loss: torch.Tensor
    perplexity: torch.Tensor


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.net(x)


class VQVAE(nn.Module):
    """Convolutional VQ-VAE (van den Oord et al. 2017, section 3 and 4.1).

    Encoder: 3x3 conv, ``num_downsamples`` stride-2 4x4 convs, residual blocks, 1x1 conv to
    ``embedding_dim``; decoder mirrors it with transposed convs. The grid of codes is
    ``H / 2^num_downsamples x W / 2^num_downsamples``.

    Args:
        in_channels: image channels C.
        hidden_channels: width of the conv stacks.
        embedding_dim: code dimension D.
        num_codes: codebook size K.
        num_downsamples: stride-2 stages (image sides must be divisible by 2^this).
        num_res_blocks: residual blocks in encoder and decoder.
        beta: commitment weight.
        ema / decay / dead_code_threshold / kmeans_init / use_cosine_sim: of the quantiser
            (:class:`genfast.nn.VectorQuantizer`).
        backend: backend of the VQ op.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden_channels: int = 64,
        embedding_dim: int = 16,
        num_codes: int = 64,
        num_downsamples: int = 1,
        num_res_blocks: int = 1,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.95,
        dead_code_threshold: float = 0.05,
        kmeans_init: bool = True,
        use_cosine_sim: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        check_count("in_channels", in_channels, op="VQVAE")
        check_count("hidden_channels", hidden_channels, op="VQVAE")
        check_count("embedding_dim", embedding_dim, op="VQVAE")
        check_count("num_codes", num_codes, op="VQVAE")
        check_count("num_downsamples", num_downsamples, op="VQVAE", lo=0)
        check_count("num_res_blocks", num_res_blocks, op="VQVAE", lo=0)
        # the quantizer's options, saved in the config as given to VectorQuantizer
        quantizer = dict(beta=float(beta), ema=bool(ema), decay=float(decay),
                         dead_code_threshold=float(dead_code_threshold), kmeans_init=bool(kmeans_init),
                         use_cosine_sim=bool(use_cosine_sim))
        self.config = dict(in_channels=in_channels, hidden_channels=hidden_channels, embedding_dim=embedding_dim,
                           num_codes=num_codes, num_downsamples=num_downsamples, num_res_blocks=num_res_blocks,
                           **quantizer)
        h = hidden_channels
        enc = [nn.Conv2d(in_channels, h, 3, padding=1)]
        for _ in range(num_downsamples):
            enc += [nn.ReLU(), nn.Conv2d(h, h, 4, stride=2, padding=1)]
        enc += [_ResBlock(h) for _ in range(num_res_blocks)]
        enc += [nn.ReLU(), nn.Conv2d(h, embedding_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(embedding_dim, h, 3, padding=1)]
        dec += [_ResBlock(h) for _ in range(num_res_blocks)]
        for _ in range(num_downsamples):
            dec += [nn.ReLU(), nn.ConvTranspose2d(h, h, 4, stride=2, padding=1)]
        dec += [nn.ReLU(), nn.Conv2d(h, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = VectorQuantizer(num_codes, embedding_dim, **quantizer, accept_image_fmap=True,
                                         backend=backend)
        self.training_info: dict = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_codes(self) -> int:
        return self.config["num_codes"]

    def grid_shape(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the code grid for images of (H, W)."""
        f = 2 ** self.config["num_downsamples"]
        return image_hw[0] // f, image_hw[1] // f

    def _check(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.config["in_channels"]:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"VQVAE: x must be [B, {self.config['in_channels']}, H, W], got {shape}")
        f = 2 ** self.config["num_downsamples"]
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"VQVAE: image sides must be divisible by {f}, got {tuple(x.shape[2:])}")

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Encode, quantise, decode.

        Args:
            x: [B, C, H, W] float images (the digits are in [-1, 1]).

        Returns:
            :class:`VQVAEOutput`.

        Raises:
            ValueError: wrong shape.
        """
        self._check(x)
        q = self.quantizer(self.encoder(x))
        recon = self.decoder(q.quantized)
        rec = F.mse_loss(recon, x)
        return VQVAEOutput(recon, q.indices, rec + q.loss, rec, q.loss, q.perplexity)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """int64 [B, h, w] codes of images x [B, C, H, W] (eval mode: no codebook update)."""
        self._check(x)
        was = self.training
        self.eval()
        try:
            return self.quantizer(self.encoder(x)).indices
        finally:
            self.train(was)

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] of a code grid int64 [B, h, w], clamped to [-1, 1]."""
        return self.decoder(self.quantizer.decode_indices(indices)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)), clamped to [-1, 1]."""
        return self.decode_indices(self.encode(x))

    def fit(
        self,
        images: torch.Tensor,
        *,
        steps: int | None = 2000,
        time_budget_s: float | None = None,
        batch_size: int = 128,
        lr: float = 2e-3,
        seed: int = 0,
        progress: bool = False,
        log_every: int = 0,
        **engine,
    ) -> dict:
        """Train with Adam on ``images`` [N, C, H, W] (a tensor, ``Dataset`` or ``DataLoader``)
        for ``steps`` or until ``time_budget_s``, through :class:`genfast.training.Trainer`
        (``**engine``: its further options, e.g. ``out_dir``, ``save_every``, ``resume``).
        ``log_every`` > 0 prints the losses every that many steps.

        Returns:
            dict with ``steps``, ``seconds``, ``loss``, ``reconstruction_loss``, ``perplexity``
            (means over the last 50 steps).

        Raises:
            ValueError: no images, or neither steps nor a time budget.
        """
        if isinstance(images, torch.Tensor):
            self._check(images)
            if images.shape[0] == 0:
                raise ValueError("VQVAE.fit: images is empty")
        if steps is None and time_budget_s is None:
            raise ValueError("VQVAE.fit: give steps or time_budget_s")
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.training_info = _engine_fit(self, _VQVAETask(self, opt), images, steps=steps,
                                         time_budget_s=time_budget_s, batch_size=batch_size, seed=seed,
                                         progress=progress, log_every=log_every, **engine)
        return dict(self.training_info)

    def save(self, path, extra: dict | None = None) -> Path:
        """Write ``path/config.json`` + ``path/model.safetensors``: the one checkpoint layout,
        the same as ``genfast.training.save_pretrained(self, path, extra)``.

        Args:
            path: folder to write (created).
            extra: JSON-serialisable information, returned by :meth:`load` in
                ``training_info["extra"]``.

        Returns:
            The folder.
        """
        from genfast.training.checkpoint import save_pretrained

        return save_pretrained(self, path, extra=extra)

    @classmethod
    def load(cls, path, device="cpu") -> VQVAE:
        """The VQ-VAE of a checkpoint folder written by :meth:`save`, ``genfast train vqvae`` or
        ``save_pretrained`` (``genfast.training.from_pretrained(path, device, expect=VQVAE)``).

        Raises:
            FileNotFoundError: no folder or no checkpoint file at ``path``.
            ValueError: a corrupt checkpoint, another model's, or one in the old
                ``vqvae.json`` layout (the message says how to convert it).
        """
        from genfast.training.checkpoint import from_pretrained

        return from_pretrained(path, device=device, expect=cls)


class _VQVAETask(Task):
    """Reconstruction MSE + the quantiser's loss, one Adam step (the EMA codebook updates itself
    in the forward pass)."""

    name = "vqvae"

    def __init__(self, model, opt):
        super().__init__(model)
        self.opt = opt

    def optimizers(self):
        return {"adam": self.opt}

    def training_step(self, batch, ctx):
        out = self.model(batch.images.float())
        ctx.update(out.loss, self.opt)
        return {"loss": out.loss.detach(), "reconstruction_loss": out.reconstruction_loss.detach(),
                "perplexity": out.perplexity.detach()}


def _engine_fit(model, task, data, *, steps, time_budget_s, batch_size, seed, progress, log_every=0,
                tail: int = 50, **engine) -> dict:
    """Run ``task`` in the engine; returns ``steps``, ``seconds`` and the mean of each loss over
    the last ``tail`` steps (NaN when no step ran), as VQVAE.fit and CodePrior.fit document."""
    from genfast.training import Trainer

    cb = engine.pop("callback", None)

    def callback(step, out):
        if log_every and step % log_every == 0:
            print(f"{task.name} step {step}: " + " ".join(f"{k} {float(v):.4g}" for k, v in out.items()), flush=True)
        if cb is not None:
            cb(step, out)

    out = Trainer(task, steps=steps, time_budget_s=time_budget_s, batch_size=batch_size, seed=seed,
                  progress=progress, callback=callback, **engine).fit(data)
    hist = out["history"][-tail:]
    info = {"steps": out["steps"], "seconds": out["seconds"]}
    keys = hist[0].keys() if hist else ["loss"]
    for k in keys:
        info[k] = sum(h[k] for h in hist) / len(hist) if hist else math.nan
    return info


__all__ = ["VQVAE", "VQVAEOutput"]
