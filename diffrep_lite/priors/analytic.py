"""Exact analytic priors: the optimal denoiser of a Gaussian or a Gaussian mixture, in closed form.

For data ``x0 ~ p0`` and VE noise ``x = x0 + sigma * eps``, the marginal is ``p0 * N(0, sigma^2 I)``
and the optimal noise prediction is ``eps_hat = (x - E[x0 | x]) / sigma``. For the priors below
``E[x0 | x]`` is known exactly, so samplers can be checked against exact answers.
"""
from __future__ import annotations

import math

import torch

from ..schedule import Schedule
from ..validation import check_dtype, check_finite_values
from .base import Prior, _bcast, classifier_free_guidance

__all__ = ["Gaussian", "GaussianMixture", "ClassConditionalMixture"]


def _default_schedule(schedule):
    if schedule is None:
        return Schedule.named("squaredcos_cap_v2")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a diffrep_lite.Schedule, got {type(schedule).__name__}")
    return schedule


class Gaussian(Prior):
    """``N(mean, cov)`` over vectors of dimension ``D`` (full covariance), or over arrays of
    ``data_shape`` (then ``mean`` has that shape and ``cov`` is ``[D, D]`` with ``D = prod(data_shape)``).

    ``E[x0 | x] = mean + cov (cov + sigma^2 I)^{-1} (x - mean)``, computed with one eigendecomposition.
    The default schedule is the cosine one (``squaredcos_cap_v2``), whose ``sigma_max`` is large enough
    that starting from ``N(0, sigma_max^2 I)`` is exact to float precision (see the "trap" in the book).
    """

    def __init__(self, mean, cov, *, schedule: Schedule | None = None, data_shape=None,
                 dtype=torch.float32, device="cpu"):
        check_dtype(dtype)
        mean = check_finite_values(mean, "mean")
        data_shape = tuple(mean.shape) if data_shape is None else tuple(data_shape)
        D = math.prod(data_shape)
        if mean.numel() != D:
            raise ValueError(f"mean has {mean.numel()} entries, data_shape {data_shape} needs {D}")
        cov = check_finite_values(cov, "cov")
        if cov.shape != (D, D):
            raise ValueError(f"cov must be [{D}, {D}], got {list(cov.shape)}")
        if not torch.allclose(cov, cov.T, atol=1e-10):
            raise ValueError("cov must be symmetric")
        evals, evecs = torch.linalg.eigh(cov)
        if evals.min() < -1e-10:
            raise ValueError(f"cov must be positive semi-definite (smallest eigenvalue {evals.min().item():.3g})")
        self.schedule = _default_schedule(schedule)
        self.data_shape = data_shape
        self.dtype, self.device = dtype, torch.device(device)
        self.mean = mean.reshape(D).to(dtype=dtype, device=self.device)
        self.cov = cov.to(dtype=dtype, device=self.device)
        self._evals = evals.clamp_min(0).to(dtype=dtype, device=self.device)
        self._evecs = evecs.to(dtype=dtype, device=self.device)

    @property
    def data_radius(self) -> float:
        """``max |mean| + 6 sqrt(largest eigenvalue of cov)``: where the data lie."""
        return float(self.mean.abs().max() + 6 * self._evals.max().sqrt())

    def marginal(self, sigma: float):
        """Mean and covariance of the noisy marginal at VE level ``sigma``."""
        D = self.mean.numel()
        return self.mean, self.cov + sigma**2 * torch.eye(D, dtype=self.dtype, device=self.device)

    def _eps(self, x, sigma, cond, guidance_scale):
        B = x.shape[0]
        xf = x.reshape(B, -1)
        d = xf - self.mean
        coef = self._evals[None] / (self._evals[None] + sigma[:, None] ** 2)  # [B, D]
        x0 = self.mean + ((d @ self._evecs) * coef) @ self._evecs.T
        return ((xf - x0) / sigma[:, None]).reshape(x.shape)


