"""Image restoration on the digits: denoising, inpainting, x2 super-resolution and deblurring.

Two kinds of restorers:

- **Trained on the corruption**: :class:`RedNet`, a convolutional encoder-decoder with
  symmetric skip connections (Mao, Shen & Yang 2016, "Image restoration using very deep
  convolutional encoder-decoder networks with symmetric skip connections", RED-Net), and the
  same network without the skips (``skips=False``), trained by :func:`fit_restorer` on pairs
  (corrupted, clean) drawn fresh every step.
- **A trained DDPM as the prior**, no training on the corruption (:func:`ddpm_restore`):
  inpainting by RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using denoising diffusion
  probabilistic models", Algorithm 1: at every reverse step the known pixels are replaced by
  the forward-noised observation, with ``resample`` jumps back); super-resolution and
  deblurring by the null-space data-consistency projection of DDNM (Wang, Yu & Zhang 2023,
  "Zero-shot image restoration using denoising diffusion null-space model", eq. 11-13: the
  x0 prediction is replaced by ``A^+ y + (I - A^+ A) x0`` before each step; the blur's
  pseudo-inverse truncates singular values below ``rcond``, DDNM's "+" variant for
  ill-conditioned A); denoising by starting the reverse chain at the timestep whose noise level
  matches the corruption (``sqrt((1 - abar_t) / abar_t) = sigma``, the observation scaled by
  ``sqrt(abar_t)``; the A = I case of DDRM, Kawar et al. 2022).

The corruptions (:func:`degrade`) act on the ink ``u = x + 1`` (0 on the empty page), where each
is linear, ``v = A u``: additive noise (A = I, std ``sigma``), a missing square (the pixels are
shown as mid grey 0 to the networks), 2x2 average pooling to 4x4 (shown upsampled by nearest
neighbour), and a 3x3 Gaussian blur (std 0.8 pixels, zero ink outside the image).

Figures (:func:`psnr`, :func:`ssim`, and the digit classifier's accuracy on the restored
images) are computed against the clean test digits; :func:`restoration_table` gathers them.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_choice, check_count, check_int
from genfast._checks import check_image_batch as _check_images

__all__ = [
    "TASKS",
    "RedNet",
    "ddpm_restore",
    "degrade",
    "fit_restorer",
    "format_restoration_table",
    "operator_matrix",
    "psnr",
    "restoration_table",
    "ssim",
]

#: the restoration tasks
TASKS = ("denoise", "inpaint", "superres", "deblur")
_NOISE_STD = 0.4  # data units ([-1, 1]): visibly noisy digits that stay readable
_HOLE = 4  # side of the missing square (half the 8x8 digit)
_BLUR_SIGMA = 0.8


def _blur_kernel() -> torch.Tensor:
    r = torch.arange(-1, 2, dtype=torch.float32)
    g = torch.exp(-r**2 / (2 * _BLUR_SIGMA**2))
    k = torch.outer(g, g)
    return (k / k.sum()).view(1, 1, 3, 3)


def _apply(task: str, u: torch.Tensor) -> torch.Tensor:
    """The linear operator A of ``task`` on ink images ``u`` [N, C, H, W] (the mask excluded)."""
    if task == "superres":
        return F.avg_pool2d(u, 2)
    if task == "deblur":
        c = u.shape[1]
        return F.conv2d(u, _blur_kernel().to(u).expand(c, 1, 3, 3), padding=1, groups=c)
    return u


def degrade(images: torch.Tensor, task: str, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Corrupts clean digits for ``task`` (the rules of the module docstring).

    Args:
        images: ``[N, C, H, W]`` float in [-1, 1], H and W even for ``"superres"``.
        task: one of :data:`TASKS`.
        seed: seed of the noise and of the hole positions (a CPU generator).

    Returns:
        ``(shown, info)``: ``shown`` ``[N, C, H, W]`` float32 CPU, what a restorer gets and the
        "corrupted input" baseline (noisy image; image with the hole at 0; the 4x4 image
        upsampled by nearest neighbour; the blurred image), clamped to [-1, 1]; ``info`` the
        observation for the DDPM prior: ``{"y": A u (+ noise), "mask": [N, C, H, W] 1 = known
        (inpaint only), "sigma": noise std (denoise only)}``.

    Raises:
        ValueError / TypeError: bad images or task, odd sides for super-resolution.
    """
    x = _check_images(images).float().cpu().clamp(-1, 1)
    check_choice("task", task, TASKS)
    g = torch.Generator().manual_seed(int(seed))
    n, c, h, w = x.shape
    u = x + 1
    if task == "denoise":
        y = x + _NOISE_STD * torch.randn(x.shape, generator=g)
        return y.clamp(-1, 1), {"y": y + 1, "sigma": _NOISE_STD}
    if task == "inpaint":
        mask = torch.ones_like(x)
        ys = torch.randint(0, h - _HOLE + 1, (n,), generator=g).tolist()
        xs = torch.randint(0, w - _HOLE + 1, (n,), generator=g).tolist()
        for i, (y0, x0) in enumerate(zip(ys, xs)):
            mask[i, :, y0:y0 + _HOLE, x0:x0 + _HOLE] = 0
        return x * mask, {"y": u * mask, "mask": mask}
    if task == "superres":
        if h % 2 or w % 2:
            raise ValueError(f"images must have even sides for superres, got {h}x{w}")
        v = _apply(task, u)
        return (F.interpolate(v, scale_factor=2, mode="nearest") - 1).clamp(-1, 1), {"y": v}
    v = _apply(task, u)
    return (v - 1).clamp(-1, 1), {"y": v}


