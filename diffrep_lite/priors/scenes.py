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

from ..validation import check_finite_values
from .analytic import GaussianMixture
from ..data import blob_scenes  # scene data live with the data sets (re-exported here)
from .multiview import ViewMixture

__all__ = ["SceneMixture", "blob_scenes", "scene_mixture"]


class SceneMixture(ViewMixture):
    """``p(x | v) = sum_k w_k N(means[v, k], diag(variances))``: one exact Gaussian mixture per view (a
    :class:`~diffrep_lite.priors.multiview.ViewMixture` whose views are given as tensors).

    Args:
        means: ``[V, K, *data_shape]`` — component ``k`` of view ``v`` (e.g. scene ``k`` rendered by camera ``v``).
        weights: ``[K]`` mixture weights, shared by all views (normalised).
        variances: a float, ``[K]`` or ``[K, *data_shape]`` (as :class:`GaussianMixture`), shared by all views.

    ``cond`` (required) gives each input's view index in ``[0, V)``. The denoiser of view ``v`` is exactly
    ``GaussianMixture(weights, means[v], variances)``'s.
    """

    def __init__(self, means, weights=None, variances=1e-3, *, schedule=None, dtype=torch.float32, device="cpu"):
        means = torch.as_tensor(means)
        check_finite_values(means, "means")
        if means.ndim < 3:
            raise ValueError(f"means must be [V, K, *data_shape], got shape {list(means.shape)}")
        V, K = means.shape[:2]
        weights = torch.ones(K) if weights is None else weights
        GaussianMixture(weights, means[0], variances)  # validates weights and variances before any view is built
        super().__init__(weights, variances, data_shape=means.shape[2:], schedule=schedule, dtype=dtype,
                         device=device)
        self.means = means
        self.cond_help = f"the view index of every input (ints in [0, {V})); use a diffrep with view_conds='index'"

    @property
    def n_views(self) -> int:
        return self.means.shape[0]

    def view_key(self, c) -> int:
        c = int(c) if isinstance(c, torch.Tensor) and c.ndim == 0 else c
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.n_views:
            raise ValueError(f"cond entries must be view indices in [0, {self.n_views}), got {c!r}")
        return c

    def view_means(self, key) -> torch.Tensor:
        return self.means[key]


def scene_mixture(nerf, scenes: dict, *, weights=None, variance: float = 1e-3, schedule=None,
                  dtype=torch.float32, device="cpu") -> SceneMixture:
    """The toy 3-D prior: the ``K`` scenes (a parameter dict with batch ``K``) rendered by ``nerf``'s training
    cameras become the components of a :class:`SceneMixture` (means ``[V, K, C, H, W]``).

    ``nerf`` is any renderer with ``render(params) -> [K, V, *view_shape]`` (e.g. a
    :class:`~diffrep_lite.diffreps.VoxelNeRF`); the prior only keeps the renders."""
    with torch.no_grad():
        renders = nerf.render({k: t.to(dtype=torch.float64) for k, t in scenes.items()})  # [K, V, C, H, W]
    return SceneMixture(renders.transpose(0, 1), weights, variance, schedule=schedule, dtype=dtype,
                                  device=device)
