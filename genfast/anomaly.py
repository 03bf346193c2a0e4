"""Anomaly detection with the generative models: one score per image from every family that
defines one, the one-class-out benchmark and a corrupted-digit outlier set.

A score is larger for images the model finds less likely (the positive class of AUROC):

============================  ===========================================================
family                        score (per image, ``[N]`` float32)
============================  ===========================================================
flows (Glow, RealNVP, NICE,   exact negative log-likelihood ``-log p(x)`` in nats of the
MAF)                          dequantised image (fixed dequantisation noise)
VAE, beta-VAE                 negative ELBO (nats), the true ELBO (beta = 1) whatever the
                              training objective, fixed posterior draws
AE, denoising AE,             reconstruction error ``||x - g(f(x))||^2`` (summed over
contractive AE, WAE           pixels)
Bernoulli RBM                 free energy ``F(v)`` of the binarised image (``-log p(v)`` up
                              to ``log Z``, which is the same for every image)
DDPM                          denoising error ``||eps - eps_theta(x_t, t)||^2`` averaged over
                              a fixed set of timesteps with fixed noise
GANs (DCGAN, WGAN-GP,         minus the discriminator's (critic's) logit
VAE-GAN)
============================  ===========================================================

Protocol (the standard one-class-out benchmark, e.g. Ruff et al. 2018 "Deep One-Class
Classification", sec. 4; on MNIST-like digits): train on the train split without one class,
score the test split, and report AUROC and AUPRC (scikit-learn's ``roc_auc_score`` and
``average_precision_score``) with the held-out class as the positive class. The second outlier
set is corrupted test digits (:func:`corrupt`: Gaussian noise, an occluding square, inverted
grey levels) against the clean test digits, for a model trained on every class.

Sources: Nalisnick et al. 2019 "Do deep generative models know what they don't know?" (flows'
likelihoods); An & Cho 2015 (VAE reconstruction probability); Sakurada & Yairi 2014
(autoencoder reconstruction error); Schlegl et al. 2017 (AnoGAN, discriminator scores);
Graham et al. 2023 "Denoising diffusion models for out-of-distribution detection" (denoising
error over several noise levels).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from genfast._checks import check_image_batch as _check_images
from genfast._checks import check_int

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "TABLE_FAMILIES",
    "TABLE_STEPS",
    "anomaly_score",
    "anomaly_table",
    "binarize",
    "corrupt",
    "detection_metrics",
    "format_anomaly_table",
    "one_class_out",
    "score_autoencoder",
    "score_ddpm",
    "score_flow",
    "score_gan",
    "score_rbm",
    "score_vae",
    "train_family",
]

#: families :func:`train_family` builds (command-line names of ``genfast train``)
FAMILIES = ("realnvp", "glow", "nice", "maf", "vae", "beta-vae", "ae", "dae", "cae", "wae", "rbm", "ddpm",
            "dcgan", "wgan-gp", "vaegan")
#: the corruptions of :func:`corrupt`
CORRUPTIONS = ("noise", "occlusion", "inversion")
#: training budget of each family in the anomaly table (optimisation steps; RBM: epochs), chosen
#: so that the whole default table (12 families x 11 trainings) takes about 10 minutes on 2 cores
TABLE_STEPS = {"realnvp": 100, "glow": 100, "nice": 600, "maf": 400, "vae": 600, "beta-vae": 600, "ae": 600,
               "dae": 600, "cae": 600, "wae": 600, "rbm": 20, "ddpm": 150, "dcgan": 200, "wgan-gp": 200,
               "vaegan": 200}
#: the families of the default table (``genfast anomaly-table``)
TABLE_FAMILIES = ("realnvp", "maf", "nice", "vae", "beta-vae", "ae", "dae", "cae", "wae", "rbm", "ddpm", "dcgan")
_FLOWS = ("realnvp", "glow", "nice", "maf")
_DIGIT_BINS = 17  # scikit-learn's digits have 17 grey levels


# ----------------------------------------------------------------------------- checks


def _batched(fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(images[s:s + batch_size]).float().cpu() for s in range(0, images.shape[0], batch_size)])


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- scores
@torch.no_grad()
def score_flow(model, images: torch.Tensor, num_bins: int = _DIGIT_BINS, seed: int = 0,
               batch_size: int = 512) -> torch.Tensor:
    """Exact negative log-likelihood of a normalizing flow, per image.

    The images are dequantised with uniform noise drawn from a generator seeded by ``seed``
    (:meth:`genfast.models.FlowModel.dequantize`), so the score of an image is repeatable.

    Args:
        model: a :class:`genfast.models.FlowModel` (Glow, RealNVP, NICE, MAF).
        images: ``[N, C, H, W]`` float in [-1, 1], the model's image shape.
        num_bins: grey levels of the data (17 for the bundled digits, 256 for 8-bit images), >= 2.
        seed: seed of the dequantisation noise.
        batch_size: images per forward pass.

    Returns:
        ``[N]`` float32 CPU tensor, ``-log p(x)`` in nats (density on [-1, 1]^D).

    Raises:
        TypeError: ``model`` is not a flow, or ``images`` not a floating tensor.
        ValueError: bad shapes, ``num_bins`` < 2.

    Source: change of variables, Dinh et al. 2017 eq. 3; dequantisation, Theis et al. 2016.
    """
    from genfast.models import FlowModel

    if not isinstance(model, FlowModel):
        raise TypeError(f"model must be a genfast FlowModel, got {type(model).__name__}")
    images = _check_images(images)
    check_int("num_bins", num_bins, lo=2)
    g = torch.Generator().manual_seed(int(seed))
    x = model.dequantize(images.float().cpu(), num_bins, g)
    model.eval()
    dev = _device(model)
    return _batched(lambda b: -model.log_prob(b.to(dev)), x, batch_size)


@torch.no_grad()
def score_vae(model, images: torch.Tensor, num_samples: int = 4, seed: int = 0) -> torch.Tensor:
    """Negative ELBO of a VAE (or beta-VAE: the true ELBO, beta = 1), per image.

    Args:
        model: a :class:`genfast.models.VAE` (:class:`~genfast.models.BetaVAE` included).
        images: ``[N, C, H, W]`` float in [-1, 1].
        num_samples: posterior draws averaged per image, >= 1.
        seed: seed of the draws (a CPU generator), so scores are repeatable.

    Returns:
        ``[N]`` float32 CPU tensor, ``-ELBO(x)`` in nats, an upper bound of ``-log p(x)``.

    Raises:
        TypeError / ValueError: not a VAE, bad images or ``num_samples``.

    Source: Kingma & Welling 2014, eq. 10; An & Cho 2015 use the reconstruction probability.
    """
    from genfast.models import VAE

    if not isinstance(model, VAE):
        raise TypeError(f"model must be a genfast VAE or BetaVAE, got {type(model).__name__}")
    images = _check_images(images)
    check_int("num_samples", num_samples, lo=1)
    g = torch.Generator().manual_seed(int(seed))
    return -model.elbo(images, num_samples=num_samples, generator=g).float().cpu()


@torch.no_grad()
def score_autoencoder(model, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Reconstruction error ``||x - decode(encode(x))||^2`` (summed over pixels), per image.

    Args:
        model: a :class:`genfast.models.AE` or subclass with ``encode``/``decode`` (AE,
            DenoisingAE, ContractiveAE, WAE; VAEs reconstruct from the posterior mean).
        images: ``[N, C, H, W]`` float in [-1, 1].
        batch_size: images per pass.

    Returns:
        ``[N]`` float32 CPU tensor (squared data units, [-1, 1] scale).

    Raises:
        TypeError / ValueError: not an autoencoder, bad images.

    Source: Sakurada & Yairi 2014, "Anomaly detection using autoencoders with nonlinear
    dimensionality reduction".
    """
    from genfast.models import AE

    if not isinstance(model, AE):
        raise TypeError(f"model must be a genfast autoencoder (AE and subclasses), got {type(model).__name__}")
    images = _check_images(images)
    model.eval()

    def err(b):
        b = b.to(model.device, torch.float32)
        return (model.reconstruct(b) - b).pow(2).flatten(1).sum(1)

    return _batched(err, images, batch_size)


