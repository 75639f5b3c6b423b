"""Multi-view diffreps: one set of parameters seen through several views.

* :class:`MultiView` — the generic way for any diffrep to declare views: a base diffrep renders one
  "scene" and each view is a function of that scene (a crop, a projection, a camera).
* :class:`Crops` — the geometry of overlapping ``H x w`` crops of a ``H x W`` canvas at column
  offsets, optionally wrapping around (a 360° panorama).
* :class:`Panorama` — a canvas diffrep seen through :class:`Crops` (e.g. ``Panorama(Identity(...))``,
  a pixel canvas whose Jacobian is a 0/1 crop matrix).
* :class:`SirenPanorama` — one SIREN over the wide canvas; with ``wrap=True`` its x coordinate is an
  angle, so the field is exactly periodic and crops may cross the seam.

Every view gets a condition (:meth:`Diffrep.view_conds`): for crops, the column offset, so a
view-conditioned prior knows which part of the panorama it sees.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..crops import Crops, _select
from .base import Diffrep
from .siren import Siren, _centres

__all__ = ["MultiView", "Crops", "Panorama", "SirenPanorama"]


class _Views(Diffrep):
    """A diffrep whose parameters are those of an inner diffrep (:meth:`inner`), seen through several views."""

    def inner(self) -> Diffrep:
        raise NotImplementedError

    def param_shapes(self):
        return self.inner().param_shapes()

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return self.inner().init_params(n, generator=generator, dtype=dtype, device=device)


class MultiView(_Views):
    """Any diffrep seen through several views: ``view_v = view_fns[v](scene)``.

    Args:
        base: a diffrep whose single view is the scene (``base.render(params)`` is ``[B, 1, *scene]``).
        view_fns: one function per view mapping the scene ``[B, *scene]`` to ``[B, *view_shape]``
            (differentiable torch ops, so ``J`` of the whole map comes from ``torch.func``).
        conds: optional per-view conditions for the prior (length ``V``).
        view_shape: the shape of one view; inferred with one render of ``base.init_params(1)`` if omitted.

    ``render(params, views)`` is ``[B, len(views), *view_shape]``; parameters are ``base``'s.
    """

    def __init__(self, base: Diffrep, view_fns: Sequence[Callable], conds=None, view_shape=None):
        if not isinstance(base, Diffrep):
            raise TypeError(f"base must be a diffrep_lite Diffrep, got {type(base).__name__}")
        view_fns = list(view_fns)
        if not view_fns or not all(callable(fn) for fn in view_fns):
            raise ValueError("view_fns must be a non-empty sequence of callables scene -> view")
        if conds is not None and len(conds) != len(view_fns):
            raise ValueError(f"conds must have one entry per view ({len(view_fns)}), got {len(conds)}")
        self.base, self.view_fns, self._conds = base, view_fns, (None if conds is None else list(conds))
        self.n_views = len(view_fns)
        if view_shape is None:
            with torch.no_grad():
                view_shape = tuple(view_fns[0](base.render(base.init_params(1))[:, 0]).shape[1:])
        self.view_shape = tuple(view_shape)

    def inner(self) -> Diffrep:
        return self.base

    def render_scene(self, params) -> torch.Tensor:
        """The base diffrep's scene ``[B, *scene]``."""
        return self.base.render(params)[:, 0]

    def render(self, params, views=None):
        scene = self.render_scene(params)
        return torch.stack([self.view_fns[v](scene) for v in _select(self.n_views, views)], 1)

    def view_conds(self, views=None):
        return None if self._conds is None else [self._conds[v] for v in _select(self.n_views, views)]


