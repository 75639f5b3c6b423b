"""Pull-back solvers: the least-squares step ``dtheta = argmin ||J dtheta - v||^2``.

This is the one piece of linear algebra that separates DDR from score distillation. The chain rule
gives the covector ``J^T v``; the inverse pulled-back metric ``(J^T J)^{-1}`` turns it into a vector.
When ``J^T J`` is singular (more parameters than outputs), the answer is the minimum-norm solution
``J^+ v``, which every solver here converges to from ``dtheta = 0``.

All solvers act on a batch of independent samples (every tensor has a leading ``B``) and solve one
problem per sample. ``render`` is a function ``params -> [B, ...]``.

* ``"dense"`` — builds ``J`` and solves exactly with the pseudo-inverse (tiny problems, test oracle).
* ``"kernel"`` — exact, through the pixel kernel ``J J^T`` that coordinate networks build without Jacobian
  products (:func:`kernel_solve`): one vjp per solve, ``O(M^2)`` memory for ``M`` outputs.
* ``"cg"`` — CGLS: conjugate gradients on the normal equations ``(J^T J + lambda I) d = J^T v``, matrix
  free, one ``torch.func.jvp`` and one ``vjp`` per iteration; optionally preconditioned
  (:class:`KroneckerPreconditioner` for coordinate networks, :class:`JacobiPreconditioner` from
  :func:`hutchinson_diagonal`) or warm-started. Preconditioning cuts the linear residual per iteration, but
  when ``J`` has a null space a preconditioned (or warm-started) CG tends to the solution of least norm in the
  preconditioner's metric, not ``J^+ v``; plain CG from ``d = 0`` and the exact ``"kernel"`` solve stay in
  ``range(J^T)``.
* ``"adam"`` — the inner fit: ``iters`` Adam steps on ``||render(theta + d) - (render(theta) + v)||^2``
  from ``d = 0`` (nonlinear; only approximately the linear solution).
* ``"gd"`` — one plain gradient step ``d = lr * J^T v``: the covector alone (what SJC/SDS use).
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch.func import jacrev, jvp, vjp

from .validation import check_int, check_real

__all__ = ["solve", "SOLVERS", "Solver", "Dense", "Kernel", "CG", "Adam", "GD", "make_solver", "dense_solve", "kernel_solve", "cg_solve", "adam_solve", "gd_solve",
           "KroneckerPreconditioner", "JacobiPreconditioner", "hutchinson_diagonal", "PRECONDITIONERS", "preconditioner"]

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
             tol: float = 0.0, precond: Callable[[Params], Params] | None = None, x0: Params | None = None,
             check_every: int = 8, callback: Callable | None = None) -> Params:
    """CGLS for ``min ||J d - v||^2 + damping ||d||^2`` per sample, preconditioned by ``precond``.

    ``iters`` counts Jacobian-product pairs: ``iters`` jvps and ``iters`` vjps (the ``J^T r`` after the last
    step would only feed a next step, so it is not computed). A warm start ``x0`` costs one more jvp.

    * Without ``precond``, started at ``d = 0`` and with ``damping = 0``, the iterates stay in ``range(J^T)``
      and converge to the minimum-norm solution ``J^+ v`` when ``J^T J`` is singular.
    * ``precond``: a symmetric positive definite ``M^{-1}`` as a function ``s -> M^{-1} s`` on parameter dicts
      (an approximation of ``(J^T J)^{-1}``, e.g. :class:`KroneckerPreconditioner`): conjugate gradients on the
      normal equations in the ``M`` inner product. Same least-squares solutions; in the singular case the
      limit is the solution of least ``M``-norm ``d^T M d`` instead of the least Euclidean norm.
    * ``x0``: start at ``d = x0`` (e.g. the previous solve's answer); the iterates then converge to the
      solution nearest ``x0`` in the singular case.

    A sample stops updating once ``||J^T r||`` reaches round-off (about ``100 eps ||J|| ||r||``, or
    ``100 eps ||J^T v||``). The loop ends early when every sample has stopped, or when ``tol > 0`` and
    ``||J^T r|| <= tol * ||J^T v||`` for all samples; both are checked every ``check_every`` iterations only,
    because each check waits for the device (``check_every=0``: never, a fixed count of ``iters``).
    ``callback(k, d, r)``, if given, is called after every step with the number ``k`` of Jacobian-product
    pairs spent, the iterate ``d`` and its residual ``r = v - J d`` (as CGLS updates it; benchmarks use it).
    """
    params = {k: t.detach() for k, t in params.items()}
    _, vjp_fn = vjp(render, params)

    def J(d):
        return jvp(render, (params,), (d,))[1]

    def Jt(r):
        return vjp_fn(r)[0]

    if x0 is None:
        d = {k: torch.zeros_like(t) for k, t in params.items()}
        r = v.detach().clone()
    else:
        d = {k: x0[k].detach().to(params[k]).clone() for k in params}
        r = v.detach() - J(d)
    s = Jt(r)
    if damping and x0 is not None:
        s = _axpy(torch.full((r.shape[0],), -damping, dtype=r.dtype, device=r.device), d, s)
    z = s if precond is None else precond(s)
    p = {k: t.clone() for k, t in z.items()}
    gamma = _bdot(s, z)  # the CG coefficient: ||J^T r||^2 in the M^{-1} inner product
    g2 = gamma if precond is None else _bdot(s, s)  # ||J^T r||^2, for the stopping rules
    g2_0 = g2.clone()
    # A sample stops (alpha = beta = 0 from then on) once ||J^T r|| reaches round-off, ~eps ||J|| ||r||:
    # iterating past that point divides round-off by round-off and can blow the solution up (seen on
    # tall J, where r never vanishes). ||J||^2 is estimated by the largest Rayleigh quotient seen.
    floor = (100 * torch.finfo(gamma.dtype).eps) ** 2
    norm2 = torch.zeros_like(gamma)
    active = g2 > floor * g2_0
    for it in range(iters):
        if check_every and it % check_every == 0:
            if not bool(active.any()) or (tol and it and bool(torch.all(g2 <= (tol**2) * g2_0))):
                break
        q = J(p)
        pp = _bdot(p, p)
        den = _bdot_t(q, q) + damping * pp
        norm2 = torch.maximum(norm2, _safe_div(den, pp))
        alpha = torch.where(active, _safe_div(gamma, den), torch.zeros_like(gamma))
        d = _axpy(alpha, p, d)
        r = r - alpha.reshape(-1, *([1] * (r.ndim - 1))) * q
        if callback is not None:
            callback(it + 1, d, r)
        if it == iters - 1:
            break  # J^T r would only feed the next step
        s = Jt(r)
        if damping:
            s = _axpy(torch.full_like(alpha, -damping), d, s)
        z = s if precond is None else precond(s)
        gamma_new = _bdot(s, z)
        beta = torch.where(active, _safe_div(gamma_new, gamma), torch.zeros_like(gamma))
        p = _axpy(beta, p, z)
        gamma = torch.where(active, gamma_new, gamma)
        g2 = torch.where(active, gamma_new if precond is None else _bdot(s, s), g2)
        scale = torch.maximum(g2_0, norm2 * (_bdot_t(r, r) + damping * _bdot(d, d)))
        active = active & (g2 > floor * scale)
    return d


class KroneckerPreconditioner:
    """``M^{-1}`` of a Kronecker-factored (K-FAC) approximation of ``J^T J`` for networks of linear layers.

    For a linear layer ``u = W a + b`` inside a coordinate network (one output pixel per input
    coordinate ``n``) the block of ``J^T J`` that belongs to ``[W, b]`` is
    ``sum_{c,n} (g_cn g_cn^T) (x) (a~_n a~_n^T)`` with ``a~ = [a, 1]`` and ``g_cn = d f_c(n) / d u_n``. K-FAC
    (Martens & Grosse 2015) replaces it by ``G (x) A`` with ``G = sum_{c,n} g_cn g_cn^T`` and
    ``A = mean_n a~_n a~_n^T``, whose inverse is two small matrix inverses:
    ``M^{-1} [dW, db] = G^{-1} [dW, db] A^{-1}`` (each factor damped by ``damping`` times its largest
    eigenvalue). Layers are treated independently (block diagonal). For the output layer of a network the
    factorisation is exact.

    Args:
        blocks: ``(weight_key, bias_key or None, G [B, o, o], A [B, i, i])`` per layer, ``i`` = inputs
            (+1 with a bias); every parameter of the problem must belong to one block.
        damping: relative damping of each factor's eigenvalues (> 0).

    Calling it on a parameter-shaped dict ``s`` returns ``M^{-1} s`` (the ``precond`` of :func:`cg_solve`).
    """

    def __init__(self, blocks, damping: float = 1e-5):
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping!r}")
        self.blocks = []
        for wk, bk, G, A in blocks:
            self.blocks.append((wk, bk, self._inverse(G, damping), self._inverse(A, damping)))

    @staticmethod
    def _inverse(M: torch.Tensor, damping: float) -> torch.Tensor:
        """Damped inverse of a batch of symmetric PSD matrices (eigendecomposition in float64)."""
        e, V = torch.linalg.eigh(M.double())
        e = e.clamp_min(0) + damping * e.amax(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        return ((V / e.unsqueeze(-2)) @ V.transpose(-1, -2)).to(M.dtype)

    def keys(self) -> set:
        return {k for wk, bk, _, _ in self.blocks for k in (wk, bk) if k is not None}

    def __call__(self, s: Params) -> Params:
        out = {}
        for block in self.blocks:
            wk, bk = block[:2]
            W = s[wk] if bk is None else torch.cat([s[wk], s[bk].unsqueeze(-1)], -1)
            W = self._apply(block, W)
            if bk is None:
                out[wk] = W
            else:
                out[wk], out[bk] = W[..., :-1], W[..., -1]
        return out

    @staticmethod
    def _apply(block, W: torch.Tensor) -> torch.Tensor:
        """``M^{-1}`` of one block on its ``[B, out, in (+1)]`` slice ``W`` (the bias as the last column)."""
        return block[2] @ W @ block[3]


def hutchinson_diagonal(render: Callable, params: Params, probes: int = 16,
                        generator: torch.Generator | None = None) -> Params:
    """Hutchinson's estimate of ``diag(J^T J)`` per sample: ``mean_j (J^T z_j)^2`` over ``probes`` Rademacher
    vectors ``z_j`` (``probes`` vjps, one after another). Unbiased; exact for every probe when ``J``
    has one non-zero per row and column (e.g. a diagonal ``J``)."""
    params = {k: t.detach() for k, t in params.items()}
    out, vjp_fn = vjp(render, params)
    acc = {k: torch.zeros_like(t) for k, t in params.items()}
    for _ in range(probes):
        z = torch.randint(0, 2, out.shape, generator=generator, device=out.device).to(out.dtype) * 2 - 1
        for k, t in vjp_fn(z)[0].items():
            acc[k] += t * t
    return {k: t / probes for k, t in acc.items()}


class JacobiPreconditioner:
    """``M^{-1} s = s / D`` with ``D`` a diagonal of ``J^T J`` (e.g. :func:`hutchinson_diagonal`), floored per
    sample at ``floor`` times its mean so that entries the estimate puts near zero are not blown up."""

    def __init__(self, diag: Params, floor: float = 1e-3):
        self.inv = {}
        for k, t in diag.items():
            mean = t.flatten(1).mean(1).reshape(-1, *([1] * (t.ndim - 1)))
            self.inv[k] = 1.0 / torch.maximum(t, floor * mean).clamp_min(torch.finfo(t.dtype).tiny)

    def __call__(self, s: Params) -> Params:
        return {k: s[k] * self.inv[k] for k in s}


def dense_solve(render: Callable, params: Params, v: torch.Tensor, *, damping: float = 0.0) -> Params:
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


def kernel_solve(render: Callable, params: Params, v: torch.Tensor, *, kernel: Callable,
                 damping: float = 0.0) -> Params:
    """Exact solve through the pixel kernel: ``d = J^T (J J^T + damping I)^+ v`` per sample, one vjp in all.

    ``J^T (J J^T)^+ = J^+``, so with ``damping = 0`` this is the minimum-norm solution ``J^+ v`` of the dense
    solver, and with ``damping > 0`` it is ``(J^T J + damping I)^{-1} J^T v``. ``kernel(params_one)`` returns the
    ``[M, M]`` matrix ``J J^T`` of one sample in the order of ``render(params)[b].reshape(-1)``; coordinate
    networks build it without Jacobian products
    (:meth:`~diffrep_lite.diffreps.siren.NeuralField.pixel_kernel`). It is factored in float64 (Cholesky; an
    eigendecomposition when ``K`` is singular, i.e. more outputs than parameters). Cost per sample:
    ``O(M^2 width)`` to build, ``O(M^3)`` to factor, a few ``M x M`` matrices of memory (the practical guide's
    measurements give the crossover with CG).
    """
    params = {k: t.detach() for k, t in params.items()}
    us = []
    for b in range(v.shape[0]):
        K = kernel({k: t[b] for k, t in params.items()}).double()
        rhs = v[b].reshape(-1, 1).double()
        if K.shape[0] != rhs.shape[0]:
            raise ValueError(f"kernel must return a [{rhs.shape[0]}, {rhs.shape[0]}] matrix (the render's size), "
                             f"got {tuple(K.shape)}")
        if damping:
            K.diagonal().add_(damping)
        L, info = torch.linalg.cholesky_ex(K)
        if info == 0:
            u = torch.cholesky_solve(rhs, L)
        else:  # singular K: the pseudo-inverse from its eigendecomposition
            lam, V = torch.linalg.eigh(K)
            keep = lam > lam.max() * K.shape[0] * torch.finfo(torch.float64).eps * 1e3
            u = V[:, keep] @ ((V[:, keep].T @ rhs) / lam[keep, None])
        us.append(u.reshape(v.shape[1:]).to(v.dtype))
    _, vjp_fn = vjp(render, params)
    return vjp_fn(torch.stack(us))[0]


def adam_solve(render: Callable, params: Params, v: torch.Tensor, *, iters: int = 20,
               lr: float = 1e-3) -> Params:
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


def gd_solve(render: Callable, params: Params, v: torch.Tensor, *, lr: float = 1.0) -> Params:
    """The covector alone: ``d = lr * J^T v`` (one gradient step; no metric)."""
    params = {k: t.detach() for k, t in params.items()}
    _, vjp_fn = vjp(render, params)
    return {k: lr * t for k, t in vjp_fn(v.detach())[0].items()}


#: Preconditioners of the ``"cg"`` solver that DDR builds by name (``preconditioner=``), see :func:`preconditioner`.
PRECONDITIONERS = ("jacobi", "kfac")


def preconditioner(kind: str, diffrep, params: Params, *, probes: int = 16, generator=None):
    """Build the named preconditioner of the pull-back at ``params``.

    * ``"jacobi"``: :class:`JacobiPreconditioner` from :func:`hutchinson_diagonal` with ``probes`` vjps
      (any diffrep).
    * ``"kfac"``: the diffrep's :meth:`~diffrep_lite.diffreps.base.Diffrep.kfac_preconditioner` (coordinate
      networks, :class:`~diffrep_lite.diffreps.NeuralField`); ValueError for diffreps without one.
    """
    if kind == "jacobi":
        return JacobiPreconditioner(hutchinson_diagonal(diffrep.render, params, probes, generator))
    if kind == "kfac":
        M = diffrep.kfac_preconditioner(params)
        if M is None:
            raise ValueError(f"preconditioner='kfac' needs a diffrep with a K-FAC preconditioner (a NeuralField of "
                             f"nn.Linear layers); {type(diffrep).__name__} has none: use 'jacobi' or None")
        return M
    raise ValueError(f"preconditioner must be one of {list(PRECONDITIONERS)} or None, got {kind!r}")


#: Solver name -> function; the names :func:`solve` and the samplers' ``solver=`` accept.
SOLVERS = {"dense": dense_solve, "kernel": kernel_solve, "cg": cg_solve, "adam": adam_solve, "gd": gd_solve}


def _check_options(name: str, options: dict, shown: dict | None = None) -> dict:
    """Reject options the solver ``name`` does not have (by name, listing its options) and bad values; an error
    names option ``k`` as ``shown[k]`` (the samplers' flat keywords, e.g. ``solver_iters``) where given."""
    allowed = [p.name for p in inspect.signature(SOLVERS[name]).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"the {name!r} solver has no option {', '.join(map(repr, unknown))}; its options are "
                        f"{', '.join(allowed)}")
    shown = shown or {}
    for k, v in options.items():
        if k == "iters":
            check_int(v, shown.get(k, k))
        elif k == "check_every":
            check_int(v, "check_every", minimum=0)
        elif k in ("damping", "tol"):
            check_real(v, shown.get(k, k), low=0.0)
        elif k == "lr":
            check_real(v, shown.get(k, k), low=0.0, low_open=True)
        elif k in ("precond", "callback", "kernel") and v is not None and not callable(v):
            raise TypeError(f"{k} must be callable or None, got {type(v).__name__}")
    return options


def solve(render: Callable, params: Params, v: torch.Tensor, *, solver: str = "cg", **options) -> Params:
    """Solve ``min_d ||J d - v||^2`` per sample with the named solver (``dense``, ``kernel``, ``cg``, ``adam``, ``gd``).

    Args:
        render: ``params -> [B, ...]`` (a diffrep's render with its views bound).
        params: the linearisation point (each tensor ``[B, ...]``).
        v: ``[B, ...]`` right-hand side, the shape of ``render(params)``.
        solver: solver name; ``options`` are exactly that function's keyword arguments (:func:`cg_solve`:
            ``iters``, ``damping``, ``tol``, ``precond``, ``x0``, ``check_every``, ``callback``; :func:`kernel_solve`:
            ``kernel``, ``damping``; :func:`adam_solve`: ``iters``, ``lr``; :func:`gd_solve`: ``lr``;
            :func:`dense_solve`: ``damping``). An unknown option is an error, not ignored.

    Returns:
        the increment ``d`` as a dict shaped like ``params``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    _check_options(solver, options)
    if solver == "kernel" and options.get("kernel") is None:
        raise ValueError("solver='kernel' needs kernel=, a function params_one -> J J^T (e.g. "
                         "NeuralField.pixel_kernel)")
    if not isinstance(params, dict) or not all(isinstance(t, torch.Tensor) for t in params.values()):
        raise TypeError(f"params must be a dict of tensors (each [B, ...]), got {type(params).__name__}")
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"v must be a tensor shaped like render(params), got {type(v).__name__}")
    owner = getattr(inspect.unwrap(render), "__self__", None)  # a diffrep's bound render: its output shape is known without a render
    if owner is not None and hasattr(owner, "view_shape") and hasattr(owner, "n_views"):
        B = next(iter(params.values())).shape[0]
        shape = (B, owner.n_views, *owner.view_shape)
    else:
        with torch.no_grad():
            shape = tuple(render({k: t.detach() for k, t in params.items()}).shape)
    if tuple(v.shape) != shape:
        raise ValueError(f"v must have the shape of render(params), {list(shape)}, got {list(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("v holds NaN or inf")
    return SOLVERS[solver](render, params, v, **options)


class Solver:
    """A pull-back solver as a small object: ``solver(render, params, v, diffrep=..., key=...) -> d``.

    Subclasses set ``name`` and take their options, validated, in ``__init__``; ``hint()`` says which setting
    to change when a run diverges; :meth:`check` rejects a diffrep the solver cannot serve before any work.
    """

    name = ""

    def settings(self) -> dict:
        return dict(vars(self))

    def check(self, diffrep) -> None:
        """Raise ValueError if the solver cannot run on ``diffrep`` (default: it can)."""

    def hint(self) -> str:
        """The setting to change when a run with this solver diverges (for the error message)."""
        return f"an ill-conditioned pull-back: raise damping (now {self.settings().get('damping', 0.0):g})"

    def __call__(self, render: Callable, params: Params, v: torch.Tensor, *, diffrep=None, key: int = 0) -> Params:
        return SOLVERS[self.name](render, params, v, **self.settings())

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"

    def __eq__(self, other):
        return type(self) is type(other) and self.settings() == other.settings()


class Dense(Solver):
    """Exact solve with a dense Jacobian (:func:`dense_solve`); tiny problems and tests."""

    name = "dense"

    def __init__(self, damping: float = 0.0):
        self.damping = _check_options("dense", {"damping": damping})["damping"]


class Kernel(Solver):
    """Exact minimum-norm solve through the diffrep's pixel kernel ``J J^T`` (:func:`kernel_solve`)."""

    name = "kernel"

    def __init__(self, damping: float = 0.0):
        self.damping = _check_options("kernel", {"damping": damping})["damping"]

    def check(self, diffrep) -> None:
        if not getattr(diffrep, "has_pixel_kernel", False):
            raise ValueError(f"solver='kernel' needs a NeuralField of nn.Linear layers (a diffrep with a pixel "
                             f"kernel); {type(diffrep).__name__} has none: use solver='cg'")

    def __call__(self, render, params, v, *, diffrep=None, key=0):
        return kernel_solve(render, params, v, kernel=diffrep.pixel_kernel, damping=self.damping)


class CG(Solver):
    """CGLS (:func:`cg_solve`), matrix-free; ``preconditioner`` None, ``"jacobi"`` or ``"kfac"``, rebuilt at every
    solve with its own seeded probes (``key``), so the sampler's random stream is untouched."""

    name = "cg"

    def __init__(self, iters: int = 20, damping: float = 0.0, tol: float = 0.0, preconditioner: str | None = None,
                 check_every: int = 8):
        _check_options("cg", dict(iters=iters, damping=damping, tol=tol, check_every=check_every))
        if preconditioner is not None and preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {list(PRECONDITIONERS)} or None, got {preconditioner!r}")
        self.iters, self.damping, self.tol, self.check_every = iters, float(damping), float(tol), check_every
        self.preconditioner = preconditioner

    def check(self, diffrep) -> None:
        if self.preconditioner == "kfac" and not getattr(diffrep, "has_pixel_kernel", False):
            raise ValueError(f"preconditioner='kfac' needs a NeuralField of nn.Linear layers; "
                             f"{type(diffrep).__name__} has no K-FAC preconditioner: use 'jacobi' or None")

    def hint(self) -> str:
        return (f"an ill-conditioned pull-back: raise damping (now {self.damping:g}) or lower solver_iters "
                f"(now {self.iters})")

    def __call__(self, render, params, v, *, diffrep=None, key=0):
        pre = None
        if self.preconditioner is not None:
            g = torch.Generator(device=v.device).manual_seed(key)
            pre = preconditioner(self.preconditioner, diffrep, params, generator=g)
        return cg_solve(render, params, v, iters=self.iters, damping=self.damping, tol=self.tol, precond=pre,
                        check_every=self.check_every)


class Adam(Solver):
    """The inner Adam fit (:func:`adam_solve`), nonlinear and only approximately ``J^+ v``."""

    name = "adam"

    def __init__(self, iters: int = 20, lr: float = 1e-3):
        _check_options("adam", dict(iters=iters, lr=lr))
        self.iters, self.lr = iters, float(lr)

    def hint(self) -> str:
        return f"solver_lr (the inner Adam learning rate, now {self.lr:g}) is too large: lower it"


class GD(Solver):
    """The covector alone, ``d = lr J^T v`` (:func:`gd_solve`): no metric, what score distillation uses."""

    name = "gd"

    def __init__(self, lr: float = 1.0):
        self.lr = _check_options("gd", {"lr": lr})["lr"]

    def hint(self) -> str:
        return (f"solver_lr (the 'gd' step size, now {self.lr:g}) is too large: lower it, or use solver='cg', "
                "which needs no step size")


#: Solver name -> class, for :func:`make_solver` and the samplers' ``solver=``.
SOLVER_CLASSES = {"dense": Dense, "kernel": Kernel, "cg": CG, "adam": Adam, "gd": GD}


def make_solver(solver, *, iters=None, damping=None, lr=None, preconditioner=None) -> Solver:
    """A :class:`Solver` from a name and the flat keywords of the samplers (``solver_iters`` -> ``iters``,
    ``damping``, ``solver_lr`` -> ``lr``, ``preconditioner``), or ``solver`` itself when it is a Solver already
    (then no flat keyword may be given). A keyword the named solver does not use is an error."""
    given = {k: v for k, v in dict(iters=iters, damping=damping, lr=lr, preconditioner=preconditioner).items()
             if v is not None}
    flat = {"iters": "solver_iters", "lr": "solver_lr", "damping": "damping", "preconditioner": "preconditioner"}
    if isinstance(solver, Solver):
        if given:
            raise ValueError(f"solver is a {type(solver).__name__} object; set "
                             f"{', '.join(flat[k] for k in given)} on it, not as a keyword")
        return solver
    if solver not in SOLVER_CLASSES:
        raise ValueError(f"solver must be one of {sorted(SOLVER_CLASSES)} or a pullback.Solver, got {solver!r}")
    cls = SOLVER_CLASSES[solver]
    names = set(inspect.signature(cls).parameters)
    extra = sorted(set(given) - names)
    if extra:
        raise ValueError(f"solver={solver!r} does not use {', '.join(flat[k] for k in extra)}; its options are "
                         f"{', '.join(flat.get(k, k) for k in names)}")
    _check_options(solver, {k: v for k, v in given.items() if k != "preconditioner"}, shown=flat)
    return cls(**given)
