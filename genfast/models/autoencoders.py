"""The autoencoder family: AE, denoising AE, contractive AE, VAE, beta-VAE, WAE (MMD and GAN), GLO.

All models share one interface (:class:`genfast.models._zoo_base.ZooModel`):

- ``training_step(batch) -> dict[str, float]``: one Adam step (and, for WAE-GAN, the latent
  discriminator's step) on ``batch`` = images ``[B, C, H, W]`` in [-1, 1], or
  ``(images, labels[, indices])``; the dict's ``"loss"`` is the objective minimised. A training
  loop is ``for batch in loader: model.training_step(batch)``; :meth:`ZooModel.fit` is that loop.
- ``encode(x) -> z [B, latent_dim]`` and ``decode(z) -> [B, C, H, W]`` in [-1, 1] (GLO has only
  ``decode``: its codes are free parameters, one per training image).
- ``sample(n, generator=None) -> [n, C, H, W]`` float32 in [-1, 1]: VAE and WAE decode prior
  draws ``z ~ N(0, I)``; AE, denoising and contractive AE and GLO decode draws from a Gaussian
  fitted to the codes of the training data (Bojanowski et al. 2018, sec. 3.3 for GLO; the same
  device gives the plain autoencoders a generator).
- ``save(directory)`` / ``<Class>.load(directory)``: ``config.json`` + ``model.safetensors``.

The networks are multilayer perceptrons on the flattened image (any ``C x H x W``: the 8x8
digits, 28x28 MNIST, image folders); decoders end in ``tanh``, the data range. Reconstruction
errors are squared errors summed over pixels and averaged over the batch (``c(x, y) = ||x - y||^2``
of the WAE paper); the VAE family uses a Gaussian decoder with one learned standard deviation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_choice, check_int, check_number
from genfast.losses import gaussian_kl, mmd
from genfast.losses.adversarial import discriminator_loss, generator_loss

from ._zoo_base import ZooModel, check_hidden, gaussian_noise, mlp

__all__ = [
    "AE",
    "GLO",
    "VAE",
    "WAE",
    "WAEGAN",
    "BetaVAE",
    "ContractiveAE",
    "DenoisingAE",
    "sigmoid_jacobian_frobenius",
]


def sigmoid_jacobian_frobenius(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Closed-form ``||dh/dx||_F^2`` of a sigmoid layer ``h = sigmoid(W x + b)``, per example.

    ``dh_j/dx_i = h_j (1 - h_j) W_ji``, so ``||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2``:
    ``O(B (D + K) + K D)`` work instead of a ``B x K x D`` Jacobian.

    Args:
        x: ``[B, D]`` float inputs.
        weight: ``[K, D]`` weights ``W`` (``nn.Linear.weight``).
        bias: ``[K]`` biases ``b``.

    Returns:
        ``[B]`` squared Frobenius norms (differentiable in ``x``, ``W`` and ``b``).

    Raises:
        ValueError: shapes that do not fit together.

    Source: Rifai et al. 2011, "Contractive Auto-Encoders", eq. 5 (sigmoid closed form).
    """
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != x.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"x [B, D], weight [K, D] and bias [K] do not fit: {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    h = torch.sigmoid(F.linear(x, weight, bias))
    return (h * (1 - h)).pow(2) @ weight.pow(2).sum(dim=1)