class Panorama(_Views):
    """A canvas diffrep (one ``[C, H, W]`` view) seen through overlapping :class:`Crops`.

    Args:
        canvas: a diffrep rendering one ``(C, H, W)`` view, e.g. ``Identity((C, H, W))`` (a pixel canvas).
        view_width, offsets, stride, wrap: the crop geometry, see :class:`Crops`.
        view_conditioned: ``view_conds()`` gives each view's column offset (for a view-conditioned prior
            such as :class:`~diffrep_lite.priors.multiview.ViewConditionedMixture`); ``False`` gives None,
            so a prior that knows nothing of views (a digits model, Stable Diffusion) sees only ``cond``.

    ``render(params, views)`` is ``[B, V, C, H, w]``; :meth:`render_canvas` the whole canvas for display.
    """

    def __init__(self, canvas: Diffrep, view_width: int, *, offsets=None, stride: int | None = None,
                 wrap: bool = False, view_conditioned: bool = True):
        if not isinstance(canvas, Diffrep) or len(canvas.view_shape) != 3 or canvas.n_views != 1:
            raise TypeError("canvas must be a single-view diffrep_lite Diffrep rendering (C, H, W) images")
        self.canvas = canvas
        C, H, W = canvas.view_shape
        self.crops = Crops(W, view_width, offsets=offsets, stride=stride, wrap=wrap)
        self.view_shape = (C, H, view_width)
        self.n_views = self.crops.n_views
        if not isinstance(view_conditioned, bool):
            raise TypeError(f"view_conditioned must be True or False, got {view_conditioned!r}")
        self.view_conditioned = view_conditioned

    @property
    def canvas_shape(self) -> tuple:
        """``(C, H, W)`` of the whole canvas."""
        return tuple(self.canvas.view_shape)

    @property
    def offsets(self) -> tuple:
        return self.crops.offsets

    @property
    def wrap(self) -> bool:
        return self.crops.wrap

    def inner(self) -> Diffrep:
        return self.canvas

    def render_canvas(self, params) -> torch.Tensor:
        """The whole canvas ``[B, C, H, W]``."""
        return self.canvas.render(params)[:, 0]

    def render(self, params, views=None):
        return self.crops.crop(self.render_canvas(params), views)

    def shared_noise(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        """Crops of one canvas-sized standard normal field, ``[n, V, C, H, w]``: every view is
        marginally ``N(0, I)`` and overlapping views agree on their shared columns (across the seam too
        with ``wrap``)."""
        z = torch.randn(n, *self.canvas_shape, generator=generator, dtype=dtype, device=device)
        return self.crops.crop(z)

    def view_conds(self, views=None):
        """Each view's column offset (ints), the condition a view-conditioned prior expects; None when
        built with ``view_conditioned=False``."""
        if not self.view_conditioned:
            return None
        return [self.crops.offsets[v] for v in _select(self.n_views, views)]


class _PanoramaField(Diffrep):
    """The SIREN canvas of :class:`SirenPanorama` (one view: the whole ``C x H x W`` canvas)."""

    def __init__(self, module: nn.Module, channels: int, height: int, width: int, wrap: bool):
        self.module, self.wrap = module, wrap
        self.height, self.width = height, width
        self.view_shape = (channels, height, width)
        self._shapes = {k: tuple(v.shape) for k, v in module.named_parameters()}
        self._bounds = module.init_bounds()

    def param_shapes(self):
        return dict(self._shapes)

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return {k: (torch.rand(n, *shp, generator=generator, dtype=dtype, device=device) * 2 - 1) * self._bounds[k]
                for k, shp in self._shapes.items()}

    def coords(self, cols: torch.Tensor, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """Network inputs ``[H * len(cols), in]`` for pixel columns ``cols`` (row-major ``(y, col)``).

        Pixel spacing is ``2 / H`` in both directions: ``y`` runs over ``[-1, 1]``; without wrap ``x``
        runs over ``[-W/H, W/H]``; with wrap column ``c`` is the angle ``phi = 2 pi (c + 0.5) / W`` on a
        circle of radius ``R = W / (pi H)`` (circumference ``2 W / H``), input ``(R cos phi, R sin phi, y)``.
        """
        cols = torch.as_tensor(cols, dtype=torch.float64)
        ys = _centres(self.height, -1.0, 1.0, torch.float64, "cpu")
        yy, cc = torch.meshgrid(ys, cols, indexing="ij")
        yy, cc = yy.reshape(-1), cc.reshape(-1)
        if self.wrap:
            R, phi = self.width / (math.pi * self.height), 2 * math.pi * (cc + 0.5) / self.width
            xyz = torch.stack([R * torch.cos(phi), R * torch.sin(phi), yy], -1)
        else:
            x = (2 * (cc + 0.5) / self.width - 1) * self.width / self.height
            xyz = torch.stack([x, yy], -1)
        return xyz.to(dtype=dtype, device=device)

    def render_columns(self, params, cols) -> torch.Tensor:
        """Evaluate the field at pixel columns ``cols`` (any reals; periodic with ``wrap``): ``[B, C, H, len(cols)]``."""
        p0 = next(iter(params.values()))
        xyz = self.coords(cols, p0.dtype, p0.device)
        out = vmap(lambda p: functional_call(self.module, p, (xyz,)))(params)  # [B, H * n, C]
        B, C = out.shape[0], out.shape[-1]
        return out.transpose(1, 2).reshape(B, C, self.height, -1)

    def render(self, params, views=None):
        return self.render_columns(params, torch.arange(self.width))[:, None]


class SirenPanorama(Panorama):
    """One SIREN over a wide ``H x W`` canvas, seen through overlapping ``H x w`` crops.

    Args:
        height, width: canvas size ``H x W`` in pixels.
        view_width: crop width ``w`` (crops are full height).
        channels: output channels (1 grey, 3 RGB, 4 SD latents).
        offsets / stride: crop offsets (default every ``stride = w // 2`` columns), see :class:`Crops`.
        wrap: a 360° panorama: the SIREN sees the x coordinate as an angle (input ``(R cos, R sin, y)``),
            so the canvas is exactly periodic in ``x`` and crops may cross the seam.
        hidden, hidden_layers, omega_0: SIREN width, depth and frequency (see :class:`~.siren.Siren`).
        view_conditioned: pass the offsets to the prior as view conditions (see :class:`Panorama`).

    ``render(params, views)`` -> ``[B, V, C, H, w]``; ``render_canvas(params)`` -> ``[B, C, H, W]``;
    ``render_columns(params, cols)`` evaluates any (also out-of-range) columns.
    """

    def __init__(self, height: int = 16, width: int = 48, view_width: int = 16, *, channels: int = 1,
                 offsets=None, stride: int | None = None, wrap: bool = False, hidden: int = 64,
                 hidden_layers: int = 2, omega_0: float = 30.0, view_conditioned: bool = True):
        for name, val in (("height", height), ("width", width), ("channels", channels)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        module = Siren(3 if wrap else 2, channels, hidden=hidden, hidden_layers=hidden_layers, omega_0=omega_0)
        super().__init__(_PanoramaField(module, channels, height, width, wrap), view_width,
                         offsets=offsets, stride=stride, wrap=wrap, view_conditioned=view_conditioned)

    def render_columns(self, params, cols) -> torch.Tensor:
        """The SIREN at pixel columns ``cols`` (reals; column ``c`` and ``c + W`` agree with ``wrap``),
        ``[B, C, H, len(cols)]``."""
        return self.canvas.render_columns(params, cols)
