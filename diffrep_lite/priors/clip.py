"""Clip the denoised estimate of any prior to its data range (diffusers' ``clip_sample``).

At the top of a cosine schedule (``sigma_max`` ~ 2e4 for 1000 ticks) ``x0_hat = x - sigma * eps_hat``
multiplies the network's tiny error in ``eps_hat`` by ``sigma``: the first denoised estimate is garbage of
size ~1e3. DDIM pipelines for pixel models clip ``x0_hat`` to ``[-1, 1]``; :class:`ClipDenoised` does the
same for any prior, returning ``eps = (x - clip(x0_hat)) / sigma``, so a diffrep fitted to ``x0_hat`` (DDR
convention B) is not thrown far out of range on the first step.
"""
from __future__ import annotations

import torch

from ..validation import check_real
from .base import Prior, _bcast

__all__ = ["ClipDenoised"]


class ClipDenoised(Prior):
    """``prior`` with its denoised estimate clipped to ``[lo, hi]``; everything else is ``prior``'s.

    Args:
        prior: any :class:`~diffrep_lite.priors.base.Prior` (its schedule, data shape, conditions,
            guidance and ``decode`` are used unchanged).
        lo, hi: the data range (``-1, 1`` for pixel DDPMs), ``lo < hi``.
    """

    def __init__(self, prior: Prior, lo: float = -1.0, hi: float = 1.0):
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a diffrep_lite Prior, got {type(prior).__name__}")
        lo, hi = check_real(lo, "lo"), check_real(hi, "hi")
        if not lo < hi:
            raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")
        self.prior, self.lo, self.hi = prior, float(lo), float(hi)
        self.schedule, self.data_shape = prior.schedule, prior.data_shape
        self.dtype, self.device = prior.dtype, prior.device
        self.conditional, self.supports_guidance = prior.conditional, prior.supports_guidance
        self.view_cond_types = getattr(prior, "view_cond_types", None)

    def check_cond(self, cond, batch=None):
        return self.prior.check_cond(cond, batch)

    def combine_cond(self, cond, view_cond):
        return self.prior.combine_cond(cond, view_cond)

    def evals_per_call(self, guidance_scale) -> int:
        return self.prior.evals_per_call(guidance_scale)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(x)

    def eps(self, x, sigma, cond=None, guidance_scale=None):
        """``(x - clip(x - sigma * eps_hat)) / sigma`` with ``eps_hat`` from the wrapped prior."""
        e = self.prior.eps(x, sigma, cond, guidance_scale)
        s = _bcast(self._sigma_vector(sigma, x.shape[0], x), x)
        x0 = (x - s * e).clamp(self.lo, self.hi)
        return (x - x0) / s
