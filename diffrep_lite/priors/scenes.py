"""An exact 3-D toy prior: a view-conditioned Gaussian mixture whose modes are renders of known scenes.

Pick ``K`` small 3-D scenes (coloured blobs in a voxel grid, :func:`blob_scenes`) and a set of cameras.
The prior of view ``v`` is the mixture ``sum_k w_k N(render_v(scene_k), s^2 I)``: each view on its own
is a 2-D Gaussian mixture with an exact denoiser (that of :class:`~diffrep_lite.priors.GaussianMixture`,
reused here). Nothing couples the views in the prior; a 3-D sampler must make them agree by sharing one
scene ``theta``, which is the multi-view constraint DDR enforces. A correct sample is (close to) one of the
``K`` scenes, so held-out renders of it can be compared with renders of the nearest true scene.

The condition of every input is its view index ``v`` (an int): use a
:class:`~diffrep_lite.diffreps.VoxelNeRF` with ``view_conds="index"``.
"""
from __future__ import annotations

import torch

from .analytic import GaussianMixture, _default_schedule
from .base import Prior

__all__ = ["SceneMixture", "blob_scenes", "scene_mixture", "psnr", "geometric_schedule"]


class SceneMixture(Prior):
    """``p(x | v) = sum_k w_k N(means[v, k], diag(variances))``: one exact Gaussian mixture per view.

    Args:
        means: ``[V, K, *data_shape]`` — component ``k`` of view ``v`` (e.g. scene ``k`` rendered by camera ``v``).
        weights: ``[K]`` mixture weights, shared by all views (normalised).
        variances: a float, ``[K]`` or ``[K, *data_shape]`` (as :class:`GaussianMixture`), shared by all views.

    ``cond`` (required) gives each input's view index in ``[0, V)``. The denoiser of view ``v`` is exactly
    ``GaussianMixture(weights, means[v], variances)``'s.
    """

    conditional = True

    def __init__(self, means, weights=None, variances=1e-3, *, schedule=None, dtype=torch.float32, device="cpu"):
        means = torch.as_tensor(means)
        if means.ndim < 3:
            raise ValueError(f"means must be [V, K, *data_shape], got shape {list(means.shape)}")
        V, K = means.shape[:2]
        weights = torch.ones(K) if weights is None else weights
        self.schedule = _default_schedule(schedule)
        self.mixtures = [GaussianMixture(weights, means[v], variances, schedule=self.schedule, dtype=dtype,
                                         device=device) for v in range(V)]
        self.data_shape = tuple(means.shape[2:])
        self.dtype, self.device = dtype, torch.device(device)

    @property
    def n_views(self) -> int:
        return len(self.mixtures)

    @property
    def n_components(self) -> int:
        return self.mixtures[0].n_components

    def check_cond(self, cond, batch=None):
        if cond is None:
            raise ValueError(f"{type(self).__name__} needs cond = the view index of every input (ints in "
                             f"[0, {self.n_views})); use a diffrep with view_conds='index'")
        super().check_cond(cond, batch)
        for c in cond:
            c = int(c) if isinstance(c, torch.Tensor) and c.ndim == 0 else c
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.n_views:
                raise ValueError(f"cond entries must be view indices in [0, {self.n_views}), got {c!r}")

    def _eps(self, x, sigma, cond, guidance_scale):
        views = torch.as_tensor([int(c) for c in cond], device=x.device)
        out = torch.empty_like(x)
        for v in views.unique().tolist():
            idx = (views == v).nonzero().flatten()
            out[idx] = self.mixtures[v]._eps(x[idx], sigma[idx], None, None)
        return out

    def nearest_component(self, x, view: int) -> torch.Tensor:
        """Most probable component of clean renders ``x`` ``[B, *data_shape]`` of view ``view`` -> ``[B]``."""
        return self.mixtures[view].nearest_component(x)


