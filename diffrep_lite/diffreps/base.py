"""The representation side: a diffrep is a pure function from parameters to rendered views.

Parameters are a plain ``dict[str, Tensor]`` whose tensors all carry a leading *sample* dimension
``B`` (``B`` independent samples are rendered in one vectorised call). ``render(params, views)``
returns ``[B, V, *view_shape]``: ``V`` views of each sample, each in the prior's data space.
Because ``render`` is pure, ``torch.func.jvp`` / ``torch.func.vjp`` give ``J`` and ``J^T`` with no
hand-written derivative (see :mod:`diffrep_lite.pullback`).
"""
from __future__ import annotations

import math

import torch

__all__ = ["Diffrep", "check_params"]


class Diffrep:
    """Base class. Subclasses set ``view_shape`` and ``n_views`` and implement
    :meth:`param_shapes`, :meth:`init_params` and :meth:`render`.

    Multi-view diffreps (panoramas, NeRFs) declare their views with ``n_views`` and may give each
    view a condition for the prior through :meth:`view_conds` (a crop offset, a camera's prompt suffix).
    """

    view_shape: tuple = ()
    n_views: int = 1
    #: The name of DDR's default settings for this kind of diffrep (:data:`diffrep_lite.presets.DDR_PRESETS`).
    ddr_preset: str = "default"
    #: Whether the diffrep builds its pixel kernel ``J J^T`` without Jacobian products (:meth:`pixel_kernel`),
    #: which the exact ``Kernel`` solver and the K-FAC preconditioner need.
    has_pixel_kernel: bool = False

    def param_shapes(self) -> dict[str, tuple]:
        """Shape of each parameter tensor for ONE sample (without the leading ``B``)."""
        raise NotImplementedError

    def init_params(self, n: int, *, generator: torch.Generator | None = None,
                    dtype=torch.float32, device="cpu") -> dict[str, torch.Tensor]:
        """``n`` initial parameter sets (each tensor ``[n, *shape]``)."""
        raise NotImplementedError

    def render(self, params: dict[str, torch.Tensor], views=None) -> torch.Tensor:
        """Render every sample: ``[B, V, *view_shape]`` (``views=None``: all ``n_views`` views)."""
        raise NotImplementedError

    def view_conds(self, views=None):
        """A per-view condition for the prior (length ``V``), or None when views are unconditioned."""
        return None

    def shared_noise(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32,
                     device="cpu") -> torch.Tensor | None:
        """Noise for all views drawn as one field seen through the views, ``[n, V, *view_shape]``, or None.

        Each view's noise is marginally ``N(0, I)`` and views that share pixels share their noise there.
        It is used by DDR's ``view_noise="shared"``. The base class returns None, meaning the diffrep has no
        such field (a NeRF's views are projections, not crops). :class:`~.panorama.Panorama` crops one
        canvas-sized field.
        """
        return None

    def pixel_kernel(self, params_one: dict[str, torch.Tensor]) -> torch.Tensor:
        """``J J^T`` of one sample ``[M, M]`` in render order, for diffreps with ``has_pixel_kernel``."""
        raise NotImplementedError(f"{type(self).__name__} has no pixel kernel (has_pixel_kernel is False)")

    def kfac_preconditioner(self, params: dict[str, torch.Tensor], *, damping: float = 1e-5):
        """A Kronecker-factored preconditioner ``s -> M^{-1} s`` of the pull-back solve at ``params``
        (:class:`~diffrep_lite.pullback.KroneckerPreconditioner`), or None when the diffrep has none (the base
        class). :class:`~.siren.NeuralField` implements it; DDR's ``preconditioner="kfac"`` uses it and rejects
        diffreps that return None.
        """
        return None

    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())


def check_params(diffrep: Diffrep, params, name: str = "params0"):
    """Validate a parameter dict against ``diffrep.param_shapes()``; returns the batch size ``B``."""
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of tensors, got {type(params).__name__}")
    shapes = diffrep.param_shapes()
    if set(params) != set(shapes):
        raise ValueError(f"{name} must have the keys {sorted(shapes)}, got {sorted(params)}")
    batch = None
    for k, shp in shapes.items():
        t = params[k]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}[{k!r}] must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape[1:]) != tuple(shp):
            raise ValueError(f"{name}[{k!r}] must have shape [B, {', '.join(map(str, shp))}], got {list(t.shape)}")
        if batch is None:
            batch = t.shape[0]
        elif t.shape[0] != batch:
            raise ValueError(f"{name}: every tensor needs the same leading batch size, {k!r} has {t.shape[0]} not {batch}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}[{k!r}] contains NaN or inf")
    return batch