def operator_matrix(task: str, image_shape=(1, 8, 8)) -> torch.Tensor:
    """The matrix of the corruption's linear operator A on flattened ink images.

    Args:
        task: ``"superres"``, ``"deblur"`` or ``"denoise"`` (the identity).
        image_shape: ``(C, H, W)``.

    Returns:
        ``[M, C*H*W]`` float64 (M = C*H*W/4 for super-resolution, C*H*W otherwise).

    Raises:
        ValueError: ``"inpaint"`` (a per-image mask, not one matrix) or an unknown task.
    """
    check_choice("task", task, TASKS)
    if task == "inpaint":
        raise ValueError("task 'inpaint' has a per-image mask, not one operator matrix")
    d = math.prod(image_shape)
    basis = torch.eye(d, dtype=torch.float64).view(d, *image_shape)
    return _apply(task, basis).reshape(d, -1).T.contiguous()


# ----------------------------------------------------------------------------- metrics
def psnr(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(range^2 / MSE)`` with range 2 ([-1, 1]).

    Args:
        restored, clean: ``[N, C, H, W]`` float in [-1, 1] (restored is clamped first).

    Returns:
        ``[N]`` float32 dB (capped at 100 dB for identical images).

    Raises:
        ValueError: shapes differ.
    """
    if restored.shape != clean.shape:
        raise ValueError(f"restored and clean must have the same shape, got {tuple(restored.shape)} and "
                         f"{tuple(clean.shape)}")
    mse = (restored.float().cpu().clamp(-1, 1) - clean.float().cpu()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(4.0 / mse.clamp_min(4e-10))).float()


def ssim(restored: torch.Tensor, clean: torch.Tensor, window: int = 3, sigma: float = 1.0, gaussian: bool = True,
         padding: str = "valid") -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13), mean over valid windows.

    A Gaussian window of side ``window`` (3 by default: the 8x8 digits leave a 6x6 map; the
    paper's 11x11 window is larger than the image), constants ``C1 = (0.01 L)^2`` and
    ``C2 = (0.03 L)^2`` with ``L = 2`` the data range, channels averaged.

    Args:
        restored, clean: ``[N, C, H, W]`` float in [-1, 1] (restored is clamped first).
        window: odd window side, <= min(H, W).
        sigma: the window's standard deviation (pixels), > 0.
        gaussian: Gaussian window (else uniform).
        padding: ``"valid"`` (windows inside the image only) or ``"reflect"`` (the image is
            reflected by ``window // 2`` pixels, one window per pixel: torchmetrics'
            ``structural_similarity_index_measure`` with ``gaussian_kernel=False``).

    Returns:
        ``[N]`` float32 in [-1, 1] (1 for identical images).

    Raises:
        ValueError: different shapes, an even or too large window, sigma <= 0, unknown padding.

    Source: Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error
    visibility to structural similarity", eq. 13 and sec. III-C (Gaussian weighting).
    """
    if restored.shape != clean.shape:
        raise ValueError(f"restored and clean must have the same shape, got {tuple(restored.shape)} and "
                         f"{tuple(clean.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0 \
            or window > min(clean.shape[-2:]):
        raise ValueError(f"window must be an odd int <= min(H, W), got {window!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if padding not in ("valid", "reflect"):
        raise ValueError(f"padding must be 'valid' or 'reflect', got {padding!r}")
    x = restored.double().cpu().clamp(-1, 1)
    y = clean.double().cpu()
    if padding == "reflect":
        p = window // 2
        x, y = F.pad(x, (p, p, p, p), mode="reflect"), F.pad(y, (p, p, p, p), mode="reflect")
    c = x.shape[1]
    r = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-r**2 / (2 * sigma**2)) if gaussian else torch.ones(window, dtype=torch.float64)
    k = torch.outer(g, g)
    k = (k / k.sum()).expand(c, 1, window, window)

    def blur(t):
        return F.conv2d(t, k, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).float()


# ----------------------------------------------------------------------------- RED-Net
class RedNet(nn.Module):
    """RED-Net: ``depth`` convolutions then ``depth`` transposed convolutions (3x3, stride 1,
    ``channels`` wide, ReLU), with symmetric skips.

    With ``skips=True`` the feature map after every second convolution is added to the input of
    its mirror transposed convolution (then ReLU), and the input image is added to the output
    (the outermost skip), as in Mao et al. 2016, fig. 1 and sec. 2.2 (skip step 2). With
    ``skips=False`` it is the plain encoder-decoder of the same size.

    Args:
        in_channels: image channels C.
        channels: feature width, >= 1.
        depth: convolutions (and transposed convolutions), >= 2.
        skips: whether the symmetric skip connections are present.

    ``forward(x)``: ``[B, C, H, W]`` corrupted images -> ``[B, C, H, W]`` restored (not clamped).

    Raises:
        ValueError / TypeError: a size < its minimum.

    Source: Mao, Shen & Yang 2016 (NeurIPS), "Image Restoration Using Very Deep Convolutional
    Encoder-Decoder Networks with Symmetric Skip Connections".
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, depth: int = 4, skips: bool = True):
        super().__init__()
        for name, v, lo in (("in_channels", in_channels, 1), ("channels", channels, 1), ("depth", depth, 2)):
            check_int(name, v, lo=lo)
        self.skips = bool(skips)
        self.depth = depth
        self.convs = nn.ModuleList(
            [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(depth)])
        self.deconvs = nn.ModuleList(
            [nn.ConvTranspose2d(channels, in_channels if i == depth - 1 else channels, 3, padding=1)
             for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restores ``x`` ``[B, C, H, W]``; returns ``[B, C, H, W]``."""
        h = x
        saved = []
        for conv in self.convs:
            h = F.relu(conv(h))
            saved.append(h)
        for i, deconv in enumerate(self.deconvs):
            mirror = self.depth - 1 - i  # the convolution whose output this layer's input mirrors
            if self.skips and i > 0 and mirror % 2 == 1:
                h = F.relu(h + saved[mirror])
            h = deconv(h)
            if i < self.depth - 1:
                h = F.relu(h)
        return h + x if self.skips else h


def fit_restorer(net: nn.Module, images: torch.Tensor, task: str, steps: int = 1000, batch_size: int = 64,
                 lr: float = 1e-3, seed: int = 0) -> dict:
    """Trains a restorer on (corrupted, clean) pairs with the mean squared error (Adam).

    Every step draws a batch of clean images and corrupts it afresh (:func:`degrade`, new noise
    and hole positions each step).

    Args:
        net: maps corrupted ``[B, C, H, W]`` to restored images (e.g. :class:`RedNet`).
        images: ``[N, C, H, W]`` clean training images in [-1, 1].
        task: one of :data:`TASKS`.
        steps: Adam steps, >= 1.
        batch_size: images per step, >= 1.
        lr: learning rate, > 0.
        seed: seed of the batches and corruptions.

    Returns:
        ``{"steps", "seconds", "loss"}`` (mean over the last 50 steps).

    Raises:
        ValueError / TypeError: bad images, task, steps, batch size or lr.
    """
    images = _check_images(images).float().cpu()
    check_choice("task", task, TASKS)
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        check_count(name, v, lo=1)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    dev = next(net.parameters()).device
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    net.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, images.shape[0], (min(batch_size, images.shape[0]),), generator=g)
        clean = images[idx]
        shown, _ = degrade(clean, task, seed=int(seed) * 1_000_003 + step)
        loss = F.mse_loss(net(shown.to(dev)), clean.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    tail = losses[-50:]
    return {"steps": steps, "seconds": time.perf_counter() - t0, "loss": sum(tail) / len(tail)}


# ----------------------------------------------------------------------------- DDPM prior
def _grid(model, num_steps: int) -> list[int]:
    T = model.config["num_train_timesteps"]
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 2 <= num_steps <= T:
        raise ValueError(f"num_steps must be an int in [2, {T}], got {num_steps!r}")
    return sorted({round(i * (T - 1) / (num_steps - 1)) for i in range(num_steps)})


@torch.no_grad()
def ddpm_restore(model, shown: torch.Tensor, info: dict, task: str, num_steps: int = 100, resample: int = 2,
                 rcond: float = 0.1, seed: int = 0, batch_size: int = 512, clip: bool = True,
                 num_samples: int = 1) -> torch.Tensor:
    """Restores corrupted images with a trained DDPM as the prior (no training on the task).

    Ancestral sampling on a respaced grid of ``num_steps`` timesteps (the DDPM posterior
    ``q(x_{t'} | x_t, x0)`` between grid points, Nichol & Dhariwal 2021 sec. 4), the x0
    prediction clipped to [-1, 1], with the task's data consistency (module docstring):
    RePaint for ``"inpaint"`` (``resample`` jumps per step, Lugmayr et al. 2022, Alg. 1),
    DDNM's projection ``x0 <- A^+ y + (I - A^+ A) x0`` for ``"superres"`` and ``"deblur"``
    (Wang et al. 2023, eq. 13), and a chain started at the noise level of the observation for
    ``"denoise"``.

    Args:
        model: a trained :class:`genfast.models.DDPM` (EMA weights are used).
        shown: ``[N, C, H, W]`` the first output of :func:`degrade` (used by ``"denoise"``).
        info: the second output of :func:`degrade` (the observation).
        task: one of :data:`TASKS`.
        num_steps: respaced grid size, in ``[2, T]``.
        resample: RePaint's jumps per step (inpainting), >= 1 (1: no resampling).
        rcond: relative cut-off of the pseudo-inverse's singular values (deblurring).
        seed: seed of the sampling noise.
        batch_size: images per UNet call.
        clip: clamp the result to [-1, 1] (False keeps the last projection exact: ``A`` of the
            result equals the observation for super-resolution).
        num_samples: independent restorations (seeds ``seed``, ``seed + 1``, ...) averaged, >= 1:
            a Monte Carlo estimate of the posterior mean, the minimiser of the expected squared
            error. One sample is a plausible digit that may differ from the truth where the
            observation is ambiguous (x2 super-resolution: 0.66 classifier accuracy for one
            sample against 0.79 for the mean of 4, on 120 test digits).

    Returns:
        ``[N, C, H, W]`` float32 CPU restored images (in [-1, 1] with ``clip``).

    Raises:
        TypeError / ValueError: not a DDPM, bad task, images or settings.
    """
    from genfast.models import DDPM

    if not isinstance(model, DDPM):
        raise TypeError(f"model must be a genfast DDPM, got {type(model).__name__}")
    check_count("num_samples", num_samples, lo=1)
    if num_samples > 1:
        outs = [ddpm_restore(model, shown, info, task, num_steps, resample, rcond, int(seed) + k, batch_size,
                             clip=False) for k in range(num_samples)]
        mean = torch.stack(outs).mean(0)
        return mean.clamp(-1, 1) if clip else mean
    check_choice("task", task, TASKS)
    shown = _check_images(shown, "shown").float().cpu()
    if not isinstance(info, dict) or "y" not in info:
        raise ValueError("info must be the dict returned by degrade (with 'y')")
    check_count("resample", resample, lo=1)
    grid = _grid(model, num_steps)
    net = model.ema.eval()
    dev = model.device
    ab = model.alphas_cumprod.double().cpu()
    g = torch.Generator().manual_seed(int(seed))
    shape = shown.shape
    d = math.prod(shape[1:])
    proj = None
    if task in ("superres", "deblur"):
        a_mat = operator_matrix(task, tuple(shape[1:]))
        a_pinv = torch.linalg.pinv(a_mat, rtol=rcond if task == "deblur" else 1e-10)
        y = info["y"].double().flatten(1)
        fixed = y @ a_pinv.T  # A^+ y  [N, D]
        null = torch.eye(d, dtype=torch.float64) - a_pinv @ a_mat  # I - A^+ A

        def proj(x0):  # x0 in data units; the projection acts on ink u = x0 + 1
            u = (x0 + 1).flatten(1)
            return (fixed + u @ null.T).view(shape) - 1

    start = len(grid) - 1
    if task == "denoise":
        sigma = float(info["sigma"])
        target = 1.0 / (1.0 + sigma**2)  # abar with sqrt((1 - abar) / abar) = sigma
        start = min(range(len(grid)), key=lambda i: abs(float(ab[grid[i]]) - target))
        x = ab[grid[start]].sqrt() * (info["y"].double() - 1)
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64)
    known = None
    if task == "inpaint":
        known = info["y"].double() - 1  # the clean pixels where mask = 1
        mask = info["mask"].double()

    def eps_of(h, t):
        outs = []
        for s in range(0, h.shape[0], batch_size):
            hb = h[s:s + batch_size].float().to(dev)
            tb = torch.full((hb.shape[0],), t, dtype=torch.long, device=dev)
            lab = torch.full((hb.shape[0],), model.num_classes, dtype=torch.long, device=dev) \
                if model.num_classes else None
            outs.append(net(hb, tb, lab).double().cpu())
        return torch.cat(outs)

    for i in range(start, 0, -1):
        t, tp = grid[i], grid[i - 1]
        a_t, a_p = ab[t], ab[tp]
        for r in range(resample if task == "inpaint" else 1):
            eps = eps_of(x, t)
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
            if proj is not None:
                x0 = proj(x0).clamp(-1, 1)
            beta = 1 - a_t / a_p
            mean = a_p.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_p) / (1 - a_t) * x
            var = beta * (1 - a_p) / (1 - a_t)
            x_prev = mean + var.sqrt() * torch.randn(shape, generator=g, dtype=torch.float64)
            if known is not None:
                noisy_known = a_p.sqrt() * known + (1 - a_p).sqrt() * torch.randn(shape, generator=g,
                                                                                  dtype=torch.float64)
                x_prev = mask * noisy_known + (1 - mask) * x_prev
            if known is not None and r < resample - 1:  # jump back: x_t ~ q(x_t | x_prev)
                x = (a_t / a_p).sqrt() * x_prev + beta.sqrt() * torch.randn(shape, generator=g, dtype=torch.float64)
            else:
                x = x_prev
    # the final x0 prediction at t_0, with the data consistency once more
    t0 = grid[0]
    x0 = ((x - (1 - ab[t0]).sqrt() * eps_of(x, t0)) / ab[t0].sqrt()).clamp(-1, 1)
    if proj is not None:
        x0 = proj(x0)
    if known is not None:
        x0 = mask * known + (1 - mask) * x0
    return x0.float().clamp(-1, 1) if clip else x0.float()