def binarize(images: torch.Tensor) -> torch.Tensor:
    """Binary visible vectors of the RBM: pixels above the middle grey (0) are on.

    Args:
        images: ``[N, C, H, W]`` float in [-1, 1].

    Returns:
        ``[N, C*H*W]`` float32 of 0/1 (the rule of ``genfast train rbm``).
    """
    images = _check_images(images)
    return (images.flatten(1) > 0).float()


@torch.no_grad()
def score_rbm(model, images: torch.Tensor) -> torch.Tensor:
    """Free energy ``F(v)`` of the binarised images under a Bernoulli RBM.

    ``p(v) = exp(-F(v)) / Z`` with the same ``Z`` for every image, so ``F`` ranks images as the
    negative log-likelihood does, without estimating ``Z``.

    Args:
        model: a :class:`genfast.models.BernoulliRBM` with ``C*H*W`` visible units.
        images: ``[N, C, H, W]`` float in [-1, 1] (binarised by :func:`binarize`).

    Returns:
        ``[N]`` float32 CPU tensor (nats, up to the constant ``log Z``).

    Raises:
        TypeError / ValueError: not an RBM, bad images, or a pixel count that is not the RBM's
            ``n_visible``.

    Source: Hinton 2010, "A practical guide to training RBMs", sec. 16.1 (free energy).
    """
    from genfast.models import BernoulliRBM

    if not isinstance(model, BernoulliRBM) or model.visible != "bernoulli":
        raise TypeError(f"model must be a genfast BernoulliRBM, got {type(model).__name__}")
    v = binarize(images)
    if v.shape[1] != model.n_visible:
        raise ValueError(f"images have {v.shape[1]} pixels but the RBM has {model.n_visible} visible units")
    return model.free_energy(v.to(model.weight.device)).float().cpu()


