"""Frechet digit distance: FID's recipe with a small digit classifier in place of Inception.

A small convolutional classifier is trained once on the train split (seeded) and cached as a
safetensors file in the user's cache directory (:func:`genfast.data.cache_dir`). Generated images
and the test split are embedded with its penultimate layer, and the Frechet distance between the
Gaussians fitted to the two sets of features is reported (Heusel et al., 2017, with this
classifier in place of Inception-v3, as the MNIST literature does with LeNet features). To read
the number, :class:`DigitMetric` also gives the classifier's test accuracy, a floor (train split
vs test split: real data) and a ceiling (uniform noise vs test split), both at the sample count
being scored since the Frechet distance of a finite sample is biased upwards as ``1/N``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genfast._checks import check_image_batch

from .frechet import frechet_distance, gaussian_stats

__all__ = ["DigitClassifier", "DigitMetric"]

_VERSION = 1  # bump when the architecture or the training recipe changes: old caches are ignored


class DigitClassifier(nn.Module):
    """A small convolutional classifier whose penultimate layer embeds images for the metric.

    conv3x3(32) - ReLU - conv3x3(64) - ReLU - maxpool2 - conv3x3(64) - ReLU - adaptive avgpool to
    2x2 - linear(feature_dim) - ReLU [features] - dropout - linear(num_classes) [logits].
    The adaptive pooling lets the same network take 8x8 digits or 28x28 MNIST.

    Args:
        in_channels: image channels C.
        num_classes: number of classes K.
        feature_dim: width D of the penultimate layer (the embedding).

    Source: a LeNet-style network (LeCun et al., 1998); the embedding plays the role of
    Inception's pool3 features in FID (Heusel et al., 2017).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, feature_dim: int = 64):
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("feature_dim", feature_dim),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "feature_dim": feature_dim}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(256, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``[N, D]`` of images ``[N, C, H, W]`` in [-1, 1]."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, K]`` of images ``[N, C, H, W]`` in [-1, 1]."""
        return self.head(self.body(images))


def _check_images(images, name: str, shape: tuple[int, ...] | None = None, min_n: int = 1) -> torch.Tensor:
    check_image_batch(images, name)
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} must be [N, {', '.join(map(str, shape))}], got shape {tuple(images.shape)}")
    if images.shape[0] < min_n:
        raise ValueError(f"{name} must hold at least {min_n} images, got {images.shape[0]}")
    return images