# ----------------------------------------------------------------------------- plain autoencoders
class AE(ZooModel):
    """Deterministic autoencoder: ``z = f(x)``, ``x_hat = g(z)``, minimising ``||x - x_hat||^2``.

    Sampling decodes draws from a Gaussian fitted to the codes of the training images: running
    moments during :meth:`training_step`, set exactly by :meth:`fit_latent_gaussian` (which
    :meth:`fit` calls at the end).

    Args:
        image_shape: ``(C, H, W)`` of the images (default the 8x8 digits).
        latent_dim: size of the code ``z``, >= 1.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        lr: Adam learning rate.

    ``training_step`` returns ``{"loss", "recon"}``: the batch mean of the per-image squared
    error (summed over pixels). Source: Rumelhart, Hinton & Williams 1986; Hinton &
    Salakhutdinov 2006.
    """

    _latent_momentum = 0.05  # running code moments: about the last 20 batches

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 16, hidden=(256,), lr: float = 1e-3, *,
                 _extra: dict | None = None):
        latent_dim = check_int("latent_dim", latent_dim, lo=1)
        hidden = check_hidden("hidden", hidden)
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        super().__init__(image_shape, {"latent_dim": latent_dim, "hidden": list(hidden), "lr": lr, **(_extra or {})})
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.encoder = self._build_encoder()
        self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), self.num_pixels]), nn.Tanh(),
                                     nn.Unflatten(1, self.image_shape))
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_second_moment", torch.eye(latent_dim))
        self.optimizer = torch.optim.Adam(self._ae_parameters(), lr=lr)

    def _build_encoder(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), mlp([self.num_pixels, *self.hidden, self._encoder_out()]))

    def _encoder_out(self) -> int:
        return self.latent_dim

    def _ae_parameters(self):
        return list(self.encoder.parameters()) + list(self.decoder.parameters())

    # ---------------------------------------------------------------- encode / decode
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, latent_dim]`` of images ``x`` ``[B, C, H, W]`` in [-1, 1]."""
        return self.encoder(self._check_images(x, "x"))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in [-1, 1] from codes ``z`` ``[B, latent_dim]``.

        Raises:
            ValueError: ``z`` is not ``[B, latent_dim]``.
        """
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}], got {tuple(getattr(z, 'shape', ()))}")
        return self.decoder(z.to(self.device, torch.float32))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))`` without gradients, ``[B, C, H, W]``."""
        return self.decode(self.encode(x))

    # ---------------------------------------------------------------- training
    def _recon(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return (x_hat - x).pow(2).flatten(1).sum(1).mean()

    def _update_latent_moments(self, z: torch.Tensor) -> None:
        z = z.detach()
        m = self._latent_momentum
        self.latent_mean.lerp_(z.mean(0), m)
        self.latent_second_moment.lerp_(z.T @ z / z.shape[0], m)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1

    def training_step(self, batch) -> dict[str, float]:
        """One Adam step on the reconstruction error of ``batch``; returns ``{"loss", "recon"}``."""
        x, _, _ = self._unpack(batch)
        self.train()
        z = self.encoder(x)
        loss = self._recon(x, self.decoder(z))
        self._step(loss)
        self._update_latent_moments(z)
        return {"loss": loss.item(), "recon": loss.item()}

    @torch.no_grad()
    def fit_latent_gaussian(self, images: torch.Tensor, batch_size: int = 1024) -> None:
        """Sets the sampling Gaussian to the mean and covariance of the codes of ``images``.

        Args:
            images: ``[N, C, H, W]`` in [-1, 1], N >= 2 (usually the training set).
            batch_size: images encoded at a time.
        """
        self._check_images(images, "images", move=False)
        was = self.training
        self.eval()
        z = torch.cat([self._codes_for_sampling(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])
        self.train(was)
        self.latent_mean.copy_(z.mean(0))
        self.latent_second_moment.copy_(z.T @ z / z.shape[0])

    def _codes_for_sampling(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def fit(self, images, labels=None, **kwargs) -> dict:
        """:meth:`ZooModel.fit`, then :meth:`fit_latent_gaussian` on ``images`` (on its first
        10000 images when it is a ``Dataset`` or ``DataLoader``)."""
        from genfast.training.data import take_images

        info = super().fit(images, labels, **kwargs)
        self.fit_latent_gaussian(take_images(images))
        return info

    def _latent_gaussian(self) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.latent_mean
        cov = self.latent_second_moment - torch.outer(mu, mu)
        cov = 0.5 * (cov + cov.T) + 1e-5 * torch.eye(self.latent_dim, device=mu.device)
        evals, evecs = torch.linalg.eigh(cov)
        return mu, evecs * evals.clamp_min(0).sqrt()  # a square root of cov even when not positive definite

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` in [-1, 1]: decoded draws from the fitted code Gaussian.

        Args:
            n: number of images, >= 0.
            generator: optional CPU ``torch.Generator`` for the latent draws.

        Raises:
            ValueError/TypeError: bad ``n`` or ``generator``.
        """
        n = check_int("n", n, lo=0)
        mu, root = self._latent_gaussian()
        eps = gaussian_noise((n, self.latent_dim), generator, self.device)
        return self.decode(mu + eps @ root.T).clamp(-1, 1)


