"""Neural fields as diffreps: any ``nn.Module`` mapping coordinates to values, and the SIREN image.

A :class:`NeuralField` holds one template module; a batch of ``B`` independent parameter sets is
rendered with ``torch.func.vmap`` over ``torch.func.functional_call`` (the "model ensembling" pattern
of ``torch.func``), so ``B`` SIRENs cost one vectorised call.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, vmap

from .base import Diffrep

__all__ = ["SineLayer", "Siren", "NeuralField", "SirenImage", "grid_coords"]


def grid_coords(height: int, width: int, *, x_range=(-1.0, 1.0), y_range=(-1.0, 1.0),
                dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Pixel-centre coordinates ``[H * W, 2]`` (columns ``(x, y)``) of an ``H x W`` grid, row-major."""
    ys = _centres(height, *y_range, dtype, device)
    xs = _centres(width, *x_range, dtype, device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


def _centres(n, lo, hi, dtype, device):
    step = (hi - lo) / n
    return lo + step * (torch.arange(n, dtype=dtype, device=device) + 0.5)


class SineLayer(nn.Module):
    """``y = sin(omega_0 (W x + b))`` (Sitzmann et al. 2020)."""

    def __init__(self, in_features: int, out_features: int, omega_0: float, is_first: bool):
        super().__init__()
        self.omega_0, self.is_first = float(omega_0), is_first
        self.linear = nn.Linear(in_features, out_features)

    def weight_bound(self) -> float:
        n = self.linear.in_features
        return 1.0 / n if self.is_first else math.sqrt(6.0 / n) / self.omega_0

    def forward(self, x):
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """SIREN: ``hidden_layers + 1`` sine layers of width ``hidden`` and a linear output layer.

    Initialisation follows the reference implementation: first-layer weights ``U(-1/n_in, 1/n_in)``,
    later weights ``U(-sqrt(6/n_in)/omega_0, +)``, biases ``U(-1/sqrt(n_in), +)`` (PyTorch's default).
    """

    def __init__(self, in_features: int = 2, out_features: int = 3, hidden: int = 64,
                 hidden_layers: int = 2, omega_0: float = 30.0, hidden_omega_0: float | None = None):
        super().__init__()
        if hidden < 1 or hidden_layers < 0:
            raise ValueError(f"hidden must be >= 1 and hidden_layers >= 0, got {hidden}, {hidden_layers}")
        if not omega_0 > 0:
            raise ValueError(f"omega_0 must be > 0, got {omega_0!r}")
        h0 = omega_0 if hidden_omega_0 is None else hidden_omega_0
        layers = [SineLayer(in_features, hidden, omega_0, True)]
        layers += [SineLayer(hidden, hidden, h0, False) for _ in range(hidden_layers)]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, out_features)
        self._out_bound = math.sqrt(6.0 / hidden) / h0

    def init_bounds(self) -> dict[str, float]:
        """Uniform init bound of every parameter (by ``named_parameters`` name)."""
        bounds = {}
        for name, mod in self.named_modules():
            if isinstance(mod, SineLayer):
                bounds[f"{name}.linear.weight"] = mod.weight_bound()
                bounds[f"{name}.linear.bias"] = 1.0 / math.sqrt(mod.linear.in_features)
        bounds["out.weight"] = self._out_bound
        bounds["out.bias"] = 1.0 / math.sqrt(self.out.in_features)
        return bounds

    def forward(self, coords):
        return self.out(self.net(coords))


class NeuralField(Diffrep):
    """A coordinate network rendered on a fixed set of coordinates.

    Args:
        module: the template ``nn.Module`` mapping ``[N, in]`` coordinates to ``[N, C]`` values.
        coords: ``[N, in]`` coordinates the single view is rendered at.
        view_shape: how the ``[N, C]`` output is arranged, e.g. ``(C, H, W)`` for an image.
        init_bounds: ``{name: b}`` uniform init bounds; defaults to ``module.init_bounds()``.
    """

    def __init__(self, module: nn.Module, coords: torch.Tensor, view_shape, init_bounds=None):
        self.module = module
        self.coords = coords
        self.view_shape = tuple(view_shape)
        self._shapes = {k: tuple(v.shape) for k, v in module.named_parameters()}
        self._bounds = dict(init_bounds if init_bounds is not None else module.init_bounds())
        missing = set(self._shapes) - set(self._bounds)
        if missing:
            raise ValueError(f"init_bounds lacks {sorted(missing)}")

    def param_shapes(self):
        return dict(self._shapes)

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return {
            k: (torch.rand(n, *shp, generator=generator, dtype=dtype, device=device) * 2 - 1) * self._bounds[k]
            for k, shp in self._shapes.items()
        }

    def _field(self, params, coords):
        """Evaluate the field of every sample at ``coords`` ``[N, in]`` -> ``[B, N, C]``."""
        coords = coords.to(next(iter(params.values())))
        return vmap(lambda p: functional_call(self.module, p, (coords,)))(params)

    def render(self, params, views=None):
        out = self._field(params, self.coords)  # [B, N, C]
        B, C = out.shape[0], out.shape[-1]
        img = out.transpose(1, 2).reshape(B, C, *self.view_shape[1:]) if len(self.view_shape) == 3 else out.reshape(B, *self.view_shape)
        return img[:, None]


class SirenImage(NeuralField):
    """A SIREN image: ``(x, y) in [-1, 1]^2 -> channels``, rendered at ``resolution``.

    Args:
        resolution: ``H`` or ``(H, W)`` of the rendered view.
        channels: output channels (3 for RGB, 1 for grey, 4 for SD latents, any ``k``).
        hidden, hidden_layers, omega_0: SIREN width, number of hidden sine layers and frequency ``omega_0``.
    """

    def __init__(self, resolution=32, channels: int = 3, *, hidden: int = 64, hidden_layers: int = 2,
                 omega_0: float = 30.0):
        H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if H < 1 or W < 1 or channels < 1:
            raise ValueError(f"resolution and channels must be positive, got {(H, W)}, {channels}")
        self.resolution, self.channels = (H, W), channels
        module = Siren(2, channels, hidden=hidden, hidden_layers=hidden_layers, omega_0=omega_0)
        super().__init__(module, grid_coords(H, W), (channels, H, W))