def _shift_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # random translations by up to one pixel: the classifier then generalises from 1437 digits
    pad = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def _train_classifier(
    train: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    epochs: int,
    device: torch.device,
    progress: bool,
) -> DigitClassifier:
    x, y = train
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(x.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = 64
    steps_per_epoch = math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="digit classifier", unit="epoch", leave=False)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch):
                idx = perm[i : i + batch]
                xb = _shift_augment(x[idx], g).to(device)
                loss = F.cross_entropy(model(xb), y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return model.eval()


class DigitMetric:
    """Frechet digit distance, class coverage and their floor and ceiling, for one data set.

    Build it with :meth:`from_data` (which trains or loads the cached classifier). Every method
    takes generated images ``[N, C, H, W]`` in [-1, 1] of the data set's shape.

    Args:
        classifier: a trained :class:`DigitClassifier`.
        train: ``(images [N, C, H, W] float32 in [-1, 1], labels [N] int64)``, the split the
            classifier was trained on; the floor draws from it.
        test: ``(images, labels)`` of the held-out split: the reference set of every distance.
        seed: seed of the random draws behind :meth:`floor` and :meth:`ceiling`.
        device: where the classifier runs.

    Source: FID (Heusel et al., 2017, eq. 6) with a digit classifier's features; class coverage
    as in "mode coverage" counts (Srivastava et al., 2017, VEEGAN; Metz et al., 2017).
    """

    def __init__(self, classifier: DigitClassifier, train, test, seed: int = 0, device=None):
        if not isinstance(classifier, DigitClassifier):
            raise TypeError(f"classifier must be a DigitClassifier, got {type(classifier).__name__}")
        self.device = torch.device(device) if device is not None else next(classifier.parameters()).device
        self.classifier = classifier.to(self.device).eval()
        self.num_classes = classifier.config["num_classes"]
        self.seed = int(seed)
        self.train_images = _check_images(train[0], "train images", min_n=2)
        self.test_images = _check_images(test[0], "test images", self.train_images.shape[1:], min_n=2)
        self.image_shape = tuple(self.train_images.shape[1:])
        self.train_labels, self.test_labels = train[1], test[1]
        self._train_features = self.features(self.train_images)
        self._test_features = self.features(self.test_images)
        self._test_stats = gaussian_stats(self._test_features)
        pred = self._predict_features(self._test_features)
        self.accuracy = (
            float((pred == self.test_labels.to(pred.device)).float().mean())
            if self.test_labels is not None
            else float("nan")
        )
        self._floor: dict = {}
        self._ceiling: dict = {}

    @classmethod
    def from_data(
        cls,
        train=None,
        test=None,
        *,
        num_classes: int | None = None,
        seed: int = 0,
        epochs: int = 30,
        cache: bool | str | os.PathLike = True,
        device=None,
        progress: bool = False,
    ) -> DigitMetric:
        """Builds the metric for a labelled data set, training the classifier or loading it.

        Args:
            train: ``(images [N, C, H, W] in [-1, 1], labels [N] int64)``; None for the bundled
                digits' train split (:func:`genfast.data.load_digits`).
            test: the held-out split, same form; None for the digits' test split.
            num_classes: K; None uses ``max(label) + 1`` over both splits.
            seed: seed of the classifier's initialisation, batches and augmentation.
            epochs: passes over the train split (30 reach about 98% test accuracy on the digits
                in about 10 s on two CPU cores).
            cache: True to load/store the weights in :func:`genfast.data.cache_dir`, a folder to
                use instead, or False to train every time. The file name holds a hash of the
                data, seed, epochs and architecture version, so other data never reuses it.
            device: where to train and run the classifier (default CPU).
            progress: show a tqdm bar while training.

        Returns:
            A :class:`DigitMetric`.

        Raises:
            ValueError: a split has no labels, or images and labels disagree in count.
        """
        from genfast.data import cache_dir, load_digits

        if train is None:
            train = load_digits("train")
        if test is None:
            test = load_digits("test")
        for name, split in (("train", train), ("test", test)):
            if len(split) != 2 or split[1] is None:
                raise ValueError(
                    f"{name} must be (images, labels) with labels; the metric needs a labelled data set"
                )
            _check_images(split[0], f"{name} images", min_n=2)
            if split[1].shape != (split[0].shape[0],):
                raise ValueError(
                    f"{name} labels must be [N] for N={split[0].shape[0]} images, got {tuple(split[1].shape)}"
                )
        if num_classes is None:
            num_classes = int(max(train[1].max(), test[1].max())) + 1
        device = torch.device(device if device is not None else "cpu")

        h = hashlib.sha1()
        for t in (train[0], train[1]):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps([_VERSION, seed, epochs, num_classes]).encode())
        key = h.hexdigest()[:16]
        path = None
        if cache:
            folder = cache_dir() if cache is True else Path(cache)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"digit_classifier-{key}.safetensors"

        model = None
        if path is not None and path.is_file():
            model = _load_classifier(path, train[0].shape[1], num_classes)
        if model is None:
            model = _train_classifier(train, num_classes, seed, epochs, device, progress)
            if path is not None:
                _save_classifier(model, path)
        return cls(model.to(device), train, test, seed=seed, device=device)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Penultimate-layer features of images.

        Args:
            images: ``[N, C, H, W]`` floating tensor in [-1, 1], the data set's shape.
            batch_size: images per classifier call.

        Returns:
            ``[N, D]`` float32 on the CPU.
        """
        images = _check_images(images, "images", getattr(self, "image_shape", None))
        out = [
            self.classifier.features(images[i : i + batch_size].to(self.device, torch.float32)).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out)

    def _predict_features(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier.head(feats.to(self.device)).argmax(1).cpu()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's label ``[N]`` int64 for each image ``[N, C, H, W]`` in [-1, 1]."""
        return self._predict_features(self.features(images))

    def frechet_distance(self, images: torch.Tensor) -> float:
        """Frechet digit distance of images to the test split (lower is better).

        Args:
            images: ``[N, C, H, W]`` floating tensor in [-1, 1], N >= 2.

        Returns:
            The Frechet distance between the Gaussians fitted to the images' features and to the
            test split's features (squared feature units). Compare it with :meth:`floor` and
            :meth:`ceiling` at the same N.

        Raises:
            TypeError / ValueError: ``images`` is not a floating [N, C, H, W] tensor of the data
                set's shape with N >= 2, or holds NaN/inf.
        """
        _check_images(images, "images", self.image_shape, min_n=2)
        mu, sigma = gaussian_stats(self.features(images))
        return frechet_distance(mu, sigma, *self._test_stats)

    def class_coverage(self, images: torch.Tensor) -> torch.Tensor:
        """Fraction of the images that the classifier assigns to each class (mode coverage).

        Args:
            images: ``[N, C, H, W]`` floating tensor in [-1, 1].

        Returns:
            ``[K]`` float64 fractions summing to 1; a class never predicted has 0.
        """
        pred = self.predict(images)
        return torch.bincount(pred, minlength=self.num_classes).double() / len(pred)

    def floor(self, n: int | None = None, draws: int = 5) -> float:
        """Distance of real images (the train split) to the test split: the best reachable value.

        Args:
            n: images per draw, normally the number of generated images being scored; None uses
                the whole train split once. A sample of N images has a Frechet distance biased
                upwards by about ``tr(sigma)/N``-order terms, so compare at the same N.
            draws: random subsets of size n averaged (seeded by ``seed``); ignored for n=None.

        Returns:
            The mean distance (float).

        Raises:
            ValueError: n < 2 or n larger than the train split.
        """
        n_train = len(self._train_features)
        if n is not None and not 2 <= int(n) <= n_train:
            raise ValueError(f"n must be in [2, {n_train}] (the train split's size) or None, got {n}")
        key = (None if n is None else int(n), int(draws))
        if key not in self._floor:
            if n is None:
                subsets = [self._train_features]
            else:
                g = torch.Generator().manual_seed(self.seed)
                subsets = [
                    self._train_features[torch.randperm(n_train, generator=g)[: int(n)]] for _ in range(draws)
                ]
            values = [frechet_distance(*gaussian_stats(f), *self._test_stats) for f in subsets]
            self._floor[key] = float(np.mean(values))
        return self._floor[key]

    def ceiling(self, n: int | None = None) -> float:
        """Distance of uniform noise images in [-1, 1] to the test split: a useless generator.

        Args:
            n: number of noise images (None: as many as the train split), N >= 2.

        Returns:
            The distance (float), seeded by ``seed``.

        Raises:
            ValueError: n < 2.
        """
        n = len(self._train_features) if n is None else int(n)
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        if n not in self._ceiling:
            g = torch.Generator().manual_seed(self.seed + 1)
            noise = torch.rand((n, *self.image_shape), generator=g) * 2 - 1
            self._ceiling[n] = self.frechet_distance(noise)
        return self._ceiling[n]

    def scores(self, images: torch.Tensor, metrics=("fdd",), *, kid_subsets: int = 100, kid_subset_size=None,
               k: int = 3, seed: int = 0) -> dict:
        """Chosen figures of generated images against the test split, on the classifier's features.

        Args:
            images: ``[N, C, H, W]`` floating tensor in [-1, 1], N >= 2.
            metrics: any of ``"fdd"`` (Frechet digit distance), ``"kid"`` (kernel inception
                distance on the same features, Binkowski et al. 2018: ``kid`` and ``kid_std``) and
                ``"precision-recall"`` (Kynkaanniemi et al. 2019, k nearest neighbours:
                ``precision`` and ``recall``).
            kid_subsets, kid_subset_size: KID's subsets (size default ``min(N, test size, 1000)``).
            k: the neighbourhood of precision/recall. seed: KID's subsets.

        Returns:
            dict of the figures asked for.

        Raises:
            ValueError: an unknown metric name (the message lists them), too few images.
        """
        from .kid import kernel_inception_distance
        from .manifold import precision_recall

        names = [metrics] if isinstance(metrics, str) else list(metrics)
        known = ("fdd", "kid", "precision-recall")
        bad = [m for m in names if m not in known]
        if bad:
            raise ValueError(f"metrics must be among {known}, got {bad}")
        feats = self.features(images)
        out = {}
        if "fdd" in names:
            out["fdd"] = self.frechet_distance(images)
        if "kid" in names:
            size = min(len(feats), len(self._test_features), 1000) if kid_subset_size is None else kid_subset_size
            g = torch.Generator().manual_seed(int(seed))
            out["kid"], out["kid_std"] = kernel_inception_distance(self._test_features, feats, subsets=kid_subsets,
                                                                   subset_size=size, generator=g)
        if "precision-recall" in names:
            out["precision"], out["recall"] = precision_recall(self._test_features, feats, k=k)
        return out

    def report(self, images: torch.Tensor) -> dict:
        """Every figure of the metric for one set of generated images.

        Args:
            images: ``[N, C, H, W]`` floating tensor in [-1, 1], N >= 2.

        Returns:
            dict with ``n``, ``fdd`` (Frechet digit distance), ``floor`` and ``ceiling`` at this N,
            ``ratio`` (fdd / floor), ``accuracy`` (classifier test accuracy), ``coverage`` (list of
            K fractions) and ``classes_present`` (classes predicted at least once).
        """
        n = len(images)
        fdd = self.frechet_distance(images)
        cov = self.class_coverage(images)
        floor = self.floor(min(n, len(self._train_features)))
        return {
            "n": n,
            "fdd": fdd,
            "floor": floor,
            "ceiling": self.ceiling(n),
            "ratio": fdd / floor if floor > 0 else float("inf"),
            "accuracy": self.accuracy,
            "coverage": cov.tolist(),
            "classes_present": int((cov > 0).sum()),
        }


def _save_classifier(model: DigitClassifier, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config), "version": str(_VERSION), "created": str(int(time.time()))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one


def _load_classifier(path: Path, in_channels: int, num_classes: int) -> DigitClassifier | None:
    """The cached classifier, or None (and a warning) when the file is unreadable or stale."""
    import warnings

    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = json.loads(meta["config"])
        model = DigitClassifier(**config)
        if config["in_channels"] != in_channels or config["num_classes"] != num_classes:
            raise ValueError("shape mismatch")
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # a corrupt cache must never stop the metric: retrain instead
        warnings.warn(f"ignoring unreadable classifier cache {path} ({exc}); retraining", stacklevel=3)
        return None
    return model.eval()