#: timesteps of :func:`score_ddpm` as fractions of T (low to high noise levels)
_DDPM_T_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@torch.no_grad()
def score_ddpm(model, images: torch.Tensor, timesteps=None, seed: int = 0, use_ema: bool = True,
               batch_size: int = 512) -> torch.Tensor:
    """Denoising error of a DDPM averaged over fixed timesteps with fixed noise, per image.

    For each ``t`` of ``timesteps``: ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps`` with
    ``eps ~ N(0, I)`` drawn once from a generator seeded by ``seed`` (the same noise for a given
    image index and t on every call), and the score is the mean over t of
    ``||eps - eps_theta(x_t, t)||^2 / D`` (the per-pixel training loss ``L_simple``).

    Args:
        model: a :class:`genfast.models.DDPM` (unconditional, or conditional used with the
            null label).
        images: ``[N, C, H, W]`` float in [-1, 1], the model's image shape.
        timesteps: sequence of ints in ``[0, T)``; None: ``(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
            0.8) * T``.
        seed: seed of the noise.
        use_ema: use the EMA weights (those that sample).
        batch_size: images per UNet call.

    Returns:
        ``[N]`` float32 CPU tensor.

    Raises:
        TypeError / ValueError: not a DDPM, bad images, timesteps outside ``[0, T)`` or empty.

    Source: Ho et al. 2020, eq. 14 (``L_simple``); Graham et al. 2023 (multi-level denoising
    error for out-of-distribution detection).
    """
    from genfast.models import DDPM

    if not isinstance(model, DDPM):
        raise TypeError(f"model must be a genfast DDPM, got {type(model).__name__}")
    images = _check_images(images)
    if tuple(images.shape[1:]) != model.image_shape:
        raise ValueError(f"images must be [N, {', '.join(map(str, model.image_shape))}], got {tuple(images.shape)}")
    T = model.config["num_train_timesteps"]
    if timesteps is None:
        timesteps = sorted({min(T - 1, int(f * T)) for f in _DDPM_T_FRACTIONS})
    timesteps = [int(t) for t in timesteps]
    if not timesteps or any(t < 0 or t >= T for t in timesteps):
        raise ValueError(f"timesteps must be a non-empty list of ints in [0, {T}), got {timesteps}")
    net = model.ema if use_ema else model.unet
    net.eval()
    dev = model.device
    g = torch.Generator().manual_seed(int(seed))
    noise = [torch.randn(images.shape, generator=g) for _ in timesteps]
    ab = model.alphas_cumprod.float().cpu()
    null = None
    out = torch.zeros(images.shape[0])
    x0 = images.float().cpu()
    for s in range(0, images.shape[0], batch_size):
        xb = x0[s:s + batch_size]
        b = xb.shape[0]
        if model.num_classes is not None:
            null = torch.full((b,), model.num_classes, dtype=torch.long, device=dev)
        acc = torch.zeros(b)
        for t, eps in zip(timesteps, noise):
            e = eps[s:s + batch_size]
            xt = ab[t].sqrt() * xb + (1 - ab[t]).sqrt() * e
            tt = torch.full((b,), t, dtype=torch.long, device=dev)
            pred = net(xt.to(dev), tt, null).float().cpu()
            acc += (pred - e).pow(2).flatten(1).mean(1)
        out[s:s + b] = acc / len(timesteps)
    return out


