"""Sampling sharded over ranks, with the same images for any number of processes.

The N samples are cut into chunks of ``chunk_size`` consecutive global indices; chunk j is drawn
in one call with the seed ``seed * 2**32 + j`` and is assigned to rank ``j mod W``. A sample's
randomness is therefore a function of its global index alone (its chunk and its place in it),
never of the world size, so the gathered set is bit-identical for W = 1, 2, 3, ... (on one
device type; each chunk is computed with the same batch shape whatever W is). Rank 0 gathers the
chunks and writes, once, ``OUT/samples/000000.png ...`` and ``OUT/samples.npz`` (``images``
uint8 ``[N, H, W, C]``, ``indices`` int64 ``[N]``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import distributed as D

__all__ = ["chunk_seed", "family_sampler", "sample_sharded", "to_uint8"]


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk``: ``seed * 2**32 + chunk`` (distinct for seeds below 2^31)."""
    return (int(seed) << 32) + int(chunk)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[n, C, H, W]`` floats in [-1, 1] -> uint8 ``[n, H, W, C]`` (round half to even)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def family_sampler(model, **options) -> Callable[[int, int], torch.Tensor]:
    """``f(n, seed) -> [n, C, H, W]`` in [-1, 1] for any genfast generating model.

    Args:
        model: an autoencoder/GAN (``sample(n, generator)``), a DDPM (``sample(n, seed=...)``;
            ``options`` go to :meth:`genfast.models.DDPM.sample`), a flow (``temperature``
            option) or a Bernoulli RBM (``k`` Gibbs steps from noise, images ``(1, s, s)`` when V
            is a square ``s * s``), or a VQ-VAE with its prior (``prior`` option, a
            :class:`~genfast.models.CodePrior`; ``temperature``, ``top_k`` and ``grid`` options:
            code grids drawn from the prior with the seed, decoded by the VQ-VAE), or a latent
            diffusion model (``options`` go to :meth:`genfast.models.LatentDiffusion.sample`).
        **options: family options.

    Raises:
        TypeError: a model that cannot generate.
    """
    from genfast.models._zoo_base import ZooModel
    from genfast.models.ddpm import DDPM
    from genfast.models.flows import FlowModel
    from genfast.models.rbm import BernoulliRBM
    from genfast.models.vqvae import VQVAE

    if isinstance(model, VQVAE):
        return _vqvae_sampler(model, **options)
    from genfast.models.ldm import LatentDiffusion

    if isinstance(model, LatentDiffusion):  # the seed drives the initial noise and the sampler's
        return lambda n, seed: model.sample(n, seed=seed, **options)
    if isinstance(model, DDPM):
        return lambda n, seed: model.sample(n, seed=seed, **options)
    if isinstance(model, ZooModel):
        if not model.can_sample:
            raise TypeError(f"model: a {type(model).__name__} does not generate new images")
        return lambda n, seed: model.sample(n, generator=torch.Generator().manual_seed(seed))
    if isinstance(model, FlowModel):
        t = float(options.get("temperature", 1.0))

        def flow(n, seed):
            dev = next(model.parameters()).device
            return model.sample(n, temperature=t, generator=torch.Generator(device=dev).manual_seed(seed))

        return flow
    if isinstance(model, BernoulliRBM):
        k = int(options.get("k", 1000))
        side = int(round(model.n_visible ** 0.5))
        shape = (1, side, side) if side * side == model.n_visible else (1, 1, model.n_visible)

        def rbm(n, seed):
            saved = (model.seed, model.offset)
            model.seed, model.offset = int(seed) % (1 << 63), 0
            try:
                start = model._bernoulli(torch.full((n, model.n_visible), 0.5, device=model.weight.device,
                                                    dtype=model.weight.dtype))
                v = model.gibbs_full(start, k).v_prob
            finally:
                model.seed, model.offset = saved
            return (v.float() * 2 - 1).reshape(n, *shape)

        return rbm
    raise TypeError(f"model: cannot sample from a {type(model).__name__}")


def _code_grid(vq, prior) -> tuple[int, int]:
    """The code grid (h, w) the prior's sequences fold into: the prior's record (``extra["grid"]``),
    else the VQ-VAE's (``training_info["grid"]``), else a square."""
    import math

    n = prior.config["seq_len"]
    for info in (prior.training_info.get("extra", {}), vq.training_info):
        g = info.get("grid") if isinstance(info, dict) else None
        if isinstance(g, (list, tuple)) and len(g) == 2 and all(isinstance(v, int) for v in g) and g[0] * g[1] == n:
            return int(g[0]), int(g[1])
    s = math.isqrt(n)
    if s * s != n:
        raise ValueError(f"prior: {n} codes per sequence and no grid shape in its checkpoint")
    return s, s


def _vqvae_sampler(vq, prior=None, temperature: float = 1.0, top_k: int | None = None, grid=None):
    from genfast.models.vq_prior import CodePrior

    if not isinstance(prior, CodePrior):
        raise TypeError(f"prior: a VQVAE samples through its CodePrior, got {type(prior).__name__}")
    h, w = (int(g) for g in (grid if grid is not None else _code_grid(vq, prior)))

    @torch.no_grad()
    def sample(n, seed):
        codes = prior.sample(n, temperature=float(temperature), top_k=top_k, seed=seed)
        return vq.decode_indices(codes.reshape(n, h, w).to(vq.device))

    return sample


def sample_sharded(sample_fn: Callable[[int, int], torch.Tensor], num_samples: int, out_dir=None, *,
                   seed: int = 0, chunk_size: int = 64, overwrite: bool = False) -> np.ndarray | None:
    """Draw ``num_samples`` images split over the ranks of the process group (or alone).

    Args:
        sample_fn: ``f(n, seed) -> [n, C, H, W]`` floats in [-1, 1] (see :func:`family_sampler`).
        num_samples: N >= 1.
        out_dir: folder for ``samples/*.png`` and ``samples.npz`` (rank 0 writes; None: nothing).
        seed: the run's seed.
        chunk_size: samples per call; it must be the same for every world size to give the same
            images.
        overwrite: replace an existing ``samples`` output in ``out_dir``.

    Returns:
        On rank 0 the uint8 images ``[N, H, W, C]`` in global order; None on the other ranks.

    Raises:
        ValueError / TypeError: bad counts; ``out_dir`` holds samples and ``overwrite`` is False.
    """
    from genfast._checks import check_int

    n = check_int("num_samples", num_samples, lo=1)
    c = check_int("chunk_size", chunk_size, lo=1)
    d = D.info()
    out = None if out_dir is None else Path(out_dir)
    if out is not None and d.is_main:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")
        if (out / "samples.npz").exists() or (out / "samples").exists():
            if not overwrite:
                raise ValueError(f"--out {out} already holds samples: pass --overwrite to replace them")
            shutil.rmtree(out / "samples", ignore_errors=True)
            (out / "samples.npz").unlink(missing_ok=True)
    mine = {}
    for j in range(d.rank, (n + c - 1) // c, d.world_size):
        k = min(c, n - j * c)
        mine[j] = to_uint8(sample_fn(k, chunk_seed(seed, j)))
    if d.enabled:
        gathered = [None] * d.world_size
        torch.distributed.all_gather_object(gathered, mine)
        if not d.is_main:
            return None
        for part in gathered:
            mine.update(part)
    images = np.concatenate([mine[j] for j in sorted(mine)])
    if out is not None:
        from PIL import Image

        folder = out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i:06d}.png")
        np.savez(out / "samples.npz", images=images, indices=np.arange(n, dtype=np.int64))
    return images
