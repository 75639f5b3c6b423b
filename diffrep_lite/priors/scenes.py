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

from ..schedule import geometric_schedule
from ..validation import check_finite_values
from .analytic import GaussianMixture
from ..data import blob_scenes  # scene data live with the data sets (re-exported here)
from .multiview import ViewMixture

__all__ = ["SceneMixture", "blob_scenes", "scene_mixture", "turn_scene", "nearest_scene", "BLEND_PSNR",
           "distribution_toy", "DISTRIBUTION_TOYS"]

#: The toys of :func:`distribution_toy`: name -> mixture weights.
DISTRIBUTION_TOYS = {"three": (0.5, 0.3, 0.2), "turned": (0.5, 0.5)}

#: A sample whose held-out renders are below this PSNR (dB, data in [-1, 1]) to every true scene is a *blend*:
#: RMS error above 0.2, where :func:`blob_scenes` scenes differ from each other by about 0.7 (8-10 dB).
BLEND_PSNR = 20.0


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


def turn_scene(params: dict, half_turns: int = 1) -> dict:
    """The scene turned by ``half_turns`` x 180 degrees about the vertical (``z``) axis: ``(x, y) -> (-x, -y)``.

    ``params``: :class:`~diffrep_lite.diffreps.VoxelNeRF` parameters (``[B, C, G, G, G]`` grids indexed ``[z, y,
    x]`` on a grid symmetric about 0, ``diffrep_lite.diffreps.nerf.voxel_positions``); other entries (a
    background) are kept. A camera at azimuth ``a`` sees the turned scene as a camera at ``a + 180`` sees it.
    """
    if isinstance(half_turns, bool) or not isinstance(half_turns, int):
        raise ValueError(f"half_turns must be an int, got {half_turns!r}")
    out = dict(params)
    if half_turns % 2:
        for k in ("density", "features"):
            out[k] = params[k].flip(-1, -2)
    return out


def nearest_scene(nerf, params: dict, scenes: dict, cameras, *, blend_psnr: float = BLEND_PSNR) -> dict:
    """Assign each sampled scene to the true scene its renders from ``cameras`` are closest to (PSNR).

    Args:
        nerf: the renderer (e.g. a :class:`~diffrep_lite.diffreps.VoxelNeRF`); ``cameras`` are passed to its
            ``render(params, cameras)`` (held-out cameras: ones the sampler never used).
        params: sampled scenes (batch ``B``); scenes: the ``K`` true scenes (batch ``K``).
        blend_psnr: a sample whose best PSNR is below this (dB) is near no scene: a blend.

    Returns:
        ``{"psnr": [B, K] mean PSNR over the cameras, "scene": long [B] (the nearest), "best": [B] its PSNR,
        "blend": bool [B], "counts": [K] (non-blends per scene), "blends": int}``.
    """
    with torch.no_grad():
        x = nerf.render(params, cameras).double()  # [B, V, C, H, W]
        t = nerf.render(scenes, cameras).double()  # [K, V, C, H, W]
    K = t.shape[0]
    mse = (x[:, None] - t[None]).pow(2).flatten(3).mean(-1)  # [B, K, V]
    p = (10 * torch.log10(4.0 / mse)).mean(-1)  # data in [-1, 1]: range 2
    best, k = p.max(1)
    blend = best < blend_psnr
    counts = torch.bincount(k[~blend], minlength=K)
    return {"psnr": p, "scene": k, "best": best, "blend": blend, "counts": counts.tolist(), "blends": int(blend.sum())}


def distribution_toy(toy: str = "three", *, grid: int = 6, resolution: int = 10, n_azimuths: int = 4,
                     elevations=(0.0, 40.0), scene_seed: int = 1, dtype=torch.float32):
    """The exact 3-D distribution experiment (``benchmarks/scene_mixture_distribution.py``, notebook 05).

    ``toy="three"``: three :func:`blob_scenes` of two balls, weights 0.5 / 0.3 / 0.2. ``toy="turned"``: one
    scene of three balls and the same scene turned 180 degrees (:func:`turn_scene`), weights 0.5 / 0.5: a
    front-back ambiguity whose right answer is each orientation half the time and never a blend. Both are
    seen by ``n_azimuths`` x ``len(elevations)`` training cameras (azimuths from 20 degrees; default 4 x 2 = 8;
    notebook 05's rig is 6 azimuths at -30, 0, 30, 60 degrees = 24) of ``resolution`` pixels on a ``grid^3``
    :class:`~diffrep_lite.diffreps.VoxelNeRF`; 12 held-out cameras (6 azimuths, elevations 15 and 30) are never
    used while sampling. With an even ``n_azimuths`` training camera ``v`` sees the turned scene as camera
    ``v + n_azimuths / 2`` sees the scene. The prior is :func:`scene_mixture` (variance 1e-3,
    :func:`geometric_schedule` from 0.01 to 200).

    Returns:
        ``(nerf, prior, scenes, weights, held_out_cameras)``.
    """
    from ..diffreps.nerf import VoxelNeRF, cameras_on_sphere

    if toy not in DISTRIBUTION_TOYS:
        raise ValueError(f"toy must be one of {sorted(DISTRIBUTION_TOYS)}, got {toy!r}")
    train = cameras_on_sphere(n_azimuths, list(elevations), radius=2.5, fov=40.0, azimuth_offset=20.0)
    held = cameras_on_sphere(6, [15.0, 30.0], radius=2.5, fov=40.0)
    nerf = VoxelNeRF(train, resolution, grid=grid, channels=3, background=1.0, view_conds="index",
                     init_features=0.0, n_samples=2 * grid)
    g = torch.Generator().manual_seed(scene_seed)
    weights = list(DISTRIBUTION_TOYS[toy])
    if toy == "three":
        scenes = blob_scenes(3, grid, n_blobs=2, generator=g, dtype=dtype)
    else:
        one = blob_scenes(1, grid, n_blobs=3, generator=g, dtype=dtype)
        scenes = {k: torch.cat([one[k], turn_scene(one)[k]]) for k in one}
    prior = scene_mixture(nerf, scenes, weights=torch.tensor(weights), variance=1e-3,
                          schedule=geometric_schedule(0.01, 200.0), dtype=dtype)
    return nerf, prior, scenes, weights, held