@torch.no_grad()
def score_gan(model, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Minus the discriminator's logit (the critic's value for WGAN-GP), per image.

    A discriminator trained to tell data from fakes gives low logits to images unlike the data;
    the score is a heuristic (the discriminator is not a density), as in AnoGAN's
    discrimination loss.

    Args:
        model: a :class:`genfast.models.DCGAN`, :class:`~genfast.models.WGANGP` or
            :class:`~genfast.models.VAEGAN` (the conditional GAN needs labels: not supported).
        images: ``[N, C, H, W]`` float in [-1, 1].
        batch_size: images per pass.

    Returns:
        ``[N]`` float32 CPU tensor.

    Raises:
        TypeError: another model (the conditional GAN included), bad images.

    Source: Schlegl et al. 2017, "Unsupervised anomaly detection with GANs" (AnoGAN), eq. 4-5.
    """
    from genfast.models import DCGAN, VAEGAN, WGANGP, ConditionalGAN

    if isinstance(model, ConditionalGAN) or not isinstance(model, (DCGAN, WGANGP, VAEGAN)):
        raise TypeError(f"model must be a genfast DCGAN, WGANGP or VAEGAN, got {type(model).__name__}")
    images = _check_images(images)
    disc = model.critic if isinstance(model, WGANGP) else model.discriminator
    model.eval()
    return _batched(lambda b: -disc(b.to(model.device, torch.float32)), images, batch_size)


def anomaly_score(model, images: torch.Tensor, **kwargs) -> torch.Tensor:
    """The anomaly score of :mod:`genfast.anomaly`'s table for any supported model.

    Dispatches on the model's class: flows to :func:`score_flow`, VAE/beta-VAE to
    :func:`score_vae`, other autoencoders to :func:`score_autoencoder`, Bernoulli RBMs to
    :func:`score_rbm`, DDPMs to :func:`score_ddpm`, GANs to :func:`score_gan`.

    Args:
        model: a trained genfast model.
        images: ``[N, C, H, W]`` float in [-1, 1].
        **kwargs: passed to the family's function (e.g. ``num_bins`` for flows).

    Returns:
        ``[N]`` float32 CPU tensor; larger is more anomalous.

    Raises:
        TypeError: a model without a score (GLO, the conditional GAN, VQ-VAE, DBN, ...).
    """
    from genfast.models import AE, DCGAN, DDPM, VAE, VAEGAN, WGANGP, BernoulliRBM, ConditionalGAN, FlowModel

    if isinstance(model, FlowModel):
        return score_flow(model, images, **kwargs)
    if isinstance(model, VAE):
        return score_vae(model, images, **kwargs)
    if isinstance(model, AE):
        return score_autoencoder(model, images, **kwargs)
    if isinstance(model, BernoulliRBM) and model.visible == "bernoulli":
        return score_rbm(model, images, **kwargs)
    if isinstance(model, DDPM):
        return score_ddpm(model, images, **kwargs)
    if isinstance(model, (DCGAN, WGANGP, VAEGAN)) and not isinstance(model, ConditionalGAN):
        return score_gan(model, images, **kwargs)
    raise TypeError(f"no anomaly score is defined for {type(model).__name__}")


# ----------------------------------------------------------------------------- metrics
def detection_metrics(scores, is_anomaly) -> dict[str, float]:
    """AUROC and AUPRC of anomaly scores against binary labels.

    Args:
        scores: ``[N]`` scores (tensor or array; larger means more anomalous), finite.
        is_anomaly: ``[N]`` booleans or 0/1, with at least one of each.

    Returns:
        ``{"auroc", "auprc", "positives", "n"}``: ``roc_auc_score`` and
        ``average_precision_score`` of scikit-learn, the number of anomalies and of images.
        AUPRC's chance level is the fraction of positives.

    Raises:
        ValueError: different lengths, non-finite scores, or only one class present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).ravel()
    y = np.asarray(is_anomaly.detach().cpu() if isinstance(is_anomaly, torch.Tensor) else is_anomaly).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and is_anomaly must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if not np.isfinite(s).all():
        raise ValueError("scores holds NaN or infinite values")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("is_anomaly must hold both anomalies and normal images")
    return {"auroc": float(roc_auc_score(y, s)), "auprc": float(average_precision_score(y, s)),
            "positives": int(y.sum()), "n": int(y.size)}


