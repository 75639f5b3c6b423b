"""Exact view-conditioned priors: one Gaussian mixture per view, with mixture weights shared by all views.

:class:`ViewMixture` is the one implementation. The scene is one of ``K`` known scenes (weights ``w_k``);
the view with condition ``c`` sees ``m_k(c)``, scene ``k`` as that view shows it, plus a little isotropic
Gaussian spread. The prior of that view is therefore the mixture

    p(x0 | c) = sum_k w_k N(x0; m_k(c), s^2 I),

whose exact denoiser is the Gaussian-mixture one (a cached
:class:`~diffrep_lite.priors.analytic.GaussianMixture` per view). Nothing in the prior couples the views: a
multi-view sampler must make them agree on one ``k`` through the shared parameters. Two priors specialise it:

* :class:`ViewConditionedMixture` -- ``K`` known wide panoramas; a view at column offset ``o`` sees the crop
  ``crop_o(P_k)`` (:meth:`nearest_panorama` and :meth:`overlap_disagreement` measure agreement);
* :class:`~diffrep_lite.priors.scenes.SceneMixture` -- ``K`` known 3-D scenes; view ``v`` sees
  ``render_v(scene_k)`` (the means are given per view).

The model side does not import the representation side: crops come from :mod:`diffrep_lite.crops`, and
renders are handed in as tensors.
"""
from __future__ import annotations

import math

import torch

from ..crops import Crops
from ..schedule import Schedule
from ..validation import check_finite_values, check_real
from .analytic import GaussianMixture, _default_schedule, _eps_by_condition
from .base import Prior

__all__ = ["ViewMixture", "ViewConditionedMixture", "random_panoramas"]


class ViewMixture(Prior):
    """``p(x | c) = sum_k w_k N(x; means(c)[k], diag(variances))``: one exact Gaussian mixture per view condition.

    Subclasses say what a condition is and what each view sees: :meth:`view_key` checks one condition and
    returns a hashable key (e.g. an offset taken modulo the canvas width), :meth:`view_means` the ``[K,
    *data_shape]`` component means of that view. The per-view mixtures are built on first use and cached.

    Args:
        weights: ``[K]`` non-negative mixture weights with a positive sum (normalised), shared by all views.
        variances: a float, ``[K]`` or ``[K, *data_shape]`` (as :class:`GaussianMixture`), shared by all views.
        data_shape: the shape of one view.
        schedule: noise schedule (default: cosine).

    ``cond`` is required: one condition per input. The denoiser of an input with condition ``c`` is exactly
    that of :meth:`view_prior` ``(c)``.
    """

    conditional = True
    #: What a condition is, for error messages.
    cond_help = "one view condition per input"

    def __init__(self, weights, variances, *, data_shape, schedule: Schedule | None = None, dtype=torch.float32,
                 device="cpu"):
        self.schedule = _default_schedule(schedule)
        self.dtype, self.device = dtype, torch.device(device)
        self.data_shape = tuple(int(d) for d in data_shape)
        self._weights64 = torch.as_tensor(weights, dtype=torch.float64).flatten()
        self._variances = variances
        self._views: dict = {}

    @property
    def n_components(self) -> int:
        return self._weights64.numel()

    def view_key(self, cond):
        """Check one condition and return its cache key (raise ValueError naming the allowed values)."""
        raise NotImplementedError

    def view_means(self, key) -> torch.Tensor:
        """``[K, *data_shape]``: the ``K`` scenes as the view ``key`` sees them."""
        raise NotImplementedError

    def view_prior(self, cond) -> GaussianMixture:
        """The exact prior of the view with condition ``cond``: the mixture of the ``K`` scenes it sees."""
        key = self.view_key(cond)
        if key not in self._views:
            self._views[key] = GaussianMixture(self._weights64, self.view_means(key).double(), self._variances,
                                               schedule=self.schedule, dtype=self.dtype, device=self.device)
        return self._views[key]

    def check_cond(self, cond, batch=None):
        if cond is None:
            raise ValueError(f"{type(self).__name__} needs cond: {self.cond_help}")
        super().check_cond(cond, batch)
        for c in cond:
            self.view_key(c)

    def _eps(self, x, sigma, cond, guidance_scale):
        return _eps_by_condition(x, sigma, [self.view_key(c) for c in cond], self.view_prior)

    def nearest_component(self, x, cond) -> torch.Tensor:
        """Most probable component of clean views ``x`` ``[B, *data_shape]`` seen with condition ``cond`` -> ``[B]``."""
        return self.view_prior(cond).nearest_component(x.to(self.dtype))