class GaussianMixture(Prior):
    """``sum_k w_k N(means_k, diag(vars_k))`` over vectors or flattened images.

    Args:
        weights: ``[K]`` non-negative mixture weights (normalised here).
        means: ``[K, *data_shape]`` component means.
        variances: per-component variances: a float (shared isotropic), ``[K]`` (isotropic per
            component) or ``[K, *data_shape]`` (diagonal).

    ``E[x0 | x] = sum_k p(k | x) (mu_k + v_k / (v_k + sigma^2) (x - mu_k))`` with
    ``p(k | x) ∝ w_k N(x; mu_k, diag(v_k + sigma^2))`` — exact for every ``sigma``.
    """

    def __init__(self, weights, means, variances, *, schedule: Schedule | None = None,
                 dtype=torch.float32, device="cpu"):
        check_dtype(dtype)
        means = check_finite_values(means, "means")
        if means.ndim < 2:
            raise ValueError(f"means must be [K, *data_shape], got shape {list(means.shape)}")
        K = means.shape[0]
        weights = check_finite_values(weights, "weights").flatten()
        if weights.numel() != K:
            raise ValueError(f"weights must have K={K} entries, got {weights.numel()}")
        if torch.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        D = math.prod(means.shape[1:])
        v = check_finite_values(variances, "variances")
        if v.ndim == 0:
            v = v.expand(K, D)
        elif v.shape == (K,):
            v = v[:, None].expand(K, D)
        elif v.shape == means.shape:
            v = v.reshape(K, D)
        else:
            raise ValueError(
                f"variances must be a float, [K]={[K]} or [K, *data_shape]={list(means.shape)}, got {list(v.shape)}"
            )
        if torch.any(v < 0):
            raise ValueError("variances must be >= 0")
        self.schedule = _default_schedule(schedule)
        self.data_shape = tuple(means.shape[1:])
        self.dtype, self.device = dtype, torch.device(device)
        kw = dict(dtype=dtype, device=self.device)
        self.weights = (weights / weights.sum()).to(**kw)
        self.means = means.reshape(K, D).to(**kw)
        self.variances = v.contiguous().to(**kw)
        # Isotropic components (one variance per component, the usual mixture over points or images): the
        # posterior and the denoiser then need only [B, K] arrays, not [B, K, D] ones (O(B K) memory instead of
        # O(B K D); the distances come from one cdist), with the same formulas.
        iso = bool(torch.all(self.variances == self.variances[:, :1]))
        self._iso_var = self.variances[:, 0].clone() if iso else None

    @property
    def data_radius(self) -> float:
        """``max |mean| + 6 sqrt(largest variance)`` over the components: where the data lie."""
        return float(self.means.abs().max() + 6 * self.variances.max().sqrt())

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def responsibilities(self, x, sigma) -> torch.Tensor:
        """Posterior ``p(k | x)`` at VE level ``sigma`` (``sigma = 0`` allowed for clean points), ``[B, K]``."""
        B = x.shape[0]
        xf = x.reshape(B, -1).to(self.dtype)
        s2 = torch.as_tensor(sigma, dtype=self.dtype, device=xf.device).reshape(-1)
        s2 = (s2.expand(B) if s2.numel() == 1 else s2)[:, None, None] ** 2
        logw = self.weights.clamp_min(1e-300).log()[None]
        if self._iso_var is not None:
            var = (self._iso_var[None] + s2[..., 0]).clamp_min(1e-30)  # [B, K]
            # squared distances from differences, not from |x|^2 - 2 x.mu + |mu|^2, which cancels badly near a mean
            d2 = torch.cdist(xf[None], self.means[None], compute_mode="donot_use_mm_for_euclid_dist")[0] ** 2
            return torch.softmax(-0.5 * (d2 / var + xf.shape[1] * var.log()) + logw, dim=1)
        var = self.variances[None] + s2  # [B, K, D]
        var = var.clamp_min(1e-30)
        d = xf[:, None, :] - self.means[None]
        logp = -0.5 * ((d * d) / var + var.log()).sum(-1) + logw
        return torch.softmax(logp, dim=1)

    def nearest_component(self, x) -> torch.Tensor:
        """Index of the most probable component for clean points ``x`` (``[B]`` long)."""
        return self.responsibilities(x, 0.0).argmax(1)

    def _eps(self, x, sigma, cond, guidance_scale):
        B = x.shape[0]
        xf = x.reshape(B, -1)
        r = self.responsibilities(x, sigma)  # [B, K]
        if self._iso_var is not None:
            shrink = self._iso_var[None] / (self._iso_var[None] + sigma[:, None] ** 2)  # [B, K]
            x0 = (r * (1 - shrink)) @ self.means + (r * shrink).sum(1, keepdim=True) * xf
            return ((xf - x0) / _bcast(sigma, xf)).reshape(x.shape)
        s2 = sigma[:, None, None] ** 2
        shrink = self.variances[None] / (self.variances[None] + s2)  # [B, K, D]
        comp_x0 = self.means[None] + shrink * (xf[:, None, :] - self.means[None])
        x0 = (r[..., None] * comp_x0).sum(1)
        return ((xf - x0) / _bcast(sigma, xf)).reshape(x.shape)


def _eps_by_condition(x, sigma, keys, mixture_of):
    """``eps_hat`` of inputs ``x`` ``[B, ...]`` whose exact prior depends on a condition: ``keys[i]`` is the
    (hashable) condition of input ``i`` and ``mixture_of(key)`` its :class:`GaussianMixture`. Each condition's
    inputs go through one call."""
    out = torch.empty_like(x)
    for key in dict.fromkeys(keys):
        idx = torch.tensor([i for i, k in enumerate(keys) if k == key], device=x.device)
        out[idx] = mixture_of(key)._eps(x[idx], sigma[idx], None, None)
    return out