# ----------------------------------------------------------------------------- outliers
def corrupt(images: torch.Tensor, kind: str, seed: int = 0, noise_std: float = 0.5,
            patch: int | None = None) -> torch.Tensor:
    """Corrupted copies of digits: the second outlier set of the anomaly table.

    - ``"noise"``: ``x + noise_std * eps``, ``eps ~ N(0, I)``, clamped to [-1, 1];
    - ``"occlusion"``: a square of side ``patch`` (default ``H // 2``) at a random position per
      image set to full ink (+1), like a blot on the page;
    - ``"inversion"``: ``-x`` (grey levels inverted: white digit strokes become dark on light).

    Args:
        images: ``[N, C, H, W]`` float in [-1, 1].
        kind: one of :data:`CORRUPTIONS`.
        seed: seed of the noise and of the patch positions (a CPU generator).
        noise_std: standard deviation of the noise (data units), > 0.
        patch: side of the occluding square, in ``[1, min(H, W)]``.

    Returns:
        ``[N, C, H, W]`` float32 CPU tensor in [-1, 1] (a new tensor).

    Raises:
        ValueError / TypeError: unknown ``kind``, bad images, ``noise_std`` or ``patch``.
    """
    images = _check_images(images).float().cpu()
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")
    g = torch.Generator().manual_seed(int(seed))
    if kind == "inversion":
        return -images
    if kind == "noise":
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std > 0 \
                or not math.isfinite(noise_std):
            raise ValueError(f"noise_std must be a finite number > 0, got {noise_std!r}")
        return (images + noise_std * torch.randn(images.shape, generator=g)).clamp(-1, 1)
    n, _, h, w = images.shape
    p = min(h, w) // 2 if patch is None else patch
    check_int("patch", p, lo=1)
    if p > min(h, w):
        raise ValueError(f"patch must be <= min(H, W) = {min(h, w)}, got {p}")
    out = images.clone()
    ys = torch.randint(0, h - p + 1, (n,), generator=g).tolist()
    xs = torch.randint(0, w - p + 1, (n,), generator=g).tolist()
    for i, (y0, x0) in enumerate(zip(ys, xs)):
        out[i, :, y0:y0 + p, x0:x0 + p] = 1.0
    return out