def random_panoramas(k: int, channels: int = 1, height: int = 8, width: int = 32, *, n_freq: int = 3,
                     seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``k`` smooth random canvases ``[k, C, H, W]``, periodic in ``x`` (so they also suit 360° panoramas).

    Each is a random Fourier series with ``n_freq`` frequencies per axis (``x`` frequencies are whole
    cycles over ``W``), normalised to unit RMS per canvas. Deterministic in ``seed``.
    """
    for name, val in (("k", k), ("channels", channels), ("height", height), ("width", width), ("n_freq", n_freq)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    g = torch.Generator().manual_seed(seed)
    x = 2 * math.pi * (torch.arange(width, dtype=torch.float64) + 0.5) / width
    y = math.pi * (torch.arange(height, dtype=torch.float64) + 0.5) / height
    fx = torch.arange(1, n_freq + 1, dtype=torch.float64)
    fy = torch.arange(0, n_freq, dtype=torch.float64)
    a = torch.randn(k, channels, n_freq, n_freq, 2, generator=g, dtype=torch.float64)
    a = a / (fx[None, None, None, :, None] + fy[None, None, :, None, None])  # 1/f decay: smooth
    cx, sx = torch.cos(fx[:, None] * x), torch.sin(fx[:, None] * x)  # [F, W]
    cy = torch.cos(fy[:, None] * y)  # [F, H]
    img = torch.einsum("kcpq,ph,qw->kchw", a[..., 0], cy, cx) + torch.einsum("kcpq,ph,qw->kchw", a[..., 1], cy, sx)
    img = img - img.mean(dim=(1, 2, 3), keepdim=True)
    img = img / img.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return img.to(dtype)


class ViewConditionedMixture(ViewMixture):
    """A view-conditioned Gaussian mixture whose ``K`` modes are ``K`` known wide panoramas (a :class:`ViewMixture`).

    Args:
        panoramas: ``[K, C, H, W]`` canvases (e.g. :func:`random_panoramas`).
        weights: ``[K]`` non-negative weights (normalised here).
        variance: isotropic per-pixel variance ``s^2`` (> 0) of each mode (keep it small).
        view_width: crop width ``w``; the data shape of one view is ``(C, H, w)``.
        wrap: the canvases are 360° rings (crops may cross the seam); offsets are taken modulo ``W``.
        schedule: noise schedule (default: cosine).

    Condition: each input's column offset ``o`` (an int, as given by
    :meth:`~diffrep_lite.diffreps.panorama.Panorama.view_conds`); it is required. The denoiser of an
    input with offset ``o`` is exactly that of :meth:`view_prior` ``(o)``, the mixture of the ``K`` crops there.
    """

    cond_help = ("one column offset per input (render with a Panorama diffrep, whose view_conds() are its "
                 "offsets)")

    def __init__(self, panoramas, weights, variance: float = 0.01, *, view_width: int, wrap: bool = False,
                 schedule: Schedule | None = None, dtype=torch.float32, device="cpu"):
        pan = check_finite_values(panoramas, "panoramas")
        if pan.ndim != 4:
            raise ValueError(f"panoramas must be [K, C, H, W], got shape {list(pan.shape)}")
        K, C, H, W = pan.shape
        weights = check_finite_values(weights, "weights").flatten()
        if weights.numel() != K or torch.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum, got {weights.tolist()}")
        check_real(variance, "variance", low=0, low_open=True)
        Crops(W, view_width, offsets=[0], wrap=wrap)  # validates view_width and wrap
        super().__init__(weights, float(variance), data_shape=(C, H, int(view_width)), schedule=schedule,
                         dtype=dtype, device=device)
        self.panoramas = pan.to(dtype=dtype, device=self.device)
        self.weights = (weights / weights.sum()).to(dtype=dtype, device=self.device)
        self.variance, self.view_width, self.wrap = float(variance), int(view_width), wrap

    @property
    def canvas_width(self) -> int:
        return self.panoramas.shape[-1]

    def crops(self, offsets) -> Crops:
        """The crop geometry of this prior's canvases at ``offsets``."""
        return Crops(self.canvas_width, self.view_width, offsets=list(offsets), wrap=self.wrap)

    def view_key(self, o) -> int:
        if isinstance(o, torch.Tensor) and o.numel() == 1:
            o = int(o)
        if isinstance(o, bool) or not isinstance(o, int):
            raise ValueError(f"cond must hold one int column offset per input, got {o!r}")
        W, w = self.canvas_width, self.view_width
        if self.wrap:
            return o % W
        if not 0 <= o <= W - w:
            raise ValueError(f"cond offset {o} out of range: without wrap offsets lie in [0, {W - w}]")
        return o

    def view_means(self, key) -> torch.Tensor:
        return self.crops([key]).crop(self.panoramas)[:, 0]  # [K, C, H, w]

    # ------------------------------------------------------------------ metrics
    def nearest_panorama(self, canvas: torch.Tensor):
        """The true panorama nearest to each canvas and its RMS distance per pixel.

        Args:
            canvas: ``[B, C, H, W]`` (e.g. ``Panorama.render_canvas(params)``).

        Returns:
            ``(k, dist)``: long ``[B]`` indices and float ``[B]`` RMS distances ``||canvas - P_k|| / sqrt(CHW)``.
        """
        if tuple(canvas.shape[1:]) != tuple(self.panoramas.shape[1:]):
            raise ValueError(f"canvas must be [B, {', '.join(map(str, self.panoramas.shape[1:]))}], "
                             f"got {list(canvas.shape)}")
        d = (canvas[:, None].to(self.panoramas) - self.panoramas[None]).pow(2).flatten(2).mean(-1).sqrt()  # [B, K]
        dist, k = d.min(1)
        return k, dist

    def denoise_views(self, views: torch.Tensor, offsets, sigma: float) -> torch.Tensor:
        """Each view's own exact estimate ``E[x0 | view]`` at level ``sigma``: ``[B, V, *data_shape]``.

        At a small ``sigma`` this snaps every view to its nearest crop mode; views of a blended canvas
        snap to different panoramas and then disagree on their overlaps.
        """
        B, V = views.shape[:2]
        conds = [o for _ in range(B) for o in offsets]
        return self.x0(views.flatten(0, 1).to(self.dtype), sigma, conds).reshape(views.shape)

    def overlap_disagreement(self, views: torch.Tensor, offsets) -> torch.Tensor:
        """RMS difference between overlapping views on their shared pixels, ``[B]``.

        Args:
            views: ``[B, V, C, H, w]`` per-view images (e.g. :meth:`denoise_views` of the renders, or
                independently sampled views).
            offsets: the ``V`` column offsets of the views.

        Returns:
            ``sqrt(mean over all overlapping pairs and shared pixels of (view_v - view_u)^2)``; 0 when
            every pair agrees (see :meth:`~diffrep_lite.crops.Crops.disagreement`). Raises
            ValueError if no two views overlap.
        """
        return self.crops(offsets).disagreement(views)

    def view_modes(self, views: torch.Tensor, offsets) -> torch.Tensor:
        """The most probable mode of each clean view under its own prior, long ``[B, V]``."""
        B, V = views.shape[:2]
        return torch.stack([self.nearest_component(views[:, v], o) for v, o in enumerate(offsets)], 1)
