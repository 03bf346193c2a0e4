"""scikit-learn estimators on genfast's kernels.

:class:`BernoulliRBM` is a drop-in for ``sklearn.neural_network.BernoulliRBM``: the same
constructor arguments, fitted attributes and methods, NumPy in and out, usable in a
``Pipeline`` and in ``GridSearchCV``. ``fit`` runs each epoch of PCD-k in one call of the
fused op :func:`genfast.ops.pcd_epoch` (all mini-batch updates in C++ on the CPU: at the default
10 rows per mini-batch, Python and dispatch would otherwise cost more than the arithmetic);
CD-k and ``gibbs`` run :func:`genfast.ops.gibbs` with in-place torch products.

Differences from scikit-learn, on purpose:

* Random numbers come from genfast's Philox stream (keyed by a seed drawn from
  ``random_state``), not NumPy's: for one ``random_state`` the initial ``components_`` equal
  scikit-learn's (drawn by NumPy as there), the chains do not (they agree in distribution).
  ``score_samples`` corrupts the same features as scikit-learn for the same ``random_state``.
* The persistent chain is kept in the visible layer: each mini-batch runs ``k`` full Gibbs
  steps ``v -> h -> v`` from the previous negative sample under the current parameters
  (Tieleman 2008), where scikit-learn keeps the hidden sample drawn before its update.
  ``h_samples_`` holds the hidden sample the last negative visible sample was drawn from.
* Sparse input is accepted and densified (the kernels are dense).
* ``gibbs`` and ``h_samples_`` are 0/1 in the fitted dtype (``gibbs`` returns a bool array, as
  scikit-learn's).
"""

from __future__ import annotations

import numbers
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state, gen_even_slices
from sklearn.utils.validation import check_is_fitted, validate_data

from genfast._checks import check_int

__all__ = ["BernoulliRBM", "GaussianBernoulliRBM"]

