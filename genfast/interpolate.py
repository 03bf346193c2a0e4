"""Latent interpolation, latent traversals and a disentanglement measure.

- :func:`encode_latent` / :func:`decode_latent`: one latent per image for every family with an
  encoder or an invertible map: the flows (the list of latents of ``encode``; exact inverse),
  the VAE family (posterior mean), the deterministic autoencoders and WAE (the code), GLO (a
  code fitted to the image by gradient descent, the generator fixed: Bojanowski et al. 2018,
  sec. 3), and the DDPM through DDIM's deterministic inversion (the probability-flow ODE of
  eta = 0 run forwards from the image to ``x_T``; Song et al. 2021, sec. 4.3 and 5.4).
- :func:`interpolate`: decoded images along the straight line (``"linear"``) or the great
  circle (``"slerp"``, White 2016, "Sampling generative networks"; DDIM's choice for Gaussian
  latents) between two images' latents; :func:`save_strip` writes them as one PNG row.
- :func:`traverse`: one latent unit varied at a time around an image's code (Higgins et al.
  2017, fig. 1-2).
- :func:`mutual_information_gap`: MIG (Chen et al. 2018, "Isolating sources of
  disentanglement in VAEs", eq. 6) of latent codes against discrete factors; with
  :func:`latent_mig` against the measured thickness, slant and size terciles of
  :mod:`genfast.data.attributes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genfast._checks import check_image_batch as _check_images
from genfast._checks import check_int

__all__ = [
    "ddim_invert",
    "ddim_generate",
    "decode_latent",
    "encode_latent",
    "interpolate",
    "latent_mig",
    "load_image",
    "mutual_information_gap",
    "save_strip",
    "slerp",
    "traverse",
]


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- paths
def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two batches of vectors, row by row.

    ``sin((1 - t) theta) / sin(theta) z0 + sin(t theta) / sin(theta) z1`` with ``theta`` the
    angle between the flattened rows; falls back to the straight line when the rows are
    (nearly) parallel.

    Args:
        z0, z1: tensors of the same shape ``[N, ...]``.
        t: position in [0, 1] (0 gives ``z0``, 1 gives ``z1``).

    Returns:
        Tensor of the shape of ``z0``.

    Raises:
        ValueError: different shapes or ``t`` outside [0, 1].

    Source: White 2016, "Sampling generative networks", sec. 2.2 (Shoemake 1985).
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    a, b = z0.flatten(1).double(), z1.flatten(1).double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1, 1)).unsqueeze(1)
    s = torch.sin(theta)
    lin = (1 - t) * a + t * b
    sph = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / s.clamp_min(1e-12)
    out = torch.where(s > 1e-6, sph, lin)
    return out.to(z0.dtype).view_as(z0)


# ----------------------------------------------------------------------------- DDIM inversion
def _ddim_grid(model, num_steps: int) -> list[int]:
    T = model.config["num_train_timesteps"]
    check_int("num_steps", num_steps, lo=1)
    if num_steps > T:
        raise ValueError(f"num_steps must be <= num_train_timesteps = {T}, got {num_steps}")
    return sorted({round(i * (T - 1) / max(1, num_steps - 1)) for i in range(num_steps)})


@torch.no_grad()
def ddim_invert(model, images: torch.Tensor, num_steps: int = 50, use_ema: bool = True) -> torch.Tensor:
    """Deterministic DDIM inversion: the noise ``x_T`` from which DDIM (eta = 0) regenerates ``images``.

    On the grid ``t_0 = 0 < t_1 < ... < t_{S-1} = T - 1``, each step predicts
    ``eps = eps_theta(x_{t_i}, t_i)`` and ``x0 = (x_{t_i} - sqrt(1 - a_i) eps) / sqrt(a_i)`` and
    moves to ``x_{t_{i+1}} = sqrt(a_{i+1}) x0 + sqrt(1 - a_{i+1}) eps`` (``a = alphas_cumprod``),
    the Euler step of the probability-flow ODE run forwards; ``x_{t_0}`` is the image itself.

    Args:
        model: a :class:`genfast.models.DDPM` (unconditional; a conditional one uses its null label).
        images: ``[N, C, H, W]`` float in [-1, 1].
        num_steps: S, grid points in ``[2, T]``.
        use_ema: use the EMA weights.

    Returns:
        ``[N, C, H, W]`` float32 latents ``x_T`` on the model's device.

    Raises:
        TypeError / ValueError: not a DDPM, bad images or ``num_steps``.

    Source: Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 13 and sec. 5.4.
    """
    return _ddim_run(model, _check_images(images, "images"), num_steps, use_ema, invert=True)


@torch.no_grad()
def ddim_generate(model, latents: torch.Tensor, num_steps: int = 50, use_ema: bool = True) -> torch.Tensor:
    """DDIM (eta = 0) from latents ``x_T`` back to images, the inverse of :func:`ddim_invert`.

    Args:
        model: a :class:`genfast.models.DDPM`.
        latents: ``[N, C, H, W]`` float ``x_T``.
        num_steps: S, the grid of :func:`ddim_invert` (use the same S).
        use_ema: use the EMA weights.

    Returns:
        ``[N, C, H, W]`` float32 images (the x0 prediction at ``t_0 = 0``, not clipped).

    Raises:
        TypeError / ValueError: as :func:`ddim_invert`.

    Source: Song et al. 2021, eq. 12 with sigma = 0.
    """
    return _ddim_run(model, _check_images(latents, "latents"), num_steps, use_ema, invert=False)


def _ddim_run(model, x, num_steps, use_ema, invert: bool):
    from genfast.models import DDPM

    if not isinstance(model, DDPM):
        raise TypeError(f"model must be a genfast DDPM, got {type(model).__name__}")
    if tuple(x.shape[1:]) != model.image_shape:
        raise ValueError(f"images must be [N, {', '.join(map(str, model.image_shape))}], got {tuple(x.shape)}")
    check_int("num_steps", num_steps, lo=2)
    grid = _ddim_grid(model, num_steps)
    net = model.ema if use_ema else model.unet
    net.eval()
    dev = model.device
    a = model.alphas_cumprod.to(dev, torch.float64)
    x = x.to(dev, torch.float64)
    n = x.shape[0]
    null = torch.full((n,), model.num_classes, dtype=torch.long, device=dev) if model.num_classes else None

    def eps_at(h, t):
        return net(h.float(), torch.full((n,), t, dtype=torch.long, device=dev), null).double()

    order = list(zip(grid[:-1], grid[1:])) if invert else list(zip(grid[:0:-1], grid[-2::-1]))
    for t, t_next in order:
        eps = eps_at(x, t)
        x0 = (x - (1 - a[t]).sqrt() * eps) / a[t].sqrt()
        x = a[t_next].sqrt() * x0 + (1 - a[t_next]).sqrt() * eps
    if not invert:  # the image: the x0 prediction at t_0
        t0 = grid[0]
        x = (x - (1 - a[t0]).sqrt() * eps_at(x, t0)) / a[t0].sqrt()
    return x.float()


# ----------------------------------------------------------------------------- latents
def _glo_code(model, x: torch.Tensor, steps: int = 300, lr: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A GLO code per image: argmin_z ||G(z) - x||^2 over the unit ball, the generator fixed."""
    g = torch.Generator().manual_seed(seed)
    z = (model.codes.weight.mean(0, keepdim=True).detach().cpu()
         + 0.01 * torch.randn(x.shape[0], model.latent_dim, generator=g)).to(model.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    target = x.to(model.device, torch.float32)
    for _ in range(steps):
        loss = (model.generator(z) - target).pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=[z])
        opt.step()
        with torch.no_grad():
            z /= z.norm(dim=1, keepdim=True).clamp_min(1.0)
    return z.detach()


