"""Pull-back solvers: the least-squares step ``dtheta = argmin ||J dtheta - v||^2``.

This is the one piece of linear algebra that separates DDR from score distillation. The chain rule
gives the covector ``J^T v``; the inverse pulled-back metric ``(J^T J)^{-1}`` turns it into a vector.
When ``J^T J`` is singular (more parameters than outputs), the answer is the minimum-norm solution
``J^+ v``, which every solver here converges to from ``dtheta = 0``.

All solvers act on a batch of independent samples (every tensor has a leading ``B``) and solve one
problem per sample. ``render`` is a function ``params -> [B, ...]``.

* ``"dense"`` — builds ``J`` and solves exactly with the pseudo-inverse (tiny problems, test oracle).
* ``"cg"`` — CGLS: conjugate gradients on the normal equations ``(J^T J + lambda I) d = J^T v``, matrix
  free, one ``torch.func.jvp`` and one ``vjp`` per iteration.
* ``"adam"`` — the inner fit: ``iters`` Adam steps on ``||render(theta + d) - (render(theta) + v)||^2``
  from ``d = 0`` (nonlinear; only approximately the linear solution).
* ``"gd"`` — one plain gradient step ``d = lr * J^T v``: the covector alone (what SJC/SDS use).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.func import jacrev, jvp, vjp

__all__ = ["solve", "SOLVERS", "dense_solve", "cg_solve", "adam_solve", "gd_solve"]

Params = dict[str, torch.Tensor]


def _bdot(a: Params, b: Params) -> torch.Tensor:
    """Per-sample inner product of two param dicts -> ``[B]``."""
    return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)


def _bdot_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def _axpy(alpha: torch.Tensor, x: Params, y: Params) -> Params:
    """``y + alpha * x`` with a per-sample ``alpha`` ``[B]``."""
    return {k: y[k] + alpha.reshape(-1, *([1] * (x[k].ndim - 1))) * x[k] for k in y}


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def cg_solve(render: Callable, params: Params, v: torch.Tensor, *, iters: int = 20, damping: float = 0.0,
             tol: float = 0.0, **_) -> Params:
    """CGLS for ``min ||J d - v||^2 + damping ||d||^2`` per sample, started at ``d = 0``.

    With ``damping = 0`` and ``J^T J`` singular, the iterates stay in ``range(J^T)`` and converge to the
    minimum-norm solution ``J^+ v``. At most ``iters`` iterations, costing one jvp and one vjp each (plus
    one vjp). A sample stops updating once ``||J^T r||`` reaches round-off (about ``100 eps ||J|| ||r||``,
    or ``100 eps ||J^T v||``), and the loop ends when every sample has; ``tol`` stops early (all samples)
    once ``||J^T r|| <= tol * ||J^T v||``.
    """
    params = {k: t.detach() for k, t in params.items()}
    _, vjp_fn = vjp(render, params)

    def J(d):
        return jvp(render, (params,), (d,))[1]

    def Jt(r):
        return vjp_fn(r)[0]

    d = {k: torch.zeros_like(t) for k, t in params.items()}
    r = v.detach().clone()
    s = Jt(r)
    p = {k: t.clone() for k, t in s.items()}
    gamma = _bdot(s, s)
    gamma0 = gamma.clone()
    # A sample stops (alpha = beta = 0 from then on) once ||J^T r|| reaches round-off, ~eps ||J|| ||r||:
    # iterating past that point divides round-off by round-off and can blow the solution up (seen on
    # tall J, where r never vanishes). ||J||^2 is estimated by the largest Rayleigh quotient seen.
    floor = (100 * torch.finfo(gamma.dtype).eps) ** 2
    norm2 = torch.zeros_like(gamma)
    active = gamma > floor * gamma0
    for _ in range(iters):
        if not bool(active.any()):
            break
        q = J(p)
        pp = _bdot(p, p)
        den = _bdot_t(q, q) + damping * pp
        norm2 = torch.maximum(norm2, _safe_div(den, pp))
        alpha = torch.where(active, _safe_div(gamma, den), torch.zeros_like(gamma))
        d = _axpy(alpha, p, d)
        r = r - alpha.reshape(-1, *([1] * (r.ndim - 1))) * q
        s = Jt(r)
        if damping:
            s = _axpy(torch.full_like(alpha, -damping), d, s)
        gamma_new = _bdot(s, s)
        beta = torch.where(active, _safe_div(gamma_new, gamma), torch.zeros_like(gamma))
        p = _axpy(beta, p, s)
        gamma = torch.where(active, gamma_new, gamma)
        scale = torch.maximum(gamma0, norm2 * (_bdot_t(r, r) + damping * _bdot(d, d)))
        active = active & (gamma > floor * scale)
        if tol and torch.all(gamma <= (tol**2) * gamma0):
            break
    return d


def dense_solve(render: Callable, params: Params, v: torch.Tensor, *, damping: float = 0.0, **_) -> Params:
    """Exact solve with a dense Jacobian per sample: ``J^+ v`` (``damping = 0``) or
    ``(J^T J + damping I)^{-1} J^T v``. Only for small problems (it builds ``[n_out, n_params]``)."""
    keys = list(params)
    shapes = {k: params[k].shape[1:] for k in keys}
    sizes = [params[k][0].numel() for k in keys]
    B = v.shape[0]
    out = {k: torch.empty_like(params[k]) for k in keys}
    for b in range(B):
        flat0 = torch.cat([params[k][b].reshape(-1) for k in keys]).detach()

        def f(flat):
            parts = torch.split(flat, sizes)
            p = {k: parts[i].reshape(1, *shapes[k]) for i, k in enumerate(keys)}
            return render(p).reshape(-1)

        Jm = jacrev(f)(flat0)  # [n_out, n_params]
        rhs = v[b].reshape(-1)
        if damping:
            A = Jm.T @ Jm + damping * torch.eye(Jm.shape[1], dtype=Jm.dtype, device=Jm.device)
            sol = torch.linalg.solve(A, Jm.T @ rhs)
        else:
            sol = torch.linalg.pinv(Jm) @ rhs
        for i, part in enumerate(torch.split(sol, sizes)):
            out[keys[i]][b] = part.reshape(shapes[keys[i]])
    return out


def adam_solve(render: Callable, params: Params, v: torch.Tensor, *, iters: int = 20, lr: float = 1e-3,
               **_) -> Params:
    """Inner Adam fit: ``iters`` steps on ``0.5 ||render(theta + d) - (render(theta) + v)||^2`` from ``d = 0``.

    Nonlinear and preconditioned by Adam's diagonal, so only approximately ``J^+ v`` (see the book's
    practical guide). Samples are independent: the loss is a sum over the batch and Adam is elementwise.
    """
    params = {k: t.detach() for k, t in params.items()}
    with torch.no_grad():
        target = render(params) + v
    d = {k: torch.zeros_like(t, requires_grad=True) for k, t in params.items()}
    opt = torch.optim.Adam(list(d.values()), lr=lr)
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        x = render({k: params[k] + d[k] for k in params})
        loss = 0.5 * ((x - target) ** 2).sum()
        loss.backward()
        opt.step()
    return {k: t.detach() for k, t in d.items()}


def gd_solve(render: Callable, params: Params, v: torch.Tensor, *, lr: float = 1.0, **_) -> Params:
    """The covector alone: ``d = lr * J^T v`` (one gradient step; no metric)."""
    params = {k: t.detach() for k, t in params.items()}
    _, vjp_fn = vjp(render, params)
    return {k: lr * t for k, t in vjp_fn(v.detach())[0].items()}


#: Solver name -> function; the names :func:`solve` and the samplers' ``solver=`` accept.
SOLVERS = {"dense": dense_solve, "cg": cg_solve, "adam": adam_solve, "gd": gd_solve}


def solve(render: Callable, params: Params, v: torch.Tensor, *, solver: str = "cg", **kw) -> Params:
    """Solve ``min_d ||J d - v||^2`` per sample with the named solver (``dense``, ``cg``, ``adam``, ``gd``).

    Args:
        render: ``params -> [B, ...]`` (a diffrep's render with its views bound).
        params: the linearisation point (each tensor ``[B, ...]``).
        v: ``[B, ...]`` right-hand side, the shape of ``render(params)``.
        solver: solver name; keyword options go to it (``iters``, ``damping``, ``lr``, ``tol``).

    Returns:
        the increment ``d`` as a dict shaped like ``params``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    return SOLVERS[solver](render, params, v, **kw)
