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

from ..validation import check_real
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
        check_real(omega_0, "omega_0", low=0, low_open=True)
        check_real(hidden_omega_0, "hidden_omega_0", low=0, low_open=True, allow_none=True)
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

    #: DDR's defaults for coordinate networks (:data:`diffrep_lite.presets.DDR_PRESETS`).
    ddr_preset = "neural_field"

    @property
    def has_pixel_kernel(self) -> bool:
        """Whether :meth:`pixel_kernel` and :meth:`kfac_preconditioner` apply: every parameter sits in an
        ``nn.Linear`` layer."""
        return self.linear_layers() is not None

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

    def linear_layers(self):
        """The ``nn.Linear`` layers ``[(name, module)]`` in order, or None when some parameter belongs to something
        else: the layers whose per-pixel factors :meth:`pixel_layer_grads`, :meth:`pixel_kernel` and
        :meth:`kfac_preconditioner` use."""
        linears = [(name, m) for name, m in self.module.named_modules() if isinstance(m, nn.Linear)]
        keys = {f"{n}.weight" for n, _ in linears} | {f"{n}.bias" for n, m in linears if m.bias is not None}
        return linears if keys == set(self._shapes) else None


    def pixel_layer_grads(self, params_one: dict, linears=None):
        """Per-pixel quantities of every linear layer for ONE parameter set (tensors without the batch dim).

        Returns ``{name: (g, a)}``: ``g`` ``[C * N, out]`` the gradients of each output channel at each pixel
        with respect to the layer's pre-activation at that pixel (channel-major), ``a`` ``[N, in (+1)]`` the
        layer's input at each pixel (with a column of ones when the layer has a bias). A coordinate network maps
        each coordinate on its own, so one backward pass per output channel (``C`` passes, no weight
        gradients) gives every ``g`` exactly: ``d f_c(n) / d W = g_cn a_n^T``. Assumes the module treats the
        rows of its input independently (an MLP, no batch normalisation) and calls each ``nn.Linear`` once.
        """
        linears = self.linear_layers() if linears is None else linears
        if linears is None:
            raise ValueError(f"{type(self.module).__name__} has parameters outside nn.Linear layers")
        p = {k: t.detach() for k, t in params_one.items()}
        coords = self.coords.to(next(iter(p.values())))
        acts, probes, hooks = {}, {}, []

        def make_hook(name):
            def hook(mod, inp, out):
                if name in acts:
                    raise RuntimeError(f"the layer {name!r} is called twice in one forward pass")
                acts[name] = inp[0].detach()
                probes[name] = torch.zeros_like(out, requires_grad=True)
                return out + probes[name]
            return hook

        for name, m in linears:
            hooks.append(m.register_forward_hook(make_hook(name)))
        try:
            with torch.enable_grad():
                out = functional_call(self.module, p, (coords,))
                C = out.shape[-1]
                grads = [torch.autograd.grad(out[..., c].sum(), [probes[n] for n, _ in linears],
                                             retain_graph=c < C - 1) for c in range(C)]
        finally:
            for h in hooks:
                h.remove()
        res = {}
        for i, (name, m) in enumerate(linears):
            g = torch.cat([grads[c][i].reshape(-1, m.out_features) for c in range(C)])
            a = acts[name].reshape(-1, m.in_features)
            if m.bias is not None:
                a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
            res[name] = (g, a)
        return res

    def pixel_kernel(self, params_one: dict) -> torch.Tensor:
        """The exact pixel kernel ``K = J J^T`` of ONE parameter set, ``[M, M]`` with ``M`` the render's size, in
        the order of ``render(params).reshape(-1)``.

        From :meth:`pixel_layer_grads`, with no Jacobian products: ``J``'s row for output ``(c, n)`` and layer
        ``l`` is ``g_lcn a_ln^T``, so ``K[(c, n), (c', n')] = sum_l (a_ln . a_ln') (g_lcn . g_lc'n')``. Cost
        ``O(M^2 width)`` and a few ``M x M`` matrices of memory: ``K`` is 768 x 768 for a 16 x 16 RGB image and
        12,288 x 12,288 (600 MB in float32) at 64 x 64. :func:`~diffrep_lite.pullback.kernel_solve` solves with it.
        """
        K = None
        for g, a in self.pixel_layer_grads(params_one).values():
            N, C = a.shape[0], g.shape[0] // a.shape[0]
            term = (g @ g.T).mul_((a @ a.T).repeat(C, C))
            K = term if K is None else K.add_(term)
        if len(self.view_shape) != 3:  # render order is pixel-major: (n, c), not (c, n)
            perm = torch.arange(C * N, device=K.device).reshape(C, N).T.reshape(-1)
            K = K[perm][:, perm]
        return K

    def kfac_preconditioner(self, params, *, damping: float = 1e-5):
        """The K-FAC preconditioner of the pull-back at ``params`` (:class:`~diffrep_lite.pullback.KroneckerPreconditioner`),
        or None when some parameter is not the weight or bias of an ``nn.Linear`` layer.

        Per sample and layer, from :meth:`pixel_layer_grads`: ``G = sum_{c,n} g_cn g_cn^T`` and
        ``A = mean_n [a_n, 1][a_n, 1]^T``. Cost: about one forward and ``C`` backward passes of the network
        per sample, plus ``O(width^3)`` eigendecompositions.
        """
        from ..pullback import KroneckerPreconditioner

        linears = self.linear_layers()
        if linears is None:
            return None
        B = next(iter(params.values())).shape[0]
        G = {n: [] for n, _ in linears}
        A = {n: [] for n, _ in linears}
        for b in range(B):
            for name, (g, a) in self.pixel_layer_grads({k: t[b] for k, t in params.items()}, linears).items():
                G[name].append(g.T @ g)
                A[name].append(a.T @ a / a.shape[0])
        blocks = [(f"{n}.weight", f"{n}.bias" if m.bias is not None else None, torch.stack(G[n]), torch.stack(A[n]))
                  for n, m in linears]
        return KroneckerPreconditioner(blocks, damping=damping)

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