def encode_latent(model, images: torch.Tensor, ddim_steps: int = 50):
    """The latent of each image, for every family with an encoder or an invertible map.

    Args:
        model: a flow, a :class:`genfast.models.AE` subclass (VAE, beta-VAE, WAE, AE, DAE, CAE:
            the posterior mean or the code), :class:`~genfast.models.GLO` (a code fitted by
            gradient descent), or a :class:`~genfast.models.DDPM` (DDIM inversion).
        images: ``[N, C, H, W]`` float in [-1, 1].
        ddim_steps: DDIM grid size (DDPM only).

    Returns:
        A tensor ``[N, ...]`` (a list of tensors for the multi-scale flows, one per scale).

    Raises:
        TypeError: a model without an encoder or an invertible map (GANs, RBMs, VQ-VAE).
    """
    from genfast.models import AE, DDPM, GLO, FlowModel

    images = _check_images(images, "images")
    with torch.no_grad():
        if isinstance(model, FlowModel):
            model.eval()
            zs, _, _ = model.encode(images.to(_device(model), torch.float32))
            return [z.detach() for z in zs]
        if isinstance(model, AE):
            model.eval()
            return model.encode(images).detach()
        if isinstance(model, DDPM):
            return ddim_invert(model, images, ddim_steps)
    if isinstance(model, GLO):
        model.eval()
        return _glo_code(model, images)
    raise TypeError(f"{type(model).__name__} has no encoder or invertible map to interpolate in")


