"""Toy diffreps with known Jacobians: identity (J = I), linear (x = A theta), a smooth 2-D warp."""
from __future__ import annotations

import math

import torch

from ..validation import check_finite_values, check_real
from .base import Diffrep

__all__ = ["Identity", "Linear", "Warp2D"]


class Identity(Diffrep):
    """``f(theta) = theta``: the sanity case, ``J = I``. DDR on it *is* DDIM in image space."""

    def __init__(self, shape):
        self.view_shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
        if not self.view_shape or any(s <= 0 for s in self.view_shape):
            raise ValueError(f"shape must be a tuple of positive ints, got {shape!r}")

    def param_shapes(self):
        return {"x": self.view_shape}

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return {"x": torch.zeros(n, *self.view_shape, dtype=dtype, device=device)}

    def render(self, params, views=None):
        return params["x"][:, None]


class Linear(Diffrep):
    """``x = A theta`` with ``A`` any ``m x n`` matrix; ``J = A`` and ``J^T J = A^T A`` exactly.

    With a Gaussian prior ``N(mu, s^2 I)`` on ``x`` and full column rank ``A``, the distribution DDR
    must sample is the prior restricted to ``range(A)``: ``theta ~ N(A^+ mu, s^2 (A^T A)^{-1})``.
    """

    def __init__(self, A):
        A = torch.as_tensor(A)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix [m, n], got shape {list(A.shape)}")
        check_finite_values(A, "A")
        self.A = A
        self.view_shape = (A.shape[0],)

    def param_shapes(self):
        return {"theta": (self.A.shape[1],)}

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return {"theta": torch.zeros(n, self.A.shape[1], dtype=dtype, device=device)}

    def render(self, params, views=None):
        th = params["theta"]
        return (th @ self.A.to(th).T)[:, None]


class Warp2D(Diffrep):
    """A smooth, nonlinear, invertible map of the plane (a shear-and-rotate warp)::

        u = (s1 * theta_1,  s2 * theta_2 + a * sin(w * theta_1)),   x = R(phi) u

    It is a diffeomorphism for any ``s1, s2 != 0`` (triangular map with non-zero diagonal, then a
    rotation), with Jacobian ``J = R [[s1, 0], [a w cos(w theta_1), s2]]`` — far from orthogonal, so
    ``J^T`` and ``J^{-1}`` disagree. :meth:`inverse` gives ``theta = f^{-1}(x)`` exactly.
    """

    view_shape = (2,)

    def __init__(self, s1: float = 1.5, s2: float = 0.5, a: float = 1.0, w: float = 1.5, phi: float = 0.5):
        for name, v in (("s1", s1), ("s2", s2), ("a", a), ("w", w), ("phi", phi)):
            check_real(v, name)
        if s1 == 0 or s2 == 0:
            raise ValueError("s1 and s2 must be non-zero for the warp to be invertible")
        self.s1, self.s2, self.a, self.w, self.phi = map(float, (s1, s2, a, w, phi))

    def _R(self, like):
        c, s = math.cos(self.phi), math.sin(self.phi)
        return torch.tensor([[c, -s], [s, c]], dtype=like.dtype, device=like.device)

    def param_shapes(self):
        return {"theta": (2,)}

    def init_params(self, n, *, generator=None, dtype=torch.float32, device="cpu"):
        return {"theta": torch.zeros(n, 2, dtype=dtype, device=device)}

    def render(self, params, views=None):
        th = params["theta"]
        u = torch.stack([self.s1 * th[:, 0], self.s2 * th[:, 1] + self.a * torch.sin(self.w * th[:, 0])], -1)
        return (u @ self._R(th).T)[:, None]

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """``theta = f^{-1}(x)`` for points ``x`` of shape ``[B, 2]``."""
        u = x @ self._R(x)  # R^{-1} = R^T, applied to row vectors
        t1 = u[:, 0] / self.s1
        t2 = (u[:, 1] - self.a * torch.sin(self.w * t1)) / self.s2
        return torch.stack([t1, t2], -1)