# ----------------------------------------------------------------------------- training
def train_family(family: str, images: torch.Tensor, steps: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
    """Builds a small model of ``family`` for 8x8 digits and trains it with the model's own ``fit``.

    Settings (the anomaly table's): RealNVP 2 scales, width 32; Glow 2 levels x 2 steps, width
    32; NICE 4 layers, width 128; MAF 3 layers, (128, 128); the autoencoders and GANs their
    :mod:`genfast.cli.families.zoo_models` defaults (batch 64); the RBM 64 hidden units, CD-1,
    batch 50, lr 0.05 on binarised pixels (``steps`` counts epochs); the DDPM a UNet of width 16,
    multipliers (1, 2), T = 1000, batch 64.

    Args:
        family: one of :data:`FAMILIES`.
        images: ``[N, 1, 8, 8]`` (any ``[N, C, H, W]`` the family accepts) float in [-1, 1].
        steps: optimisation steps (RBM: epochs), >= 1; None uses :data:`TABLE_STEPS`.
        seed: seed of the initialisation and the batches.
        device: where to train.

    Returns:
        The trained model in eval mode.

    Raises:
        ValueError / TypeError: unknown family, bad images or steps.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    images = _check_images(images)
    steps = TABLE_STEPS[family] if steps is None else check_int("steps", steps, lo=1)
    shape = tuple(images.shape[1:])
    torch.manual_seed(seed)
    if family in _FLOWS:
        from genfast.models import MAF, NICE, Glow, RealNVP, fit_flow

        model = {"realnvp": lambda: RealNVP(shape, num_scales=2, hidden=32),
                 "glow": lambda: Glow(shape, num_levels=2, num_steps=2, hidden=32, seed=seed),
                 "nice": lambda: NICE(shape, num_layers=4, hidden=128),
                 "maf": lambda: MAF(shape, num_layers=3, hidden=(128, 128))}[family]().to(device)
        fit_flow(model, images, num_bins=_DIGIT_BINS, steps=steps, seed=seed)
        return model.eval()
    if family == "rbm":
        from genfast.models import BernoulliRBM

        v = binarize(images).to(device)
        model = BernoulliRBM(v.shape[1], 64, seed=seed, device=device)
        model.fit(v, epochs=steps, batch_size=50, lr=0.05, k=1)
        return model
    if family == "ddpm":
        from genfast.models import DDPM

        model = DDPM(image_size=tuple(shape[1:]), in_channels=shape[0], base_channels=16, channel_mult=(1, 2),
                     num_heads=2).to(device)
        model.fit(images, steps=steps, batch_size=64, seed=seed, progress=False, warmup_steps=min(100, steps))
        return model.eval()
    from genfast.cli.families.zoo_models import build

    model = build(family, shape).to(device)
    model.fit(images, steps=steps, seed=seed, batch_size=64)
    return model.eval()


def one_class_out(family: str, held_out: int, train, test, steps: int | None = None, seed: int = 0,
                  device: str | torch.device = "cpu") -> dict:
    """One cell of the one-class-out benchmark: train without ``held_out``, score the test split.

    Args:
        family: one of :data:`FAMILIES`.
        held_out: the class left out of training, the positive class of the metrics.
        train: ``(images [N, C, H, W], labels [N] int64)`` of the train split.
        test: ``(images, labels)`` of the test split.
        steps: training budget (None: :data:`TABLE_STEPS`).
        seed: training seed.
        device: where to train and score.

    Returns:
        :func:`detection_metrics`' dict plus ``"seconds"`` (training and scoring).

    Raises:
        ValueError: ``held_out`` absent from the train or the test labels, bad data.
    """
    (xtr, ytr), (xte, yte) = train, test
    check_int("held_out", held_out)
    if not bool((ytr == held_out).any()) or not bool((yte == held_out).any()):
        raise ValueError(f"held_out class {held_out} must appear in both the train and the test labels")
    t0 = time.perf_counter()
    model = train_family(family, xtr[ytr != held_out], steps=steps, seed=seed, device=device)
    scores = anomaly_score(model, xte)
    out = detection_metrics(scores, yte == held_out)
    out["seconds"] = time.perf_counter() - t0
    return out


def anomaly_table(families=TABLE_FAMILIES, classes=range(10),
                  steps: dict | None = None, seed: int = 0, device: str | torch.device = "cpu",
                  corruptions=CORRUPTIONS, log=None) -> list[dict]:
    """The anomaly table: every family x held-out class (one-class-out AUROC/AUPRC) and the
    corrupted-digit outlier set, on scikit-learn's digits (seeded split, 1437 train / 360 test).

    Args:
        families: names from :data:`FAMILIES` (default :data:`TABLE_FAMILIES`).
        classes: held-out classes (0-9).
        steps: family -> training budget overriding :data:`TABLE_STEPS`.
        seed: training and corruption seed.
        device: where to train.
        corruptions: kinds of :func:`corrupt` scored against the clean test digits, by a model
            trained on every class (empty: skip).
        log: optional ``log(str)`` called after every cell.

    Returns:
        One dict per family: ``family``, ``steps``, ``auroc`` (class -> value), ``auprc``
        (class -> value), ``mean_auroc``, ``mean_auprc``, ``corrupted`` (kind -> AUROC),
        ``seconds``.

    Raises:
        ValueError: an unknown family, class or corruption.
    """
    from genfast.data import load_digits

    families = list(families)
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"families: unknown family {f!r}, choose from {FAMILIES}")
    classes = [int(c) for c in classes]
    if any(c < 0 or c > 9 for c in classes):
        raise ValueError(f"classes must lie in 0..9, got {classes}")
    for k in corruptions:
        if k not in CORRUPTIONS:
            raise ValueError(f"corruptions: unknown kind {k!r}, choose from {CORRUPTIONS}")
    budget = {**TABLE_STEPS, **(steps or {})}
    train, test = load_digits("train"), load_digits("test")
    rows = []
    for f in families:
        t0 = time.perf_counter()
        row = {"family": f, "steps": budget[f], "auroc": {}, "auprc": {}, "corrupted": {}}
        for c in classes:
            r = one_class_out(f, c, train, test, steps=budget[f], seed=seed, device=device)
            row["auroc"][c], row["auprc"][c] = r["auroc"], r["auprc"]
            if log:
                log(f"{f} held-out {c}: AUROC {r['auroc']:.3f} AUPRC {r['auprc']:.3f} ({r['seconds']:.1f} s)")
        if corruptions:
            model = train_family(f, train[0], steps=budget[f], seed=seed, device=device)
            clean = anomaly_score(model, test[0])
            for k in corruptions:
                bad = anomaly_score(model, corrupt(test[0], k, seed=seed))
                lab = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
                row["corrupted"][k] = detection_metrics(torch.cat([clean, bad]), lab)["auroc"]
            if log:
                log(f"{f} corrupted: " + ", ".join(f"{k} {v:.3f}" for k, v in row["corrupted"].items()))
        vals = list(row["auroc"].values())
        row["mean_auroc"] = float(np.mean(vals)) if vals else float("nan")
        row["mean_auprc"] = float(np.mean(list(row["auprc"].values()))) if vals else float("nan")
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def format_anomaly_table(rows: list[dict]) -> str:
    """Markdown of :func:`anomaly_table`'s rows: AUROC per held-out class, mean AUROC and AUPRC,
    AUROC on each corruption, seconds.

    Args:
        rows: the list returned by :func:`anomaly_table`.

    Returns:
        The Markdown table (a string ending in a newline).
    """
    if not rows:
        return ""
    classes = list(rows[0]["auroc"])
    kinds = list(rows[0]["corrupted"])
    head = ["family", "steps", *[f"AUROC {c}" for c in classes], "mean AUROC", "mean AUPRC",
            *[f"{k} AUROC" for k in kinds], "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["family"], str(r["steps"]), *[f"{r['auroc'][c]:.3f}" for c in classes],
                 f"**{r['mean_auroc']:.3f}**", f"{r['mean_auprc']:.3f}",
                 *[f"{r['corrupted'][k]:.3f}" for k in kinds], f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