@torch.no_grad()
def decode_latent(model, latent, ddim_steps: int = 50) -> torch.Tensor:
    """Images from latents of :func:`encode_latent` (same model, same ``ddim_steps``).

    Args:
        model: as :func:`encode_latent`.
        latent: what :func:`encode_latent` returned (or a path point between two of them).
        ddim_steps: DDIM grid size (DDPM only).

    Returns:
        ``[N, C, H, W]`` float32 CPU images clamped to [-1, 1].

    Raises:
        TypeError: as :func:`encode_latent`.
    """
    from genfast.models import AE, DDPM, GLO, FlowModel

    if isinstance(model, FlowModel):
        x = model.decode(list(latent))
    elif isinstance(model, (AE, GLO)):
        x = model.decode(latent)
    elif isinstance(model, DDPM):
        x = ddim_generate(model, latent, ddim_steps)
    else:
        raise TypeError(f"{type(model).__name__} has no decoder to interpolate with")
    return x.float().cpu().clamp(-1, 1)


def interpolate(model, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8, method: str | None = None,
                ddim_steps: int = 50) -> torch.Tensor:
    """Decoded images along a path between the latents of two images.

    Args:
        model: as :func:`encode_latent`.
        x0, x1: ``[1, C, H, W]`` (or ``[C, H, W]``) float images in [-1, 1].
        steps: images on the path, endpoints included, >= 2.
        method: ``"linear"`` or ``"slerp"``; None: slerp for the flows and the DDPM (Gaussian
            latents of large norm, where the straight line's midpoints have atypically small
            norms), linear for the autoencoders and GLO.
        ddim_steps: DDIM grid size (DDPM only).

    Returns:
        ``[steps, C, H, W]`` float32 CPU images in [-1, 1]; the first and last are the model's
        reconstructions of ``x0`` and ``x1`` (exact inputs for the flows, up to float rounding).

    Raises:
        TypeError / ValueError: bad images, ``steps`` or ``method``; a model without a latent.
    """
    from genfast.models import DDPM, FlowModel

    x0 = _check_images(x0.unsqueeze(0) if isinstance(x0, torch.Tensor) and x0.dim() == 3 else x0, "x0")
    x1 = _check_images(x1.unsqueeze(0) if isinstance(x1, torch.Tensor) and x1.dim() == 3 else x1, "x1")
    if x0.shape[0] != 1 or x1.shape != x0.shape:
        raise ValueError(f"x0 and x1 must each be one image of the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    check_int("steps", steps, lo=2)
    if method is None:
        method = "slerp" if isinstance(model, (FlowModel, DDPM)) else "linear"
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    z = encode_latent(model, torch.cat([x0, x1]), ddim_steps)
    parts = z if isinstance(z, list) else [z]
    ts = [i / (steps - 1) for i in range(steps)]
    path = []
    for p in parts:
        a, b = p[:1], p[1:2]
        rows = [slerp(a, b, t) if method == "slerp" else torch.lerp(a, b, t) for t in ts]
        path.append(torch.cat(rows))
    return decode_latent(model, path if isinstance(z, list) else path[0], ddim_steps)


def save_strip(images: torch.Tensor, path, scale: int = 8) -> Path:
    """Writes images side by side as one PNG row.

    Args:
        images: ``[N, C, H, W]`` float in [-1, 1] (C 1 or 3).
        path: the PNG file.
        scale: nearest-neighbour upscaling (8x8 digits are 64 pixels wide at 8).

    Returns:
        The path written.
    """
    from genfast.data import save_image_grid

    images = _check_images(images, "images")
    return save_image_grid(images.float().cpu(), path, nrow=images.shape[0], scale=scale)


def load_image(spec: str, image_shape=(1, 8, 8)) -> torch.Tensor:
    """One image from a command-line spec: a PNG/JPEG file or ``digits:I`` (``test:I``,
    ``train:I``: image I of that split of the bundled digits; ``digits`` is the test split).

    Files are converted to grey (or RGB for 3 channels) and resized to ``H x W`` with a box
    filter; grey level ``v`` maps to ``v / 127.5 - 1`` (light ink on a dark page, as the digits).

    Args:
        spec: the file or the ``split:index`` spec.
        image_shape: ``(C, H, W)`` of the model.

    Returns:
        ``[1, C, H, W]`` float32 in [-1, 1].

    Raises:
        ValueError: a malformed spec or an index out of range.
        FileNotFoundError: the file does not exist.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    c, h, w = image_shape
    head, _, tail = spec.partition(":")
    if head in ("digits", "test", "train") and tail:
        from genfast.data import load_digits

        try:
            i = int(tail)
        except ValueError:
            raise ValueError(f"image spec {spec!r}: the index must be an int") from None
        images, _ = load_digits("train" if head == "train" else "test")
        if not 0 <= i < len(images):
            raise ValueError(f"image spec {spec!r}: index must be in [0, {len(images)})")
        if tuple(images.shape[1:]) != tuple(image_shape):
            raise ValueError(f"the digits are {tuple(images.shape[1:])}, the model takes {tuple(image_shape)}")
        return images[i:i + 1].clone()
    p = Path(spec)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {spec} (a PNG/JPEG file or digits:INDEX)")
    from PIL import Image

    im = Image.open(p).convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BOX)
    arr = torch.from_numpy(np.asarray(im, dtype=np.float32).copy())
    arr = arr.unsqueeze(0) if arr.dim() == 2 else arr.permute(2, 0, 1)
    return (arr / 127.5 - 1).unsqueeze(0)


# ----------------------------------------------------------------------------- traversal
@torch.no_grad()
def traverse(model, image: torch.Tensor, dims=None, values=(-3, -2, -1, 0, 1, 2, 3)) -> torch.Tensor:
    """Latent traversal: decode the code of ``image`` with one unit set to each of ``values``.

    Args:
        model: a :class:`genfast.models.AE` subclass (VAE, beta-VAE, WAE, AE).
        image: ``[1, C, H, W]`` float in [-1, 1].
        dims: latent units to vary (None: all).
        values: values given to the unit (posterior units of a VAE are about N(0, 1)).

    Returns:
        ``[len(dims) * len(values), C, H, W]`` float32 CPU images, one row of ``values`` per unit.

    Raises:
        TypeError / ValueError: a model without an encoder, bad image or dims.

    Source: Higgins et al. 2017, "beta-VAE", fig. 1-2.
    """
    from genfast.models import AE

    if not isinstance(model, AE):
        raise TypeError(f"model must be a genfast autoencoder (VAE, beta-VAE, WAE, AE), got {type(model).__name__}")
    image = _check_images(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"image must be one image [1, C, H, W], got {tuple(image.shape)}")
    dims = list(range(model.latent_dim)) if dims is None else [int(d) for d in dims]
    if not dims or any(d < 0 or d >= model.latent_dim for d in dims):
        raise ValueError(f"dims must be latent units in [0, {model.latent_dim}), got {dims}")
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values must not be empty")
    model.eval()
    z = model.encode(image)
    rows = []
    for d in dims:
        zz = z.repeat(len(values), 1)
        zz[:, d] = torch.tensor(values, device=zz.device)
        rows.append(model.decode(zz))
    return torch.cat(rows).float().cpu().clamp(-1, 1)


# ----------------------------------------------------------------------------- MIG
def _entropy(labels: np.ndarray) -> float:
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information_gap(codes, factors, bins: int = 20) -> dict:
    """Mutual information gap of latent codes against discrete factors.

    Each code unit is discretised into ``bins`` equal-width bins over its range; for factor k,
    ``I(z_j; v_k)`` is computed for every unit (scikit-learn's ``mutual_info_score``, nats) and
    the gap between the largest and the second largest, divided by ``H(v_k)``, is the factor's
    MIG; the result averages over factors.

    Args:
        codes: ``[N, J]`` float codes (J >= 2).
        factors: ``[N, K]`` int factor values (e.g. attribute terciles).
        bins: histogram bins per code unit, >= 2.

    Returns:
        ``{"mig": float, "per_factor": [K floats], "mi": [[K x J] nats], "best_unit": [K ints]}``;
        a factor with one value (zero entropy) gets a gap of 0.

    Raises:
        ValueError: shapes that do not fit, J < 2, bins < 2.

    Source: Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in VAEs",
    eq. 6; the discretised estimator of Locatello et al. 2019 (disentanglement_lib).
    """
    from sklearn.metrics import mutual_info_score

    z = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.float64)
    v = np.asarray(factors.detach().cpu() if isinstance(factors, torch.Tensor) else factors)
    if z.ndim != 2 or v.ndim != 2 or z.shape[0] != v.shape[0] or z.shape[0] < 2:
        raise ValueError(f"codes [N, J] and factors [N, K] must share N >= 2, got {z.shape} and {v.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"codes need at least 2 units for a gap, got {z.shape[1]}")
    check_int("bins", bins, lo=2)
    if not np.isfinite(z).all():
        raise ValueError("codes holds NaN or infinite values")
    disc = np.empty(z.shape, dtype=np.int64)
    for j in range(z.shape[1]):
        lo, hi = z[:, j].min(), z[:, j].max()
        edges = np.linspace(lo, hi, bins + 1)[1:-1]
        disc[:, j] = np.digitize(z[:, j], edges)
    mi = np.array([[mutual_info_score(v[:, k], disc[:, j]) for j in range(z.shape[1])] for k in range(v.shape[1])])
    gaps, best = [], []
    for k in range(v.shape[1]):
        h = _entropy(v[:, k])
        top = np.sort(mi[k])[::-1]
        gaps.append(float((top[0] - top[1]) / h) if h > 0 else 0.0)
        best.append(int(np.argmax(mi[k])))
    return {"mig": float(np.mean(gaps)), "per_factor": gaps, "mi": mi.tolist(), "best_unit": best}


@torch.no_grad()
def latent_mig(model, images: torch.Tensor, reference: torch.Tensor | None = None, bins: int = 20) -> dict:
    """MIG of a model's codes against the thickness, slant and size terciles of the digits.

    Args:
        model: a :class:`genfast.models.AE` subclass (VAE, beta-VAE: posterior means).
        images: ``[N, 1, H, W]`` float in [-1, 1], the images to encode (e.g. the test split).
        reference: images whose terciles define the factors (default ``images``; the train
            split in the README's table).
        bins: as :func:`mutual_information_gap`.

    Returns:
        :func:`mutual_information_gap`'s dict plus ``"factors": ATTRIBUTES``.

    Raises:
        TypeError / ValueError: as :func:`traverse` and :func:`mutual_information_gap`.
    """
    from genfast.data.attributes import ATTRIBUTES, attribute_terciles, digit_attributes, discretize_attributes
    from genfast.models import AE

    if not isinstance(model, AE):
        raise TypeError(f"model must be a genfast autoencoder (VAE, beta-VAE, ...), got {type(model).__name__}")
    images = _check_images(images, "images")
    terc = attribute_terciles(images if reference is None else reference)
    factors = discretize_attributes(digit_attributes(images), terc)
    model.eval()
    codes = torch.cat([model.encode(images[s:s + 1024]).float().cpu() for s in range(0, len(images), 1024)])
    out = mutual_information_gap(codes, factors, bins)
    out["factors"] = list(ATTRIBUTES)
    return out