class ClassConditionalMixture(Prior):
    """An exact class-conditional Gaussian mixture with classifier-free guidance: ``p(x | c)`` is the mixture of
    the components labelled ``c``, ``p(x)`` the mixture of all of them.

    Args:
        means: ``[K, *data_shape]`` component means (e.g. the training images themselves).
        labels: ``[K]`` the class of each component, integers in ``[0, n_classes)``.
        variances: as :class:`GaussianMixture` (a float, ``[K]`` or ``[K, *data_shape]``); ``0`` puts a point
            mass on each mean (the exact prior over a finite data set).
        weights: ``[K]`` non-negative component weights (default: equal), so that ``p(c)`` is each class's
            share of the weight; within a class the weights are renormalised.
        n_classes: number of classes (default ``max(labels) + 1``); every class needs a component.

    ``cond`` is one class index per input, or None for the unconditional ``p(x)``. Under guidance scale ``s``
    the noise prediction is ``eps_u + s (eps_c - eps_u)`` with both terms exact, i.e. the score
    ``(1 - s) grad log p_sigma(x) + s grad log p_sigma(x | c)``: what a perfectly trained class-conditional
    model with a null label returns. With the training set as ``means`` and ``variances=0`` it shows what
    guidance does to the data themselves, with no model error.
    """

    conditional = True
    supports_guidance = True
    cfg_passes = 2
    view_cond_types = ()  # class labels, not views

    def __init__(self, means, labels, variances=0.0, *, weights=None, n_classes: int | None = None,
                 schedule: Schedule | None = None, dtype=torch.float32, device="cpu"):
        check_dtype(dtype)
        means = check_finite_values(means, "means")
        if means.ndim < 2:
            raise ValueError(f"means must be [K, *data_shape], got shape {list(means.shape)}")
        K = means.shape[0]
        labels = torch.as_tensor(labels)
        if labels.shape != (K,) or labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"labels must be K={K} integers, got {labels.dtype} of shape {list(labels.shape)}")
        labels = labels.long()
        if labels.min() < 0:
            raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
        n = int(labels.max()) + 1 if n_classes is None else n_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < int(labels.max()) + 1:
            raise ValueError(f"n_classes must be an int >= max(labels) + 1 = {int(labels.max()) + 1}, got {n_classes!r}")
        empty = torch.nonzero(torch.bincount(labels, minlength=n) == 0).flatten().tolist()
        if empty:
            raise ValueError(f"every class in [0, {n}) needs a component; none for class(es) {empty}")
        weights = torch.ones(K, dtype=torch.float64) if weights is None else check_finite_values(weights, "weights")
        if weights.shape != (K,):
            raise ValueError(f"weights must have K={K} entries, got shape {list(weights.shape)}")
        v = check_finite_values(variances, "variances")
        per_comp = v.ndim > 0 and v.shape[0] == K
        kw = dict(schedule=_default_schedule(schedule), dtype=dtype, device=device)
        self.unconditional = GaussianMixture(weights, means, v, **kw)
        in_class = [labels == c for c in range(n)]
        self.classes = [GaussianMixture(weights[m], means[m], v[m] if per_comp else v, **kw) for m in in_class]
        self.n_classes = n
        self.class_weights = torch.bincount(labels, weights=weights, minlength=n) / weights.sum()
        self.schedule, self.data_shape = self.unconditional.schedule, self.unconditional.data_shape
        self.dtype, self.device = dtype, torch.device(device)

    def check_cond(self, cond, batch=None):
        super().check_cond(cond, batch)
        if cond is None:
            return
        try:
            c = torch.as_tensor(cond)
        except (TypeError, ValueError, RuntimeError):
            c = None
        if c is None or c.is_floating_point() or c.is_complex() or c.ndim != 1 or (c.numel() and (c.min() < 0 or c.max() >= self.n_classes)):
            raise ValueError(f"cond must be one class index in [0, {self.n_classes}) per input (or None for the "
                             f"unconditional prior), got {cond!r}")

    def _eps(self, x, sigma, cond, guidance_scale):
        if cond is None:
            return self.unconditional._eps(x, sigma, None, None)

        def eps_of(*conds):  # None: the unconditional mixture; else one class index per input
            return torch.cat([self.unconditional._eps(x, sigma, None, None) if c is None else
                              _eps_by_condition(x, sigma, c, self.classes.__getitem__) for c in conds])

        return classifier_free_guidance(eps_of, torch.as_tensor(cond).tolist(), None, guidance_scale)