# ----------------------------------------------------------------------------- the table
def restoration_table(tasks=TASKS, steps: int = 1500, ddpm=None, ddpm_steps: int = 1500, ddpm_grid: int = 100,
                      n_test: int | None = None, seed: int = 0, device="cpu", log=None,
                      ddpm_samples: int = 4) -> list[dict]:
    """PSNR, SSIM and digit-classifier accuracy of every restorer on every task (test split).

    Methods per task: the corrupted input itself, the plain encoder-decoder (``RedNet(skips=
    False)``), RED-Net (``skips=True``), both ``channels=32, depth=4`` trained ``steps`` Adam
    steps on the train split, and the DDPM prior (:func:`ddpm_restore`).

    Args:
        tasks: subset of :data:`TASKS`.
        steps: training steps of each network, >= 1.
        ddpm: a trained :class:`genfast.models.DDPM`, None to train one (width 16, multipliers
            (1, 2), ``ddpm_steps`` steps of batch 128), or False to skip the DDPM rows.
        ddpm_steps: training steps when ``ddpm`` is None.
        ddpm_grid: respaced grid of :func:`ddpm_restore`.
        ddpm_samples: restorations averaged per image by the DDPM prior (``num_samples``).
        n_test: restore only the first n test images (None: all 360).
        seed: seed of training and corruptions.
        device: where to train and run.
        log: optional ``log(str)``.

    Returns:
        One dict per (task, method): ``task``, ``method``, ``psnr`` (mean dB), ``ssim`` (mean),
        ``accuracy`` (classifier on restored images), ``seconds`` (training + restoring).

    Raises:
        ValueError: an unknown task.
    """
    from genfast.data import load_digits
    from genfast.metrics import DigitMetric

    tasks = [check_choice("task", t, TASKS) for t in tasks]
    xtr, _ = load_digits("train")
    xte, yte = load_digits("test")
    if n_test is not None:
        xte, yte = xte[:n_test], yte[:n_test]
    metric = DigitMetric.from_data(device=device)
    say = log or (lambda m: None)

    def figures(task, method, restored, seconds):
        acc = float((metric.predict(restored.to(metric.device)).cpu() == yte).float().mean())
        row = {"task": task, "method": method, "psnr": float(psnr(restored, xte).mean()),
               "ssim": float(ssim(restored, xte).mean()), "accuracy": acc, "seconds": seconds}
        say(f"{task:8s} {method:22s} PSNR {row['psnr']:6.2f} SSIM {row['ssim']:.3f} acc {acc:.3f} "
            f"({seconds:.0f} s)")
        return row

    if ddpm is None:
        from genfast.models import DDPM

        t0 = time.perf_counter()
        torch.manual_seed(seed)
        ddpm = DDPM(image_size=8, base_channels=16, channel_mult=(1, 2)).to(device)
        ddpm.fit(xtr, steps=ddpm_steps, batch_size=128, seed=seed, progress=False)
        ddpm.eval()
        say(f"trained the DDPM prior: {ddpm_steps} steps in {time.perf_counter() - t0:.0f} s")
    rows = [figures("clean", "(clean test digits)", xte, 0.0)]
    for task in tasks:
        shown, info = degrade(xte, task, seed=seed + 12345)
        rows.append(figures(task, "corrupted input", shown, 0.0))
        for skips, name in ((False, "encoder-decoder"), (True, "RED-Net (skips)")):
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            net = RedNet(xte.shape[1], 32, 4, skips=skips).to(device)
            fit_restorer(net, xtr, task, steps=steps, seed=seed)
            with torch.no_grad():
                out = net(shown.to(device)).float().cpu().clamp(-1, 1)
            rows.append(figures(task, name, out, time.perf_counter() - t0))
        if ddpm is not False:
            t0 = time.perf_counter()
            method = {"inpaint": "DDPM prior (RePaint)", "denoise": "DDPM prior (start at sigma)"}.get(
                task, "DDPM prior (DDNM)")
            out = ddpm_restore(ddpm, shown, info, task, num_steps=ddpm_grid, seed=seed, num_samples=ddpm_samples)
            if ddpm_samples > 1:
                method += f", mean of {ddpm_samples}"
            rows.append(figures(task, method, out, time.perf_counter() - t0))
    return rows


def format_restoration_table(rows: list[dict]) -> str:
    """Markdown of :func:`restoration_table`'s rows.

    Args:
        rows: the list returned by :func:`restoration_table`.

    Returns:
        The Markdown table (ends in a newline).
    """
    lines = ["| task | method | PSNR (dB) | SSIM | classifier accuracy | time (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['accuracy']:.3f} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"