def blob_scenes(k: int, grid: int, *, n_blobs: int = 3, channels: int = 3, bbox_half: float = 1.0,
                peak_density: float = 30.0, radius=(0.2, 0.35), density_shift: float = -1.0,
                colour_range=(-1.0, 1.0), generator: torch.Generator | None = None, dtype=torch.float32):
    """``k`` random scenes of ``n_blobs`` coloured soft balls each, as :class:`~diffrep_lite.diffreps.VoxelNeRF`
    parameters on a ``grid^3`` voxel grid (``{"density": [k, 1, G, G, G], "features": [k, C, G, G, G]}``).

    Ball ``b`` has centre ``c_b`` (inside ``0.5 * bbox_half``), radius ``r_b`` in ``radius`` and a colour in
    ``colour_range``; the density is ``peak_density * sum_b exp(-|x - c_b|^2 / (2 (r_b/2)^2))`` smoothed to a
    ball, stored as raw values ``d = softplus^{-1}(sigma) - density_shift`` so the renderer reproduces it.
    Features are the density-weighted mean colour of the balls.
    """
    from ..diffreps.nerf import inverse_softplus, voxel_positions

    g = generator
    pos = voxel_positions(grid, bbox_half, dtype=torch.float64)  # [G, G, G, 3]
    dens, feats = [], []
    for _ in range(k):
        centres = (torch.rand(n_blobs, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.5 * bbox_half
        radii = radius[0] + (radius[1] - radius[0]) * torch.rand(n_blobs, generator=g, dtype=torch.float64)
        radii = radii * bbox_half
        lo, hi = colour_range
        cols = lo + (hi - lo) * torch.rand(n_blobs, channels, generator=g, dtype=torch.float64)
        dist = (pos[..., None, :] - centres).norm(dim=-1)  # [G, G, G, n_blobs]
        w = torch.sigmoid((radii - dist) / (0.25 * radii))  # soft balls
        sigma = peak_density * w.sum(-1)
        col = (w[..., None] * cols).sum(-2) / (w.sum(-1, keepdim=True) + 1e-6)
        dens.append(inverse_softplus(sigma.clamp_min(1e-4)) - density_shift)
        feats.append(col.permute(3, 0, 1, 2))
    return {"density": torch.stack(dens)[:, None].to(dtype), "features": torch.stack(feats).to(dtype)}


def scene_mixture(nerf, scenes: dict, *, weights=None, variance: float = 1e-3, schedule=None,
                  dtype=torch.float32, device="cpu") -> SceneMixture:
    """The toy 3-D prior: the ``K`` scenes (a parameter dict with batch ``K``) rendered by ``nerf``'s training
    cameras become the components of a :class:`SceneMixture` (means ``[V, K, C, H, W]``)."""
    with torch.no_grad():
        renders = nerf.render({k: t.to(dtype=torch.float64) for k, t in scenes.items()})  # [K, V, C, H, W]
    return SceneMixture(renders.transpose(0, 1), weights, variance, schedule=schedule, dtype=dtype,
                                  device=device)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` per leading index (dB); the mean square error
    is over all other dimensions. ``data_range = 2`` for data in ``[-1, 1]``."""
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def geometric_schedule(sigma_min: float = 0.01, sigma_max: float = 200.0, num_train_timesteps: int = 1000):
    """A :class:`~diffrep_lite.schedule.Schedule` whose VE noise levels are geometric from ``sigma_min`` to
    ``sigma_max`` (``abar = 1 / (1 + sigma^2)``), so every sampler step covers the same log-sigma range.

    Exact mixtures decide between their modes at ``sigma`` of the order of the distance between modes; this
    schedule spends steps there (a cosine schedule jumps from ``sigma ~ 2e4`` straight to ``~6`` in 10 steps).
    """
    from ..schedule import Schedule

    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min!r}, {sigma_max!r}")
    s = torch.logspace(torch.log10(torch.tensor(float(sigma_min))), torch.log10(torch.tensor(float(sigma_max))),
                       num_train_timesteps, dtype=torch.float64)
    return Schedule(1.0 / (1.0 + s * s))