_NP_TO_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _as_array(X):
    """torch tensors become NumPy arrays (on the CPU); everything else passes through."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        return X.float().numpy() if X.dtype in (torch.float16, torch.bfloat16) else X.numpy()
    return X


def _dense(X):
    return X.toarray() if hasattr(X, "toarray") else X


class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli restricted Boltzmann machine, scikit-learn's estimator on genfast's Gibbs op.

    Binary visible and hidden units, trained by persistent contrastive divergence (stochastic
    maximum likelihood; Tieleman 2008) or CD-k (Hinton 2002), as
    ``sklearn.neural_network.BernoulliRBM``, whose constructor arguments, fitted attributes and
    methods it mirrors. The update of one mini-batch ``v_pos`` [b, V] with negative sample
    ``v_neg`` [batch_size, V] is scikit-learn's: with ``h(v) = sigmoid(v W^T + c)``,
    ``W += lr / b (h(v_pos)^T v_pos - h(v_neg)^T v_neg)``, likewise for the biases.

    Args:
        n_components: number of hidden units H (int >= 1).
        learning_rate: step size (float > 0); scikit-learn's default 0.1.
        batch_size: rows per mini-batch and number of persistent chains (int >= 1).
        n_iter: passes over the data (int >= 0).
        verbose: print the pseudo-likelihood after each pass when > 0.
        random_state: None, an int or a ``numpy.random.RandomState``: draws the initial
            ``components_`` (as scikit-learn) and the Philox key of the chains.
        k: Gibbs steps per update (genfast extra; 1 as scikit-learn).
        persistent: keep the chains across mini-batches (PCD, scikit-learn's algorithm) or restart
            them at the data (CD-k) (genfast extra).
        device: torch device of the computation (None: the CPU) (genfast extra).
        backend: genfast backend of the Gibbs op, "auto" | "cpu" | "cuda" | "triton" | "torch" |
            "reference" or a variant such as "cuda:mma" (``genfast._backends.backend_values("gibbs")``)
            (genfast extra). All but "auto" and "reference" compute in float32: with them float64
            data is converted and the fit is float32.

    Attributes:
        components_: [H, V] weights, in the dtype of the training data (float32 or float64;
            float32 on the kernel backends).
        intercept_hidden_: [H] hidden biases. intercept_visible_: [V] visible biases.
        h_samples_: [batch_size, H] hidden sample of the persistent chains (0/1); with
            ``persistent=False``, of the last mini-batch's chains.
        n_features_in_: V. feature_names_in_: when fitted on a DataFrame with string columns.

    Raises:
        TypeError / ValueError (at ``fit``): a parameter of the wrong type or out of range, named
            in the message; input that ``sklearn.utils.validation`` rejects (NaN, inf, empty, 3-D).
    """

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.1,
        batch_size=10,
        n_iter=10,
        verbose=0,
        random_state=None,
        k=1,
        persistent=True,
        device=None,
        backend="auto",
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.k = k
        self.persistent = persistent
        self.device = device
        self.backend = backend

    # ------------------------------------------------------------------ helpers
    def _validate_params(self):
        check_int("n_components", self.n_components, op="BernoulliRBM", lo=1, numpy=True)
        check_int("batch_size", self.batch_size, op="BernoulliRBM", lo=1, numpy=True)
        check_int("n_iter", self.n_iter, op="BernoulliRBM", lo=0, numpy=True)
        check_int("k", self.k, op="BernoulliRBM", lo=1, numpy=True)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"BernoulliRBM: learning_rate must be a float, got {type(lr).__name__}")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"BernoulliRBM: learning_rate must be a finite float > 0, got {lr}")
        if not isinstance(self.persistent, (bool, np.bool_)):
            raise TypeError(f"BernoulliRBM: persistent must be a bool, got {type(self.persistent).__name__}")
        from genfast._backends import check_backend

        check_backend(self.backend, type(self).__name__, "gibbs")
        try:
            torch.device("cpu" if self.device is None else self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"BernoulliRBM: device must name a torch device, got {self.device!r}") from exc

    def _device(self):
        return torch.device("cpu" if self.device is None else self.device)

    # Visible units: Bernoulli here; GaussianBernoulliRBM overrides these two.
    _visible = "bernoulli"
    _score_name = "pseudo-likelihood"  # what score_samples returns (printed with verbose)

    def _sigma(self):
        return 1.0

    def _tensor(self, a, dtype=None):
        """A torch view (CPU, writable arrays) or copy of a NumPy array on the estimator's device."""
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        if not (a.flags.c_contiguous and a.flags.writeable):
            a = np.ascontiguousarray(a).copy()
        return torch.from_numpy(a).to(self._device())

    def _dtypes(self):
        """The dtypes the estimator fits in: float64 and float32 where the backend computes
        float64 ("auto", "reference"); float32 only on the others ("cpu", "cuda", "torch",
        "triton"), which compute in float32, so float64 data is converted there."""
        return (np.float64, np.float32) if self.backend in ("auto", "reference") else np.float32

    def _validate(self, X, *, reset, dtype=None):
        dtype = self._dtypes() if dtype is None else dtype
        X = validate_data(self, _as_array(X), accept_sparse=("csr", "csc", "coo"), reset=reset, dtype=dtype)
        return np.ascontiguousarray(_dense(X))

    def _params(self, dtype):
        """(W [H, V], b [V], c [H]) as torch tensors in ``dtype`` on the estimator's device."""
        return tuple(self._tensor(a, dtype) for a in (self.components_, self.intercept_visible_,
                                                       self.intercept_hidden_))

    def _next_offset(self, n):
        off = self._offset
        self._offset += int(n)
        return off

    # -------------------------------------------------------------- inference
    def transform(self, X):
        """Hidden activation probabilities ``p(h = 1 | v = X) = sigmoid(X W^T + c)``.

        Mirrors ``sklearn.neural_network.BernoulliRBM.transform``.

        Args:
            X: [n_samples, n_features] array-like, sparse matrix or torch tensor.

        Returns:
            ndarray [n_samples, n_components], float32 for float32 input, else float64.

        Raises:
            NotFittedError: before ``fit``. ValueError: wrong number of features, NaN or inf.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        w, _, c = self._params(X.dtype)
        with torch.no_grad():
            return torch.sigmoid(torch.addmm(c, self._tensor(X), w.T, alpha=1.0 / self._sigma())).cpu().numpy()

    def _free_energy(self, v, w, b, c):
        return -(v @ b) - torch.nn.functional.softplus(torch.addmm(c, v, w.T)).sum(1)

    def score_samples(self, X):
        """Stochastic pseudo-log-likelihood of each row (Besag 1975), as scikit-learn's.

        ``V * log sigmoid(F(x~) - F(x))`` with ``F`` the free energy and ``x~`` the row with one
        feature flipped, drawn by ``check_random_state(self.random_state).randint`` exactly as
        scikit-learn draws it (so an int ``random_state`` flips the same features).

        Args:
            X: [n_samples, n_features] binary data (not checked, as scikit-learn).

        Returns:
            ndarray [n_samples] in the dtype of X (float32 or float64).
        """
        check_is_fitted(self)
        v = self._validate(X, reset=False)
        rng = check_random_state(self.random_state)
        cols = rng.randint(0, v.shape[1], v.shape[0])
        w, b, c = self._params(v.dtype)
        with torch.no_grad():
            vt = self._tensor(v)
            vf = vt.clone()
            rows = torch.arange(v.shape[0], device=vt.device)
            ci = torch.from_numpy(cols).to(vt.device)
            vf[rows, ci] = 1 - vf[rows, ci]
            diff = self._free_energy(vf, w, b, c) - self._free_energy(vt, w, b, c)
            return (v.shape[1] * torch.nn.functional.logsigmoid(diff)).cpu().numpy()

    def gibbs(self, v):
        """One block-Gibbs step ``v -> h -> v'`` (one fused :func:`genfast.ops.gibbs` call).

        Mirrors ``sklearn.neural_network.BernoulliRBM.gibbs``; the draws come from the estimator's
        Philox stream, which each call advances.

        Args:
            v: [n_samples, n_features] visible states.

        Returns:
            ndarray [n_samples, n_features] of bool, the new visible sample.
        """
        check_is_fitted(self)
        v = self._validate(v, reset=False)
        self._ensure_stream()
        out = self._gibbs_chain(self._tensor(v), *self._params(v.dtype), k=1)
        return out.v.cpu().numpy().astype(bool)

    # ----------------------------------------------------------------- training
    def _ensure_stream(self):
        if not hasattr(self, "_seed"):
            rng = getattr(self, "random_state_", None) or check_random_state(self.random_state)
            self._seed = int(rng.randint(0, 2**31 - 1))
            self._offset = 0

    def _gibbs_chain(self, v, w, b, c, k):
        import genfast.ops as O

        off = self._next_offset(O.gibbs_num_counters(v.shape[0], v.shape[1], w.shape[0], k))
        return O.gibbs(v, w, b, c, k=k, seed=self._seed, offset=off, visible=self._visible, sigma=self._sigma(),
                       backend=self.backend)

    def _initialize(self, n_features, dtype, rng):
        self.components_ = np.ascontiguousarray(rng.normal(0, 0.01, (self.n_components, n_features)), dtype=dtype)
        self._n_features_out = self.components_.shape[0]
        self.intercept_hidden_ = np.zeros(self.n_components, dtype=dtype)
        self.intercept_visible_ = np.zeros(n_features, dtype=dtype)
        self.h_samples_ = np.zeros((self.batch_size, self.n_components), dtype=dtype)
        self._seed = int(rng.randint(0, 2**31 - 1))
        self._offset = 0
        self._v_chain = None

    def fit(self, X, y=None):
        """Fit the model to X by ``n_iter`` passes of mini-batch PCD-k (CD-k if not persistent).

        Mirrors ``sklearn.neural_network.BernoulliRBM.fit``: the same initialisation
        (``N(0, 0.01^2)`` weights drawn from ``random_state``, zero biases), the same mini-batches
        (``gen_even_slices``, in order), the same update rule.

        Args:
            X: [n_samples, n_features] array-like, sparse matrix or torch tensor, values in
                [0, 1]; float32 trains in float32, anything else in float64.
            y: ignored.

        Returns:
            self.

        Raises:
            TypeError / ValueError: a bad parameter (named) or input.
        """
        self._validate_params()
        X = self._validate(X, reset=True)
        rng = check_random_state(self.random_state)
        self._initialize(X.shape[1], X.dtype, rng)
        n = X.shape[0]
        n_batches = int(np.ceil(n / self.batch_size))
        slices = list(gen_even_slices(n_batches * self.batch_size, n_batches, n_samples=n))
        state = self._state(X.dtype)
        xt = self._tensor(X)
        begin = time.time()
        for it in range(1, self.n_iter + 1):
            if self.persistent:  # the whole epoch in one op call (C++ on the CPU)
                self._fit_epoch(xt, state, self.batch_size)
            else:
                for sl in slices:
                    self._fit_batch(xt[sl], state)
            if self.verbose:
                self._store(state)
                end = time.time()
                print(f"[{type(self).__name__}] Iteration {it}, {self._score_name} = "
                      f"{self.score_samples(X).mean():.2f}, time = {end - begin:.2f}s")
                begin = end
        self._store(state)
        return self

    def partial_fit(self, X, y=None):
        """One PCD-k update on the mini-batch X (all its rows), as scikit-learn's ``partial_fit``.

        Args:
            X: [n_samples, n_features] training data. y: ignored.

        Returns:
            self.
        """
        self._validate_params()
        first = not hasattr(self, "components_")
        kernel_only = self._dtypes() is np.float32
        X = self._validate(X, reset=first, dtype=np.float32 if kernel_only else
                           (np.float64 if first else (np.float64, np.float32)))
        if first:
            if not hasattr(self, "random_state_"):
                self.random_state_ = check_random_state(self.random_state)
            self._initialize(X.shape[1], np.float32 if kernel_only else np.float64, self.random_state_)
        dtype = self.components_.dtype
        state = self._state(dtype)
        if self.persistent:  # one mini-batch of all the rows of X
            self._fit_epoch(self._tensor(X, dtype), state, X.shape[0])
        else:
            self._fit_batch(self._tensor(X, dtype), state)
        self._store(state)
        return self

    def _state(self, dtype):
        """Torch working copies of the parameters and the chains for a training run."""
        self._ensure_stream()
        w, b, c = self._params(dtype)
        vc = getattr(self, "_v_chain", None)
        if vc is not None and vc.shape != (self.batch_size, w.shape[1]):
            vc = None
        return {"w": w, "b": b, "c": c, "v": None if vc is None else self._tensor(vc, dtype), "h": None,
                "sign": {}}

    def _store(self, s):
        self.components_ = s["w"].cpu().numpy()
        self.intercept_visible_ = s["b"].cpu().numpy()
        self.intercept_hidden_ = s["c"].cpu().numpy()
        if s["v"] is not None:
            self._v_chain = s["v"].cpu().numpy()
        if s["h"] is not None:
            self.h_samples_ = s["h"].cpu().numpy()

    @torch.no_grad()
    def _fit_epoch(self, x, s, batch_size):
        """One pass of PCD-k over the rows of x in mini-batches of ``batch_size``, in one
        :func:`genfast.ops.pcd_epoch` call (the updates of :meth:`_fit_batch`, same draws)."""
        import genfast.ops as O

        if s["v"] is None:
            s["v"] = self._initial_chains(s["b"])
        w = s["w"]
        off = self._next_offset(O.pcd_epoch_num_counters(x.shape[0], batch_size, s["v"].shape[0], w.shape[1],
                                                         w.shape[0], self.k))
        out = O.pcd_epoch(x, w, s["b"], s["c"], s["v"], batch_size=batch_size, learning_rate=self.learning_rate,
                          k=self.k, seed=self._seed, offset=off, visible=self._visible, sigma=self._sigma(),
                          backend=self.backend)
        s["w"], s["b"], s["c"], s["v"], s["h"] = out

    @torch.no_grad()
    def _fit_batch(self, v_pos, s):
        """One CD-k update (``persistent=False``): the chains start at the data, and the negative
        statistics are those of their k-th visible sample ``(v_neg, p(h | v_neg))``. (PCD runs
        whole epochs in :meth:`_fit_epoch`.)"""
        w, b, c = s["w"], s["b"], s["c"]
        nb = v_pos.shape[0]
        lr = float(self.learning_rate) / nb
        inv_s = 1.0 / self._sigma()  # Gaussian visible units: the statistics are v / sigma (Hinton 2010, 13.2)
        out = self._gibbs_chain(v_pos, w, b, c, self.k)
        stacked = torch.cat([v_pos, out.v])
        hs = torch.addmm(c, stacked, w.T, alpha=inv_s).sigmoid_()
        s["h"] = out.h
        # +1 for the data rows, -1 for the chains: one product updates W, two vector products the biases
        n = stacked.shape[0]
        if n not in s["sign"]:
            s["sign"][n] = (torch.cat([w.new_ones(nb), -w.new_ones(n - nb)]), w.new_ones(n))
        sign, ones = s["sign"][n]
        signed = stacked * sign[:, None]
        w.addmm_(hs.T, signed, alpha=lr * inv_s)
        c.addmv_(hs.T, sign, alpha=lr)
        b.addmv_(signed.T, ones, alpha=lr * inv_s * inv_s)

    def _initial_chains(self, b):
        """scikit-learn's chains start at h = 0, so their first visible sample is v ~ sigmoid(b)."""
        import genfast.ops as O

        p = torch.sigmoid(b).expand(self.batch_size, -1)
        u = O.rand(tuple(p.shape), seed=self._seed, offset=self._next_offset(p.numel()), device=p.device)
        return (u.to(p.dtype) < p).to(p.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class GaussianBernoulliRBM(BernoulliRBM):
    """Gaussian-Bernoulli RBM as a scikit-learn estimator, on genfast's Gibbs op.

    Real visible units with fixed standard deviation ``sigma`` and binary hidden units (Hinton
    2010, "A practical guide to training RBMs", section 13.2): energy
    ``E(v, h) = |v - b|^2 / (2 sigma^2) - c.h - (v / sigma) W^T h``, so
    ``p(h = 1 | v) = sigmoid(c + v W^T / sigma)`` and ``v | h ~ N(b + sigma h W, sigma^2 I)``.
    scikit-learn has no such estimator; this one follows :class:`BernoulliRBM`'s conventions
    (arguments, fitted attributes, ``fit``/``partial_fit``/``transform``/``gibbs``) with one
    extra argument, ``sigma``. Standardise the data (``StandardScaler``) and keep ``sigma = 1``,
    as the guide advises. PCD / CD-k updates with ``h(v) = sigmoid(c + v W^T / sigma)``:
    ``W += lr / b (h(v_pos)^T v_pos - h(v_neg)^T v_neg) / sigma``,
    ``b += lr / b sum(v_pos - v_neg) / sigma^2``, ``c += lr / b sum(h(v_pos) - h(v_neg))``.

    Args:
        n_components, batch_size, n_iter, verbose, random_state, k, persistent, device,
            backend: as :class:`BernoulliRBM`.
        learning_rate: step size (float > 0); default 0.01 (Gaussian units need a smaller step
            than binary ones, Hinton 2010, 13.2).
        sigma: standard deviation of the visible units (finite float > 0).

    Attributes:
        as :class:`BernoulliRBM`; ``h_samples_`` is 0/1.

    Methods that differ from :class:`BernoulliRBM`:
        ``gibbs(v)`` returns the new real-valued visible sample (float array, not bool);
        ``score_samples(X)`` returns ``-F(x)``, the unnormalised log-density
        (``log p(x) + log Z``; ``F(v) = |v - b|^2 / (2 sigma^2) - sum_j softplus(c_j + W_j v / sigma)``):
        a pseudo-likelihood has no closed form for real units, and ``log Z`` is the same for
        every row, so the scores rank rows as the log-likelihood does. The chains start at
        ``v ~ N(b, sigma^2)`` (h = 0).

    Raises:
        TypeError / ValueError (at ``fit``): as :class:`BernoulliRBM`, and ``sigma`` not a finite
            float > 0.
    """

    _visible = "gaussian"
    _score_name = "unnormalised log-density"

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.01,
        batch_size=10,
        n_iter=10,
        verbose=0,
        random_state=None,
        k=1,
        persistent=True,
        device=None,
        backend="auto",
        sigma=1.0,
    ):
        super().__init__(n_components, learning_rate=learning_rate, batch_size=batch_size, n_iter=n_iter,
                         verbose=verbose, random_state=random_state, k=k, persistent=persistent, device=device,
                         backend=backend)
        self.sigma = sigma

    def _validate_params(self):
        super()._validate_params()
        s = self.sigma
        if isinstance(s, bool) or not isinstance(s, numbers.Real):
            raise TypeError(f"GaussianBernoulliRBM: sigma must be a float, got {type(s).__name__}")
        if not (np.isfinite(s) and s > 0):
            raise ValueError(f"GaussianBernoulliRBM: sigma must be a finite float > 0, got {s}")

    def _sigma(self):
        return float(self.sigma)

    def _free_energy(self, v, w, b, c):
        s = self._sigma()
        quad = ((v - b) ** 2).sum(1) / (2 * s * s)
        return quad - torch.nn.functional.softplus(torch.addmm(c, v, w.T, alpha=1.0 / s)).sum(1)

    def score_samples(self, X):
        """Unnormalised log-density ``-F(x)`` of each row (see the class docstring).

        Args:
            X: [n_samples, n_features] real data.

        Returns:
            ndarray [n_samples] in the dtype of the fit.

        Raises:
            NotFittedError: before ``fit``. ValueError: wrong number of features, NaN or inf.
        """
        check_is_fitted(self)
        v = self._validate(X, reset=False)
        w, b, c = self._params(v.dtype)
        with torch.no_grad():
            return (-self._free_energy(self._tensor(v), w, b, c)).cpu().numpy()

    def gibbs(self, v):
        """One block-Gibbs step ``v -> h -> v'`` (one fused :func:`genfast.ops.gibbs` call).

        Args:
            v: [n_samples, n_features] visible states.

        Returns:
            ndarray [n_samples, n_features], the new real-valued visible sample.
        """
        check_is_fitted(self)
        v = self._validate(v, reset=False)
        self._ensure_stream()
        return self._gibbs_chain(self._tensor(v), *self._params(v.dtype), k=1).v.cpu().numpy()

    def _initial_chains(self, b):
        """The chains start at h = 0, so their first visible sample is v ~ N(b, sigma^2)."""
        import genfast.ops as O

        shape = (self.batch_size, b.shape[0])
        z = O.randn(shape, seed=self._seed, offset=self._next_offset(shape[0] * shape[1]), device=b.device,
                    backend=self.backend)
        return b + self._sigma() * z.to(b.dtype)