class DenoisingAE(AE):
    """Denoising autoencoder: reconstructs ``x`` from ``x + sigma * eps``, ``eps ~ N(0, I)``.

    Args:
        image_shape, latent_dim, hidden, lr: as :class:`AE`.
        noise_std: standard deviation ``sigma`` of the Gaussian corruption (data units; the data
            range is [-1, 1]), >= 0.

    Source: Vincent et al. 2008, "Extracting and Composing Robust Features with Denoising
    Autoencoders" (with additive Gaussian corruption, their sec. 2.3 / Vincent et al. 2010).
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 16, hidden=(256,), lr: float = 1e-3,
                 noise_std: float = 0.5):
        noise_std = check_number("noise_std", noise_std, lo=0.0, float32=False)
        super().__init__(image_shape, latent_dim, hidden, lr, _extra={"noise_std": noise_std})
        self.noise_std = float(noise_std)

    def training_step(self, batch) -> dict[str, float]:
        """One Adam step on ``||x - g(f(x + sigma eps))||^2``; returns ``{"loss", "recon"}``."""
        x, _, _ = self._unpack(batch)
        self.train()
        z = self.encoder(x + self.noise_std * torch.randn_like(x))
        loss = self._recon(x, self.decoder(z))
        self._step(loss)
        with torch.no_grad():
            self._update_latent_moments(self.encoder(x))
        return {"loss": loss.item(), "recon": loss.item()}


class ContractiveAE(AE):
    """Contractive autoencoder: ``||x - g(f(x))||^2 + lambda ||df/dx||_F^2``, ``f`` ending in a sigmoid.

    With ``hidden=()`` the encoder is one sigmoid layer and the penalty uses the closed form
    (:func:`sigmoid_jacobian_frobenius`); with hidden layers it is computed by autograd (the
    Jacobian of the whole encoder, one vector-Jacobian product per code unit, differentiable).

    Args:
        image_shape, latent_dim, lr: as :class:`AE`.
        hidden: hidden widths of the encoder (default none: the closed form applies).
        contractive_weight: ``lambda``, >= 0.

    ``training_step`` returns ``{"loss", "recon", "contractive"}`` (the penalty without lambda,
    batch mean). Source: Rifai et al. 2011, "Contractive Auto-Encoders", eqs. 3-5.
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 32, hidden=(), lr: float = 1e-3,
                 contractive_weight: float = 0.1):
        contractive_weight = check_number("contractive_weight", contractive_weight, lo=0.0, float32=False)
        super().__init__(image_shape, latent_dim, hidden, lr, _extra={"contractive_weight": contractive_weight})
        self.contractive_weight = float(contractive_weight)

    def _build_encoder(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), mlp([self.num_pixels, *self.hidden, self.latent_dim]), nn.Sigmoid())

    def contractive_penalty(self, x: torch.Tensor, method: str = "auto") -> torch.Tensor:
        """``||df/dx||_F^2`` per example, ``[B]``, differentiable in the encoder's parameters.

        Args:
            x: ``[B, C, H, W]`` images.
            method: ``"closed_form"`` (one sigmoid layer only), ``"autograd"`` (any encoder), or
                ``"auto"`` (closed form when it applies).

        Raises:
            ValueError: unknown ``method``, or ``"closed_form"`` with hidden layers.
        """
        check_choice("method", method, ("auto", "closed_form", "autograd"))
        x = self._check_images(x, "x")
        if method == "closed_form" and self.hidden:
            raise ValueError("method='closed_form' needs a single sigmoid encoder layer (hidden=())")
        xf = x.flatten(1)
        if method != "autograd" and not self.hidden:
            lin = self.encoder[1][0]
            return sigmoid_jacobian_frobenius(xf, lin.weight, lin.bias)
        xf = xf.detach().requires_grad_(True)
        h = self.encoder(xf.view_as(x))
        total = xf.new_zeros(xf.shape[0])
        for j in range(self.latent_dim):  # row j of every example's Jacobian at once
            (g,) = torch.autograd.grad(h[:, j].sum(), xf, create_graph=True)
            total = total + g.pow(2).sum(1)
        return total

    def training_step(self, batch) -> dict[str, float]:
        """One Adam step on reconstruction + lambda * penalty; returns ``{"loss", "recon", "contractive"}``."""
        x, _, _ = self._unpack(batch)
        self.train()
        z = self.encoder(x)
        recon = self._recon(x, self.decoder(z))
        pen = self.contractive_penalty(x).mean()
        loss = recon + self.contractive_weight * pen
        self._step(loss)
        self._update_latent_moments(z)
        return {"loss": loss.item(), "recon": recon.item(), "contractive": pen.item()}


