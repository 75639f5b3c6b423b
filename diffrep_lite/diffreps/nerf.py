"""A voxel radiance field (SJC's NeRF) as a diffrep: cameras on a sphere, volume rendering, batched samples.

The scene lives in the box ``[-h, h]^3`` (``h = bbox_half``). Two voxel grids hold, per sample,
a raw density ``d`` (1 channel) and ``C`` features (RGB, or 4 Stable Diffusion latent channels as in
SJC); values between voxel vertices are trilinear (``torch.nn.functional.grid_sample`` with
``align_corners=True``, so the grid's corner vertices sit on the box's corners). The density is
``sigma = softplus(d + shift)`` (SJC's ``density_shift``, default ``-1``).

A camera at ``radius`` on the sphere looks at the origin. Every pixel casts a ray; inside the box the
ray is cut into ``S = n_samples`` equal segments of length ``Delta`` and sampled at their midpoints.
Alpha compositing (the quadrature of the volume-rendering integral)::

    alpha_i = 1 - exp(-sigma_i Delta),     T_i = exp(-sum_{j<i} sigma_j Delta)   (transmittance)
    pixel   = sum_i T_i alpha_i c_i + T_S * background,    T_S = exp(-sum_i sigma_i Delta)

For a piecewise-constant density this is exact: a ray crossing a constant density ``sigma`` over a
length ``L`` keeps ``T_S = exp(-sigma L)``. Colours ``c_i`` are the raw features (``output="raw"``,
e.g. SD latents) or their sigmoid (``output="sigmoid"``, RGB in ``[0, 1]``).

All ``B`` samples are rendered in one vectorised call (``B`` is grid_sample's batch); rays are
marched in chunks of ``chunk`` rays to bound the transient memory. ``grid_sample`` has no forward-mode
derivative in PyTorch, so it is wrapped in a small ``autograd.Function`` that is linear in the grid
values (its ``jvp`` is the same interpolation of the tangent): ``torch.func.jvp`` and ``vjp`` both work,
which is all :mod:`diffrep_lite.pullback` needs. Camera rays are constants (no pose gradients).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..validation import check_finite_values, check_real
from .base import Diffrep

__all__ = ["Camera", "cameras_on_sphere", "view_prompt", "VoxelNeRF", "memory_available",
           "inverse_softplus"]

OUTPUTS = ("raw", "sigmoid")
VIEW_CONDS = (None, "index", "prompt")


# --------------------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class Camera:
    """A pinhole camera on a sphere around the origin, looking at the origin.

    World frame: ``z`` is up; azimuth ``0`` is the ``+x`` axis ("front"), azimuth ``90`` the ``+y`` axis.

    Attributes:
        elevation: degrees above the ``xy`` plane, in ``(-90, 90)``.
        azimuth: degrees around the ``z`` axis (any value; taken mod 360).
        radius: distance from the origin (scene units).
        fov: horizontal field of view in degrees, in ``(0, 180)`` (SJC's ``FoV_x``).
    """

    elevation: float = 0.0
    azimuth: float = 0.0
    radius: float = 2.5
    fov: float = 45.0

    def __post_init__(self):
        for name in ("elevation", "azimuth", "radius", "fov"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"Camera.{name} must be a finite number, got {v!r}")
        if not 0.0 < self.fov < 180.0:
            raise ValueError(f"Camera.fov must lie in (0, 180) degrees, got {self.fov!r}")
        if not -90.0 < self.elevation < 90.0:
            raise ValueError(f"Camera.elevation must lie in (-90, 90) degrees, got {self.elevation!r}")
        if not self.radius > 0:
            raise ValueError(f"Camera.radius must be > 0, got {self.radius!r}")

    def frame(self, dtype=torch.float64, device="cpu"):
        """``(position, forward, right, up)``, each a ``[3]`` tensor; ``forward`` points at the origin.

        ``right = (-sin az, cos az, 0)`` and ``up = right x forward`` (``up`` has a positive ``z``)."""
        el, az = math.radians(self.elevation), math.radians(self.azimuth)
        pos = self.radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                                         dtype=torch.float64)
        fwd = -pos / self.radius
        right = torch.tensor([-math.sin(az), math.cos(az), 0.0], dtype=torch.float64)
        up = torch.linalg.cross(right, fwd)
        return tuple(t.to(dtype=dtype, device=device) for t in (pos, fwd, right, up))

    def rays(self, height: int, width: int, *, dtype=torch.float32, device="cpu"):
        """Rays through the pixel centres of an ``height x width`` image, row-major, row 0 at the top.

        Returns:
            ``(origins, directions)``, each ``[height * width, 3]``; directions have unit length.
            The image plane spans ``tan(fov / 2)`` horizontally and ``tan(fov / 2) * height / width``
            vertically at unit distance, so the image's left/right edges are at ``fov / 2`` from the axis.
        """
        pos, fwd, right, up = self.frame(torch.float64)
        tx = math.tan(math.radians(self.fov) / 2)
        ty = tx * height / width
        u = ((torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1) * tx
        v = (1 - (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2) * ty
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        d = fwd + uu.reshape(-1, 1) * right + vv.reshape(-1, 1) * up
        d = d / d.norm(dim=-1, keepdim=True)
        o = pos.expand_as(d)
        return o.to(dtype=dtype, device=device), d.to(dtype=dtype, device=device)


def _as_list(x):
    return [float(v) for v in x] if isinstance(x, (list, tuple)) or (isinstance(x, torch.Tensor) and x.ndim) else [float(x)]


def cameras_on_sphere(azimuths=8, elevations=15.0, *, radius: float = 2.5, fov: float = 45.0,
                      azimuth_offset: float = 0.0) -> list[Camera]:
    """Cameras looking at the origin from a sphere of ``radius``.

    Args:
        azimuths: an int ``n`` (``n`` azimuths evenly spaced over 360 degrees, from ``azimuth_offset``)
            or a sequence of azimuths in degrees.
        elevations: one elevation or a sequence (degrees); every elevation gets every azimuth
            (elevation-major order).
        radius, fov: shared by all cameras (``fov`` horizontal, degrees).

    Returns:
        a list of :class:`Camera`.
    """
    if isinstance(azimuths, bool):
        raise TypeError(f"azimuths must be an int or a sequence of degrees, got {azimuths!r}")
    if isinstance(azimuths, int):
        if azimuths < 1:
            raise ValueError(f"azimuths must be >= 1, got {azimuths}")
        az = [azimuth_offset + 360.0 * k / azimuths for k in range(azimuths)]
    else:
        az = _as_list(azimuths)
    return [Camera(elevation=e, azimuth=a, radius=radius, fov=fov) for e in _as_list(elevations) for a in az]


def view_prompt(camera: Camera) -> str:
    """SJC's view-dependent prompt suffix: ``"overhead view"`` above 60 degrees elevation, else
    ``"front view"`` / ``"side view"`` / ``"back view"`` by azimuth quadrant (front = within 45 degrees of 0)."""
    if camera.elevation > 60.0:
        return "overhead view"
    quadrant = int(((camera.azimuth + 45.0) % 360.0) // 90.0)
    return ("front view", "side view", "back view", "side view")[quadrant]


# --------------------------------------------------------------------------------------- memory
def memory_available(device) -> int:
    """Bytes free for new tensors on ``device``: CUDA ``mem_get_info`` free bytes, else the host's
    ``MemAvailable`` (Linux ``/proc/meminfo``), else physical memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """``x`` with ``softplus(x) = y`` for ``y > 0`` (``log(expm1(y))``, stable for large ``y``)."""
    y = torch.as_tensor(y)
    return torch.where(y > 20, y, torch.log(torch.expm1(y.clamp_max(20))))


# --------------------------------------------------------------------------------------- sampling
class _Trilinear(torch.autograd.Function):
    """``grid_sample`` (trilinear, border padding, ``align_corners=True``) of the grid values at fixed
    coordinates, with a forward-mode rule: the map is linear in the values, so ``jvp = sample(tangent)``."""

    @staticmethod
    def forward(values, coords):
        return F.grid_sample(values, coords, mode="bilinear", padding_mode="border", align_corners=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        values, coords = inputs
        ctx.save_for_backward(coords)
        ctx.save_for_forward(coords)
        ctx.values_shape = values.shape

    @staticmethod
    def backward(ctx, grad):
        (coords,) = ctx.saved_tensors
        shape = ctx.values_shape
        # Adjoint of a linear map: scatter the output gradient back onto the grid vertices.
        grad_values = torch.ops.aten.grid_sampler_3d_backward(
            grad.contiguous(), grad.new_zeros(()).expand(shape), coords, 0, 1, True, [True, False])[0]
        return grad_values, None

    @staticmethod
    def jvp(ctx, t_values, t_coords):
        (coords,) = ctx.saved_tensors
        return F.grid_sample(t_values, coords, mode="bilinear", padding_mode="border", align_corners=True)


def trilinear(values: torch.Tensor, points: torch.Tensor, half: float) -> torch.Tensor:
    """Trilinear interpolation of ``values`` ``[B, C, G, G, G]`` (indexed ``[z, y, x]``, vertices spanning
    ``[-half, half]^3``) at ``points`` ``[N, 3]`` (``(x, y, z)``, scene units) -> ``[B, C, N]``.
    Points outside the box take the nearest border value. Supports ``torch.func.jvp`` and ``vjp`` in ``values``."""
    B = values.shape[0]
    coords = (points / half).clamp(-1, 1).to(values.dtype).reshape(1, 1, 1, -1, 3).expand(B, -1, -1, -1, -1)
    return _Trilinear.apply(values, coords).reshape(B, values.shape[1], -1)


def voxel_positions(resolution: int, half: float, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Scene positions ``[G, G, G, 3]`` (``(x, y, z)`` at index ``[k, j, i]`` = ``(x_i, y_j, z_k)``) of the grid's
    vertices, matching :func:`trilinear`'s layout: grids built from a function of these positions
    interpolate it exactly when it is linear."""
    t = torch.linspace(-half, half, resolution, dtype=dtype, device=device)
    zz, yy, xx = torch.meshgrid(t, t, t, indexing="ij")
    return torch.stack([xx, yy, zz], -1)


# --------------------------------------------------------------------------------------- the diffrep
class VoxelNeRF(Diffrep):
    """A voxel radiance field rendered from a fixed set of cameras (SJC's voxel NeRF).

    Parameters (each with a leading sample dimension ``B``): ``density`` ``[B, 1, G, G, G]`` (raw, before
    the softplus), ``features`` ``[B, C, G, G, G]`` and, with ``background="learned"``, ``background`` ``[B, C]``
    (raw; it goes through the same output map as the features). ``render`` returns ``[B, V, C, H, W]``.

    Args:
        cameras: the training views (a list of :class:`Camera`); ``n_views = len(cameras)``.
        resolution: rendered image size ``H`` or ``(H, W)``.
        grid: voxel grid size ``G`` (``G^3`` vertices, ``>= 2``).
        channels: feature channels ``C`` (3 for RGB, 4 for Stable Diffusion latents, any ``k``).
        bbox_half: the scene box is ``[-bbox_half, bbox_half]^3``.
        n_samples: samples per ray ``S`` (default ``2 G``: about half a voxel per step across the box, as
            SJC's ``step_ratio=0.5``).
        chunk: rays marched per chunk (bounds the transient memory of a render).
        density_shift: ``sigma = softplus(d + density_shift)`` (SJC: ``-1``).
        output: ``"raw"`` (colours = features, e.g. latents) or ``"sigmoid"`` (RGB in ``[0, 1]``).
        background: a float or ``C`` floats (a fixed colour, in output space), or ``"learned"``.
        view_conds: what :meth:`view_conds` returns: ``None``, a list of one condition per camera (e.g. the
            azimuth bin of each camera for a view-conditioned model), ``"index"`` (the camera index, for
            view-conditioned priors) or ``"prompt"`` (``"front view"``... suffixes for text priors).
        init_density, init_features: raw values of the initial grids (``init_features=None``: ``N(0, 1)``
            features as SJC; a float: constant features).
        memory_limit: bytes the estimated footprint may use (default: the device's available memory).

    Raises:
        ValueError: a camera inside the scene's circumscribed sphere (``radius <= sqrt(3) bbox_half``), a
            field of view outside ``(0, 180)``, non-positive sizes, unknown ``output``/``view_conds``, or a
            grid/render whose estimated memory exceeds the limit (the message gives both figures).
    """

    #: DDR's defaults for voxel NeRFs (:data:`diffrep_lite.presets.DDR_PRESETS`).
    ddr_preset = "nerf"

    def __init__(self, cameras: Sequence[Camera], resolution=32, grid: int = 32, channels: int = 3, *,
                 bbox_half: float = 1.0, n_samples: int | None = None, chunk: int = 8192,
                 density_shift: float = -1.0, output: str = "raw", background=0.0, view_conds=None,
                 init_density: float = 0.0, init_features: float | None = None, memory_limit: int | None = None):
        H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        for name, v in (("resolution", H), ("resolution", W), ("grid", grid), ("channels", channels),
                        ("chunk", chunk)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if grid < 2:
            raise ValueError(f"grid must be >= 2 voxels per side, got {grid}")
        n_samples = 2 * grid if n_samples is None else n_samples
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        check_real(bbox_half, "bbox_half", low=0, low_open=True)
        check_real(density_shift, "density_shift")
        check_real(init_density, "init_density")
        check_real(init_features, "init_features", allow_none=True)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if isinstance(view_conds, (list, tuple)):
            if len(view_conds) != len(list(cameras)):
                raise ValueError(f"view_conds as a list needs one condition per camera ({len(list(cameras))}), "
                                 f"got {len(view_conds)}")
            view_conds = list(view_conds)
        elif view_conds not in VIEW_CONDS:
            raise ValueError(f"view_conds must be one of {VIEW_CONDS} or a list with one condition per camera, "
                             f"got {view_conds!r}")
        cameras = list(cameras)
        if not cameras:
            raise ValueError("cameras must be a non-empty list of Camera")
        self.bbox_half = float(bbox_half)
        self.check_cameras(cameras)
        if isinstance(background, str):
            if background != "learned":
                raise ValueError(f"background must be a float, {channels} floats or 'learned', got {background!r}")
            self._bg = None
        else:
            bg = check_finite_values(background, "background").flatten()
            if bg.numel() == 1:
                bg = bg.expand(channels)
            if bg.numel() != channels:
                raise ValueError(f"background must be a float, {channels} floats or 'learned', got {bg.numel()} values")
            self._bg = bg.clone()
        self.cameras = cameras
        self.resolution, self.grid, self.channels = (H, W), grid, channels
        self.n_samples, self.chunk = n_samples, chunk
        self.density_shift, self.output = float(density_shift), output
        self.view_cond_mode = view_conds
        self.init_density, self.init_features = float(init_density), init_features
        self.memory_limit = memory_limit
        self.view_shape = (channels, H, W)
        self.n_views = len(cameras)
        self._ray_cache = {}
        self.check_memory(1, "cpu")

    # ------------------------------------------------------------------ validation
    @property
    def bounding_radius(self) -> float:
        """Radius of the sphere circumscribing the scene box, ``sqrt(3) * bbox_half``."""
        return math.sqrt(3.0) * self.bbox_half

    def check_cameras(self, cameras):
        """Every camera must be a :class:`Camera` outside the box's circumscribed sphere."""
        for k, cam in enumerate(cameras):
            if not isinstance(cam, Camera):
                raise TypeError(f"cameras[{k}] must be a Camera, got {type(cam).__name__}")
            if not cam.radius > self.bounding_radius:
                raise ValueError(
                    f"cameras[{k}] has radius {cam.radius:g}, inside the scene bounds: it must exceed the "
                    f"circumscribed radius sqrt(3) * bbox_half = {self.bounding_radius:.4g}")

    def memory_estimate(self, batch: int = 1, n_views: int | None = None, itemsize: int = 4) -> dict:
        """Estimated bytes of a DDR step on ``batch`` samples and ``n_views`` views (default: all).

        ``grid``: parameter-sized tensors (the grids, their concatenation, and the pull-back solver's
        increment, direction, residual-gradient and tangent: 6 copies). ``render``: what one
        differentiable render keeps for its backward/jvp (per ray sample: ``1 + C`` interpolated values,
        3 coordinates and ~5 compositing terms) plus one chunk's transients. A rough upper bound, not a
        measurement: measured peaks are in the practical guide ("Time and memory: CPU or a GPU").
        """
        V = self.n_views if n_views is None else n_views
        H, W = self.resolution
        C, G, S = self.channels, self.grid, self.n_samples
        grid_bytes = 6 * batch * (1 + C) * G**3 * itemsize
        per_point = (1 + C) + 3 + 5
        rays = V * H * W
        render_bytes = batch * rays * S * per_point * itemsize + 2 * batch * min(self.chunk, rays) * S * per_point * itemsize
        return {"grid": grid_bytes, "render": render_bytes, "total": grid_bytes + render_bytes}

    def check_memory(self, batch: int, device, n_views: int | None = None):
        """Raise ValueError (before any work) if :meth:`memory_estimate` exceeds the limit on ``device``."""
        est = self.memory_estimate(batch, n_views)
        limit = self.memory_limit if self.memory_limit is not None else memory_available(device)
        if est["total"] > limit:
            raise ValueError(
                f"VoxelNeRF with grid={self.grid}^3 x {1 + self.channels} channels, batch {batch}, "
                f"{self.n_views if n_views is None else n_views} views of {self.resolution[0]}x{self.resolution[1]} "
                f"and n_samples={self.n_samples} needs an estimated {_fmt_bytes(est['total'])} "
                f"(grids {_fmt_bytes(est['grid'])}, render {_fmt_bytes(est['render'])}), more than the "
                f"{_fmt_bytes(limit)} limit on {torch.device(device)}; lower grid, resolution, n_samples or "
                f"the number of samples n")

    # ------------------------------------------------------------------ protocol
    def param_shapes(self):
        G, C = self.grid, self.channels
        shapes = {"density": (1, G, G, G), "features": (C, G, G, G)}
        if self._bg is None:
            shapes["background"] = (C,)
        return shapes

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        """``n`` initial fields: density ``init_density`` everywhere, features ``N(0, 1)`` (or
        ``init_features``), learned background 0. Checks the memory estimate for ``n`` samples first."""
        self.check_memory(n, device)
        G, C = self.grid, self.channels
        kw = dict(dtype=dtype, device=device)
        if self.init_features is None:
            feats = torch.randn(n, C, G, G, G, generator=generator, **kw)
        else:
            feats = torch.full((n, C, G, G, G), float(self.init_features), **kw)
        params = {"density": torch.full((n, 1, G, G, G), self.init_density, **kw), "features": feats}
        if self._bg is None:
            params["background"] = torch.zeros(n, C, **kw)
        return params

    def shared_noise(self, n: int, *, generator=None, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """Per-view noise ``[n, V, C, H, W]`` whose **mean over each view's pixels** (per channel) is one draw
        shared by all views; the rest is independent per view.

        A NeRF's views are projections, not crops, so there is no one noise field to crop. What can be shared
        is the DC component: ``eps_v = z_v - mean(z_v) + m`` with ``z_v ~ N(0, I)`` per view and one
        ``m ~ N(0, 1 / (H W))`` per channel, so every view is still marginally exactly ``N(0, I)`` (its mean is
        replaced by an identically distributed one). Under a schedule whose last level keeps some signal
        (Stable Diffusion's ``scaled_linear``: ``abar_T = 0.0047``), a model reads the noise's mean as the
        image's mean colour; independent means let every view start from its own colour, a shared mean
        gives them one. Used by DDR's ``view_noise="shared"``.
        """
        H, W = self.resolution
        z = torch.randn(n, self.n_views, self.channels, H, W, generator=generator, dtype=dtype, device=device)
        m = torch.randn(n, 1, self.channels, 1, 1, generator=generator, dtype=dtype, device=device) / math.sqrt(H * W)
        return z - z.mean((-2, -1), keepdim=True) + m

    def view_conds(self, views=None):
        """Per-view conditions: None, the given per-camera conditions (``view_conds=[...]``), camera indices
        (``view_conds="index"``) or prompt suffixes (``view_conds="prompt"``, see :func:`view_prompt`)."""
        if self.view_cond_mode is None:
            return None
        idx, cams = self._resolve_views(views)
        if isinstance(self.view_cond_mode, list) or self.view_cond_mode == "index":
            if idx is None:
                raise ValueError("per-camera view conditions exist only for the training cameras (views=None or ints)")
            return list(idx) if self.view_cond_mode == "index" else [self.view_cond_mode[i] for i in idx]
        return [view_prompt(c) for c in cams]

    def render(self, params, views=None):
        """Render every sample from the cameras ``views`` -> ``[B, V, C, H, W]``.

        Args:
            params: the parameter dict (tensors with a leading ``B``).
            views: None (all training cameras), a list of training-camera indices, or a list of
                :class:`Camera` (novel views, e.g. a turntable; they must lie outside the scene bounds).
        """
        idx, cams = self._resolve_views(views)
        dens, feats = params["density"], params["features"]
        B = dens.shape[0]
        H, W = self.resolution
        o, d, tnear, delta = self._rays(idx, cams, dens.dtype, dens.device)
        values = torch.cat([dens, feats], 1)  # [B, 1 + C, G, G, G]
        bg = self._background(params, B, dens)  # [B, C]
        out = [self._march(values, o[s:s + self.chunk], d[s:s + self.chunk], tnear[s:s + self.chunk],
                           delta[s:s + self.chunk], bg) for s in range(0, o.shape[0], self.chunk)]
        img = torch.cat(out, -1)  # [B, C, V * H * W]
        V = len(cams)
        return img.reshape(B, self.channels, V, H, W).transpose(1, 2)

    def transmittance(self, params, views=None) -> torch.Tensor:
        """Leftover transmittance ``T_S = exp(-sum_i sigma_i Delta)`` of every pixel, ``[B, V, 1, H, W]``
        (1 = the ray sees only background)."""
        idx, cams = self._resolve_views(views)
        dens = params["density"]
        B = dens.shape[0]
        H, W = self.resolution
        o, d, tnear, delta = self._rays(idx, cams, dens.dtype, dens.device)
        out = []
        for s in range(0, o.shape[0], self.chunk):
            pts, dl = self._points(o[s:s + self.chunk], d[s:s + self.chunk], tnear[s:s + self.chunk],
                                   delta[s:s + self.chunk])
            sigma = F.softplus(trilinear(dens, pts, self.bbox_half).reshape(B, -1, self.n_samples) + self.density_shift)
            out.append(torch.exp(-(sigma * dl[None, :, None]).sum(-1)))
        return torch.cat(out, -1).reshape(B, 1, len(cams), H, W).transpose(1, 2)

    # ------------------------------------------------------------------ internals
    def _resolve_views(self, views):
        if views is None:
            return list(range(self.n_views)), self.cameras
        views = list(views)
        if not views:
            raise ValueError("views must be None or a non-empty list of camera indices or Cameras")
        if all(isinstance(v, Camera) for v in views):
            self.check_cameras(views)
            return None, views
        if all(isinstance(v, int) and not isinstance(v, bool) for v in views):
            bad = [v for v in views if not 0 <= v < self.n_views]
            if bad:
                raise ValueError(f"view indices must lie in [0, {self.n_views}), got {bad}")
            return views, [self.cameras[v] for v in views]
        raise TypeError("views must be None, a list of ints (training cameras) or a list of Camera")

    def _rays(self, idx, cams, dtype, device):
        key = (tuple(idx) if idx is not None else tuple(cams), dtype, str(device))
        if key in self._ray_cache:
            return self._ray_cache[key]
        H, W = self.resolution
        os_, ds = zip(*(c.rays(H, W, dtype=torch.float64) for c in cams))
        o, d = torch.cat(os_), torch.cat(ds)
        tnear, tfar = _ray_box(o, d, self.bbox_half)
        delta = (tfar - tnear).clamp_min(0) / self.n_samples  # 0 for rays that miss the box
        out = tuple(t.to(dtype=dtype, device=device) for t in (o, d, tnear, delta))
        if idx is not None:  # cache the training cameras only (turntables are rendered once)
            self._ray_cache[key] = out
        return out

    def _points(self, o, d, tnear, delta):
        k = torch.arange(self.n_samples, dtype=o.dtype, device=o.device) + 0.5
        t = tnear[:, None] + k[None] * delta[:, None]  # [r, S] midpoints of S equal segments
        return (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3), delta

    def _march(self, values, o, d, tnear, delta, bg):
        B = values.shape[0]
        pts, dl = self._points(o, d, tnear, delta)
        v = trilinear(values, pts, self.bbox_half).reshape(B, 1 + self.channels, o.shape[0], self.n_samples)
        sigma = F.softplus(v[:, 0] + self.density_shift)  # [B, r, S]
        tau = sigma * dl[None, :, None]  # optical depth of each segment
        cum = torch.cumsum(tau, -1)
        trans = torch.exp(tau - cum)  # T_i = exp(-sum_{j<i} tau_j)
        weights = trans * (1 - torch.exp(-tau))  # T_i * alpha_i
        colour = v[:, 1:]
        if self.output == "sigmoid":
            colour = torch.sigmoid(colour)
        pix = (weights[:, None] * colour).sum(-1)  # [B, C, r]
        leftover = torch.exp(-cum[..., -1])  # [B, r]
        return pix + leftover[:, None] * bg[:, :, None]

    def _background(self, params, B, like):
        if self._bg is None:
            bg = params["background"]
            return torch.sigmoid(bg) if self.output == "sigmoid" else bg
        return self._bg.to(dtype=like.dtype, device=like.device).expand(B, -1)


def _ray_box(o: torch.Tensor, d: torch.Tensor, half: float):
    """Entry/exit distances ``(tnear, tfar)`` ``[N]`` of rays ``o + t d`` (``t >= 0``) through ``[-half, half]^3``
    (slab method); ``tfar <= tnear`` for a miss."""
    with torch.no_grad():
        inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        t1, t2 = (-half - o) * inv, (half - o) * inv
        tnear = torch.minimum(t1, t2).amax(-1).clamp_min(0.0)
        tfar = torch.maximum(t1, t2).amin(-1)
    return tnear, tfar