# ----------------------------------------------------------------------------- VAE family
class VAE(AE):
    """Variational autoencoder with a diagonal Gaussian posterior and a Gaussian decoder.

    ``q(z|x) = N(mu(x), diag(exp(logvar(x))))``, prior ``N(0, I)``, decoder
    ``p(x|z) = N(g(z), sigma^2 I)`` with one learned ``sigma`` (floored at ``min_sigma``). The
    loss is the negative ELBO with the closed-form KL (Kingma & Welling 2014, eq. 10)::

        -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))

    estimated with one reparameterised draw ``z = mu + exp(logvar / 2) * eps``.

    Args:
        image_shape, latent_dim, hidden, lr: as :class:`AE`.
        min_sigma: floor of the decoder's standard deviation, > 0 (data units). The digits have
            17 grey levels 0.125 apart in [-1, 1]; a floor keeps the continuous density from
            collapsing onto them.

    ``training_step`` returns ``{"loss", "recon", "kl"}`` in nats per image (``loss`` is the
    negative ELBO for the VAE, ``recon + beta * kl`` for :class:`BetaVAE`). ``encode`` returns the
    posterior mean; :meth:`posterior` gives ``(mu, logvar)``; ``sample`` decodes prior draws
    (the decoder mean, no pixel noise).

    Source: Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Rezende et al. 2014.
    """

    likelihood_name = "ELBO (nats/image)"

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 16, hidden=(256,), lr: float = 1e-3,
                 min_sigma: float = 0.05, *, _extra: dict | None = None):
        min_sigma = check_number("min_sigma", min_sigma, lo=0.0, lo_open=True, float32=False)
        if min_sigma >= 1.0:
            raise ValueError(f"min_sigma must be < 1, got {min_sigma}")
        super().__init__(image_shape, latent_dim, hidden, lr, _extra={"min_sigma": min_sigma, **(_extra or {})})
        self.min_sigma = min_sigma
        # unconstrained parameter of sigma (see the property): 0 gives sigma = 1
        self.sigma_raw = nn.Parameter(torch.zeros(()))
        self.optimizer.add_param_group({"params": [self.sigma_raw]})

    def _encoder_out(self) -> int:
        return 2 * self.latent_dim

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of ``q(z|x)``, each ``[B, latent_dim]``, for images ``[B, C, H, W]``."""
        h = self.encoder(self._check_images(x, "x"))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)  # exp() stays finite in float32 early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means ``[B, latent_dim]``."""
        return self.posterior(x)[0]

    @property
    def sigma(self) -> torch.Tensor:
        """The decoder's standard deviation (scalar tensor, data units)."""
        return self.min_sigma + F.softplus(self.sigma_raw) * (1.0 - self.min_sigma) / math.log(2.0)

    def _nll(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        s = self.sigma
        d = self.num_pixels
        sq = (x - mean).pow(2).flatten(1).sum(1)
        return 0.5 * sq / s**2 + d * torch.log(s) + 0.5 * d * math.log(2 * math.pi)

    def _terms(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.posterior(x)
        eps = gaussian_noise(mu.shape, generator, mu.device) if generator is not None else torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self._nll(x, self.decoder(z)), gaussian_kl(mu, logvar), mu

    def _objective(self, recon: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        return recon + kl

    def training_step(self, batch) -> dict[str, float]:
        """One Adam step on the negative ELBO; returns ``{"loss", "recon", "kl"}`` (nats/image)."""
        x, _, _ = self._unpack(batch)
        self.train()
        nll, kl, mu = self._terms(x)
        recon, kl = nll.mean(), kl.mean()
        loss = self._objective(recon, kl)
        self._step(loss)
        self._update_latent_moments(mu)
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}

    @torch.no_grad()
    def elbo(self, images: torch.Tensor, num_samples: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Evidence lower bound ``log p(x) >= E_q[log p(x|z)] - KL`` per image, ``[N]`` nats.

        Args:
            images: ``[N, C, H, W]`` in [-1, 1].
            num_samples: reparameterised draws averaged for the expectation, >= 1.
            generator: optional CPU generator for the draws.

        Source: Kingma & Welling 2014, eq. 10 (the density is w.r.t. Lebesgue measure on the
        [-1, 1] data scale).
        """
        check_int("num_samples", num_samples, lo=1)
        was = self.training
        self.eval()
        x = self._check_images(images, "images")
        total = torch.zeros(x.shape[0], device=x.device)
        for _ in range(num_samples):
            nll, kl, _ = self._terms(x, generator)
            total += -(nll + kl)
        self.train(was)
        return total / num_samples

    def likelihood(self, images: torch.Tensor) -> torch.Tensor:
        """The ELBO per image (nats), :meth:`elbo` with one draw."""
        return self.elbo(images)

    def _codes_for_sampling(self, x):
        return self.encode(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means of ``n`` prior draws ``z ~ N(0, I)``, ``[n, C, H, W]`` in [-1, 1]."""
        n = check_int("n", n, lo=0)
        return self.decode(gaussian_noise((n, self.latent_dim), generator, self.device)).clamp(-1, 1)


class BetaVAE(VAE):
    """beta-VAE: ``recon + beta * KL`` (Higgins et al. 2017), or the capacity-annealed objective
    ``recon + gamma * |KL - C(t)|`` with ``C(t)`` growing linearly from 0 to ``capacity_max``
    nats over ``capacity_steps`` training steps (Burgess et al. 2018, eq. 8).

    Args:
        image_shape, latent_dim, hidden, lr, min_sigma: as :class:`VAE`.
        beta: weight of the KL term, >= 0 (Higgins et al. 2017, eq. 4).
        capacity_max: ``C_max`` in nats, or None for the plain beta objective.
        capacity_steps: steps over which ``C`` grows, >= 1.
        gamma: weight of ``|KL - C|`` in the capacity objective, >= 0.

    ``training_step`` returns ``{"loss", "recon", "kl"}`` and ``"capacity"`` (the current C)
    when annealing. :meth:`elbo` is the true ELBO (beta = 1), whatever the training objective.
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 16, hidden=(256,), lr: float = 1e-3,
                 min_sigma: float = 0.05, beta: float = 4.0, capacity_max: float | None = None,
                 capacity_steps: int = 10000, gamma: float = 100.0):
        beta = check_number("beta", beta, lo=0.0, float32=False)
        if capacity_max is not None:
            capacity_max = check_number("capacity_max", capacity_max, lo=0.0, float32=False)
        capacity_steps = check_int("capacity_steps", capacity_steps, lo=1)
        gamma = check_number("gamma", gamma, lo=0.0, float32=False)
        super().__init__(image_shape, latent_dim, hidden, lr, min_sigma,
                         _extra={"beta": beta, "capacity_max": capacity_max, "capacity_steps": capacity_steps,
                                 "gamma": gamma})
        self.beta, self.capacity_max, self.capacity_steps, self.gamma = beta, capacity_max, capacity_steps, gamma

    @property
    def capacity(self) -> float:
        """The current capacity ``C(t)`` in nats (0 without annealing)."""
        if self.capacity_max is None:
            return 0.0
        return self.capacity_max * min(1.0, self.step_count / self.capacity_steps)

    def _objective(self, recon, kl):
        if self.capacity_max is None:
            return recon + self.beta * kl
        return recon + self.gamma * (kl - self.capacity).abs()

    def training_step(self, batch) -> dict[str, float]:
        """One Adam step on the beta (or capacity) objective; returns the named losses."""
        c = self.capacity
        out = super().training_step(batch)
        if self.capacity_max is not None:
            out["capacity"] = c
        return out


# ----------------------------------------------------------------------------- WAE
class WAE(AE):
    """Wasserstein autoencoder: ``||x - G(Q(x))||^2 + lambda * D_Z(Q_Z, P_Z)``, ``P_Z = N(0, I)``.

    ``penalty="mmd"`` (WAE-MMD, Tolstikhin et al. 2018, Algorithm 2) uses the unbiased MMD
    estimator of :func:`genfast.losses.mmd` between the batch's codes and as many prior draws,
    with the multi-scale inverse multiquadratic kernel (``kernel="imq"``) or the Gaussian one
    (``"rbf"``); ``penalty="gan"`` (WAE-GAN, Algorithm 1) trains a latent discriminator
    ``D(z)`` to tell prior draws from codes, and the encoder is penalised by
    ``-lambda log D(Q(x))``.

    Args:
        image_shape, latent_dim, hidden, lr: as :class:`AE` (deterministic encoder).
        penalty: ``"mmd"`` or ``"gan"``.
        kernel: ``"imq"`` or ``"rbf"`` (MMD only).
        reg_weight: ``lambda``, >= 0 (the paper: 10 for MMD, 1 for GAN on MNIST).
        disc_hidden: hidden widths of the latent discriminator (GAN only).
        lr_disc: its Adam learning rate (GAN only).

    ``training_step`` returns ``{"loss", "recon", "penalty"}`` and, for WAE-GAN, ``"d_loss"``.
    ``sample`` decodes prior draws. Source: Tolstikhin, Bousquet, Gelly & Schoelkopf 2018,
    "Wasserstein Auto-Encoders", eq. 4 and Algorithms 1-2.
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 8, hidden=(256,), lr: float = 1e-3,
                 penalty: str = "mmd", kernel: str = "imq", reg_weight: float | None = None,
                 disc_hidden=(128, 128), lr_disc: float = 5e-4):
        check_choice("penalty", penalty, ("mmd", "gan"))
        check_choice("kernel", kernel, ("imq", "rbf"))
        if reg_weight is None:
            reg_weight = 10.0 if penalty == "mmd" else 1.0
        reg_weight = check_number("reg_weight", reg_weight, lo=0.0, float32=False)
        disc_hidden = check_hidden("disc_hidden", disc_hidden)
        lr_disc = check_number("lr_disc", lr_disc, lo=0.0, lo_open=True, float32=False)
        super().__init__(image_shape, latent_dim, hidden, lr,
                         _extra={"penalty": penalty, "kernel": kernel, "reg_weight": reg_weight,
                                 "disc_hidden": list(disc_hidden), "lr_disc": lr_disc})
        self.penalty, self.kernel, self.reg_weight = penalty, kernel, reg_weight
        if penalty == "gan":
            self.latent_discriminator = mlp([latent_dim, *disc_hidden, 1])
            self.disc_optimizer = torch.optim.Adam(self.latent_discriminator.parameters(), lr=lr_disc,
                                                   betas=(0.5, 0.999))

    def training_step(self, batch) -> dict[str, float]:
        """One step of the encoder/decoder (and, for WAE-GAN, first the latent discriminator)."""
        x, _, _ = self._unpack(batch)
        self.train()
        out = {}
        z = self.encoder(x)
        pz = torch.randn_like(z)
        if self.penalty == "gan":
            d_loss = self.reg_weight * discriminator_loss(self.latent_discriminator(pz),
                                                          self.latent_discriminator(z.detach()))
            self.disc_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_optimizer.step()
            out["d_loss"] = d_loss.item()
            pen = generator_loss(self.latent_discriminator(z))
        else:
            pen = mmd(z, pz, kernel=self.kernel)
        recon = self._recon(x, self.decoder(z))
        loss = recon + self.reg_weight * pen
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self._ae_parameters())
        self.optimizer.step()
        self.step_count += 1
        self._update_latent_moments(z)
        return {"loss": loss.item(), "recon": recon.item(), "penalty": pen.item(), **out}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded prior draws ``z ~ N(0, I)``, ``[n, C, H, W]`` in [-1, 1]."""
        n = check_int("n", n, lo=0)
        return self.decode(gaussian_noise((n, self.latent_dim), generator, self.device)).clamp(-1, 1)


class WAEGAN(WAE):
    """WAE-GAN: :class:`WAE` with ``penalty="gan"`` (a latent discriminator); same arguments,
    ``reg_weight`` 1 by default. Source: Tolstikhin et al. 2018, Algorithm 1."""

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 8, hidden=(256,), lr: float = 1e-3,
                 penalty: str = "gan", kernel: str = "imq", reg_weight: float | None = None,
                 disc_hidden=(128, 128), lr_disc: float = 5e-4):
        if penalty != "gan":
            raise ValueError(f"penalty must be 'gan' for WAEGAN (use WAE for MMD), got {penalty!r}")
        super().__init__(image_shape, latent_dim, hidden, lr, "gan", kernel, reg_weight, disc_hidden, lr_disc)


# ----------------------------------------------------------------------------- GLO
class GLO(ZooModel):
    """Generative latent optimisation: a generator and one free code per training image.

    Codes ``z_i`` (``[num_examples, latent_dim]``) are optimised jointly with the generator
    ``G`` on ``||x_i - G(z_i)||^2`` and projected back onto the unit ball after every step.
    Sampling decodes draws from a full-covariance Gaussian fitted to the codes.

    Args:
        num_examples: size N of the training set (one code per image), >= 1.
        image_shape: ``(C, H, W)``.
        latent_dim: code size, >= 1.
        hidden: hidden widths of the MLP generator.
        lr: Adam learning rate of the generator.
        lr_codes: SparseAdam learning rate of the codes (only the batch's rows change).

    ``training_step(batch)`` needs ``batch = (images, labels_or_None, indices)``, the indices
    ``[B]`` int64 in ``[0, N)`` naming each image's code (what :meth:`fit` passes); it returns
    ``{"loss", "recon"}``.

    Source: Bojanowski, Joulin, Lopez-Paz & Szlam 2018, "Optimizing the Latent Space of
    Generative Networks", eq. 2, sec. 3.1 (projection), sec. 3.3 (Gaussian fit for sampling).
    """

    def __init__(self, num_examples: int, image_shape=(1, 8, 8), latent_dim: int = 16, hidden=(256,),
                 lr: float = 1e-3, lr_codes: float = 1e-2):
        num_examples = check_int("num_examples", num_examples, lo=1)
        latent_dim = check_int("latent_dim", latent_dim, lo=1)
        hidden = check_hidden("hidden", hidden)
        lr = check_number("lr", lr, lo=0.0, lo_open=True, float32=False)
        lr_codes = check_number("lr_codes", lr_codes, lo=0.0, lo_open=True, float32=False)
        super().__init__(image_shape, {"num_examples": num_examples, "latent_dim": latent_dim,
                                       "hidden": list(hidden), "lr": lr, "lr_codes": lr_codes})
        self.num_examples, self.latent_dim = num_examples, latent_dim
        self.codes = nn.Embedding(num_examples, latent_dim, sparse=True)
        with torch.no_grad():
            self.codes.weight.normal_(0.0, 1.0 / math.sqrt(latent_dim))
            self._project()
        self.generator = nn.Sequential(mlp([latent_dim, *reversed(hidden), self.num_pixels]), nn.Tanh(),
                                       nn.Unflatten(1, self.image_shape))
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr)
        self.code_optimizer = torch.optim.SparseAdam(list(self.codes.parameters()), lr=lr_codes)

    @torch.no_grad()
    def _project(self, rows: torch.Tensor | None = None) -> None:
        w = self.codes.weight
        z = w if rows is None else w[rows]
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1.0)
        if rows is None:
            w.copy_(z)
        else:
            w[rows] = z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in [-1, 1] from codes ``z`` ``[B, latent_dim]``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}], got {tuple(getattr(z, 'shape', ()))}")
        return self.generator(z.to(self.device, torch.float32))

    def training_step(self, batch) -> dict[str, float]:
        """One joint step of the generator and the batch's codes, then the projection."""
        x, _, idx = self._unpack(batch)
        if idx is None:
            raise ValueError("batch must be (images, labels, indices) for GLO: the indices name each image's code")
        if int(idx.min()) < 0 or int(idx.max()) >= self.num_examples:
            raise ValueError(f"batch indices must be in [0, {self.num_examples}), "
                             f"got [{int(idx.min())}, {int(idx.max())}]")
        self.train()
        loss = (self.generator(self.codes(idx)) - x).pow(2).flatten(1).sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.code_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.code_optimizer.step()
        self._project(idx)
        self.step_count += 1
        return {"loss": loss.item(), "recon": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoded draws from ``N(mean, cov)`` of the codes, ``[n, C, H, W]`` in [-1, 1]."""
        n = check_int("n", n, lo=0)
        z = self.codes.weight
        mu = z.mean(0)
        eye = torch.eye(self.latent_dim, device=z.device)
        cov = torch.cov(z.T).reshape(self.latent_dim, self.latent_dim) + 1e-6 * eye
        evals, evecs = torch.linalg.eigh(cov)
        eps = gaussian_noise((n, self.latent_dim), generator, self.device)
        return self.decode(mu + eps @ (evecs * evals.clamp_min(0).sqrt()).T).clamp(-1, 1)
