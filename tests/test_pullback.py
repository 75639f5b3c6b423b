"""Pull-back solvers against closed-form least squares.

Every solver solves ``min_d ||J d - v||^2`` (optionally ``+ lambda ||d||^2``) per sample. The oracle is
``torch.linalg.lstsq`` / ``torch.linalg.pinv`` / the damped normal equations, in float64.
Batches hold several *different* random problems (one matrix per sample) so per-sample independence
is checked too.
"""
from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, jvp

from diffrep_lite.diffreps import Linear, SirenImage
from diffrep_lite.pullback import SOLVERS, JacobiPreconditioner, hutchinson_diagonal, solve

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def problem(B, m, n, seed):
    """A random ``m x n`` linear diffrep ``x = A theta`` and ``B`` random right-hand sides."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=DT)
    v = torch.randn(B, 1, m, generator=g, dtype=DT)
    params = {"theta": torch.randn(B, n, generator=g, dtype=DT)}
    return A, v, params, Linear(A).render


def per_sample_lstsq(A, v):
    return torch.linalg.lstsq(A.expand(v.shape[0], *A.shape), v[:, 0, :, None]).solution[..., 0]


def rel_err(d, ref):
    return ((d - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overdetermined_all_solvers_match_lstsq(seed):
    # Tall, full column rank: the least-squares solution is unique.
    A, v, params, render = problem(B=6, m=9, n=4, seed=seed)
    ref = per_sample_lstsq(A, v)
    d_dense = solve(render, params, v, solver="dense")["theta"]
    d_cg = solve(render, params, v, solver="cg", iters=4)["theta"]  # CG is exact after n = 4 iterations
    # lr 1e-2 keeps Adam oscillating around the minimiser (seed 1: 1.2e-3 after 3000 steps on torch 2.13)
    d_adam = solve(render, params, v, solver="adam", iters=3000, lr=3e-3)["theta"]
    assert rel_err(d_dense, ref) < 1e-12
    assert rel_err(d_cg, ref) < 1e-10
    # Adam on the (here linear) fit converges to the same minimiser; stated tolerance 1e-6 relative.
    assert rel_err(d_adam, ref) < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_underdetermined_cg_and_dense_give_minimum_norm(seed):
    A, v, params, render = problem(B=5, m=3, n=8, seed=seed)
    ref = v[:, 0] @ torch.linalg.pinv(A).T  # minimum-norm solution J^+ v
    d_dense = solve(render, params, v, solver="dense")["theta"]
    d_cg = solve(render, params, v, solver="cg", iters=8)["theta"]
    assert rel_err(d_dense, ref) < 1e-12
    assert rel_err(d_cg, ref) < 1e-10
    # Adam solves the consistent system but is not guaranteed the minimum-norm solution: check it fits v
    # and is no shorter than J^+ v. Constant-lr Adam oscillates around the solution set rather than
    # converging monotonically (measured: relative residual 1e-16 .. 8e-4 over these samples), so the
    # stated tolerance is 2e-3 of ||v||.
    # lr 1e-2 keeps Adam oscillating around the minimiser (seed 1: 1.2e-3 after 3000 steps on torch 2.13)
    d_adam = solve(render, params, v, solver="adam", iters=3000, lr=3e-3)["theta"]
    resid = (d_adam @ A.T - v[:, 0]).norm(dim=-1) / v[:, 0].norm(dim=-1)
    assert resid.max() < 2e-3
    assert torch.all(d_adam.norm(dim=-1) >= ref.norm(dim=-1) * (1 - 2e-3))


@pytest.mark.parametrize("shape", [(9, 4), (3, 8)], ids=["tall", "wide"])
def test_damping_matches_closed_form(shape):
    m, n = shape
    lam = 0.3
    A, v, params, render = problem(B=4, m=m, n=n, seed=7)
    ref = torch.linalg.solve(A.T @ A + lam * torch.eye(n, dtype=DT), A.T @ v[:, 0].T).T
    d_dense = solve(render, params, v, solver="dense", damping=lam)["theta"]
    d_cg = solve(render, params, v, solver="cg", iters=n, damping=lam)["theta"]
    assert rel_err(d_dense, ref) < 1e-12
    assert rel_err(d_cg, ref) < 1e-10


def test_gd_is_the_covector():
    A, v, params, render = problem(B=3, m=5, n=4, seed=3)
    d = solve(render, params, v, solver="gd", lr=0.5)["theta"]
    ref = 0.5 * v[:, 0] @ A
    assert torch.allclose(d, ref, atol=1e-14, rtol=0)


def test_cg_and_adam_solve_a_batch_of_different_problems():
    # One matrix per sample (a batched render): every sample gets its own lstsq answer.
    g = torch.Generator().manual_seed(5)
    A = torch.randn(6, 7, 3, generator=g, dtype=DT)
    v = torch.randn(6, 1, 7, generator=g, dtype=DT)
    params = {"theta": torch.randn(6, 3, generator=g, dtype=DT)}

    def render(p):
        return torch.einsum("bij,bj->bi", A, p["theta"])[:, None]

    ref = torch.linalg.lstsq(A, v[:, 0, :, None]).solution[..., 0]
    assert rel_err(solve(render, params, v, solver="cg", iters=3)["theta"], ref) < 1e-10
    assert rel_err(solve(render, params, v, solver="adam", iters=3000, lr=1e-2)["theta"], ref) < 1e-6


def test_cg_extra_iterations_stay_at_the_solution():
    # Regression: CGLS run past convergence on a tall J (residual never vanishes) used to divide
    # round-off by round-off and throw ~1 in 20000 samples far off (relative errors ~100).
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[1.0, 0.5], [0.3, 1.2], [0.8, -0.6]], dtype=DT)
    rep = Linear(A)
    B = 20000
    params = {"theta": torch.randn(B, 2, generator=g, dtype=DT)}
    v = torch.randn(B, 1, 3, generator=g, dtype=DT) * torch.logspace(-3, 3, B, dtype=DT)[:, None, None]
    ref = (torch.linalg.pinv(A) @ v[:, 0].T).T
    d = solve(rep.render, params, v, solver="cg", iters=10)["theta"]
    assert rel_err(d, ref) < 1e-8


def test_cg_zero_rhs_gives_zero():
    A, v, params, render = problem(B=2, m=5, n=3, seed=4)
    d = solve(render, params, torch.zeros_like(v), solver="cg", iters=5)["theta"]
    assert torch.equal(d, torch.zeros_like(d))


# ------------------------------------------------------------------------------------ SIREN
def tiny_siren(resolution, hidden, omega_0):
    torch.manual_seed(0)
    rep = SirenImage(resolution=resolution, channels=1, hidden=hidden, hidden_layers=1, omega_0=omega_0)
    g = torch.Generator().manual_seed(1)
    params = rep.init_params(2, generator=g, dtype=DT)
    return rep, params, g


def linear_residual(rep, params, d, v):
    Jd = jvp(rep.render, (params,), (d,))[1]
    return (Jd - v).flatten(1).norm(dim=1)


def test_siren_cg_residual_decreases_and_matches_dense():
    # 4x4 grey image: 16 outputs, 8-wide SIREN with one hidden layer: 105 parameters (J^T J singular).
    rep, params, g = tiny_siren(4, 8, 10.0)
    assert rep.num_params() == 105
    v = torch.randn(2, 1, 1, 4, 4, generator=g, dtype=DT)
    res = []
    for k in range(1, 13):
        d = solve(rep.render, params, v, solver="cg", iters=k)
        res.append(linear_residual(rep, params, d, v))
    res = torch.stack(res)  # [iters, B]
    # CGLS minimises ||J d - v|| over a growing Krylov space, so the residual never increases.
    assert torch.all(res[1:] <= res[:-1] * (1 + 1e-10))
    assert torch.all(res[-1] < 0.05 * res[0])
    # Enough iterations reach the exact minimum-norm solution J^+ v of the dense solver.
    d_cg = solve(rep.render, params, v, solver="cg", iters=200)
    d_dense = solve(rep.render, params, v, solver="dense")
    num = sum((d_cg[k] - d_dense[k]).flatten(1).norm(dim=1) ** 2 for k in d_cg) ** 0.5
    den = sum(d_dense[k].flatten(1).norm(dim=1) ** 2 for k in d_dense) ** 0.5
    assert (num / den).max() < 1e-6
    assert linear_residual(rep, params, d_dense, v).max() < 1e-8 * v.flatten(1).norm(dim=1).min()


def test_siren_overdetermined_cg_matches_lstsq():
    # 12x12 grey image (144 outputs), 6-wide SIREN (67 parameters): unique least-squares solution.
    rep, params, g = tiny_siren(12, 6, 30.0)
    assert rep.num_params() == 67
    v = torch.randn(2, 1, 1, 12, 12, generator=g, dtype=DT)
    d_dense = solve(rep.render, params, v, solver="dense")
    d_cg = solve(rep.render, params, v, solver="cg", iters=400)
    r_dense = linear_residual(rep, params, d_dense, v)
    r_cg = linear_residual(rep, params, d_cg, v)
    # Same optimal residual to 1e-8 relative. J's condition number is ~1.6e3, so CG needs several times
    # n = 67 iterations in floating point; compare residuals (well-conditioned), not parameters.
    assert torch.allclose(r_cg, r_dense, rtol=1e-8, atol=0)


def test_unknown_solver_is_rejected():
    A, v, params, render = problem(B=1, m=3, n=2, seed=0)
    with pytest.raises(ValueError, match="solver"):
        solve(render, params, v, solver="qr")
    assert set(SOLVERS) == {"dense", "kernel", "cg", "adam", "gd"}


# ------------------------------------------------------------------------------------ preconditioned CGLS
def spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(n, n, generator=g, dtype=DT)
    return Q @ Q.T + 0.5 * torch.eye(n, dtype=DT)


def matrix_precond(Minv):
    """``s -> M^{-1} s`` for one explicit SPD matrix, as a ``precond`` of ``cg_solve``."""
    return lambda s: {"theta": s["theta"] @ Minv.T}


@pytest.mark.parametrize("seed", [0, 1])
def test_preconditioned_cg_overdetermined_matches_lstsq(seed):
    A, v, params, render = problem(B=5, m=9, n=4, seed=seed)
    ref = per_sample_lstsq(A, v)
    d = solve(render, params, v, solver="cg", iters=4, precond=matrix_precond(spd(4, seed + 10)))["theta"]
    assert rel_err(d, ref) < 1e-10


@pytest.mark.parametrize("seed", [0, 1])
def test_preconditioned_cg_underdetermined_gives_least_M_norm_solution(seed):
    # With M^{-1} the iterates stay in M^{-1} range(A^T): the limit solves A d = v with least d^T M d,
    # d* = M^{-1} A^T (A M^{-1} A^T)^{-1} v.
    A, v, params, render = problem(B=4, m=3, n=8, seed=seed)
    Minv = spd(8, seed + 20)
    ref = (Minv @ A.T @ torch.linalg.solve(A @ Minv @ A.T, v[:, 0].T)).T
    d = solve(render, params, v, solver="cg", iters=3, precond=matrix_precond(Minv))["theta"]
    assert rel_err(d, ref) < 1e-9
    # and it differs from the minimum-norm J^+ v, so the test tells them apart
    assert rel_err(v[:, 0] @ torch.linalg.pinv(A).T, ref) > 1e-2


@pytest.mark.parametrize("shape", [(9, 4), (3, 8)], ids=["tall", "wide"])
def test_preconditioned_damped_cg_matches_closed_form(shape):
    m, n = shape
    lam = 0.3
    A, v, params, render = problem(B=3, m=m, n=n, seed=8)
    ref = torch.linalg.solve(A.T @ A + lam * torch.eye(n, dtype=DT), A.T @ v[:, 0].T).T
    # exact after n steps in exact arithmetic; the preconditioned system is worse conditioned, so 3n in floats
    d = solve(render, params, v, solver="cg", iters=3 * n, damping=lam, precond=matrix_precond(spd(n, 3)))["theta"]
    assert rel_err(d, ref) < 1e-9


def test_warm_start_gives_the_solution_nearest_x0():
    A, v, params, render = problem(B=4, m=3, n=8, seed=2)
    g = torch.Generator().manual_seed(9)
    x0 = {"theta": torch.randn(4, 8, generator=g, dtype=DT)}
    pinv = torch.linalg.pinv(A)
    ref = x0["theta"] + (v[:, 0] - x0["theta"] @ A.T) @ pinv.T  # x0 + J^+ (v - J x0)
    d = solve(render, params, v, solver="cg", iters=3, x0=x0)["theta"]
    assert rel_err(d, ref) < 1e-10
    At, vt, pt, rt = problem(B=4, m=9, n=4, seed=2)  # tall: the unique lstsq solution from any start
    d = solve(rt, pt, vt, solver="cg", iters=4, x0={"theta": torch.randn(4, 4, generator=g, dtype=DT)})["theta"]
    assert rel_err(d, per_sample_lstsq(At, vt)) < 1e-10


class _CountingMatmul(torch.autograd.Function):
    """``theta @ A^T`` counting its vjps (backward) and jvps."""

    counts = {"jvp": 0, "vjp": 0}

    @staticmethod
    def forward(theta, A):
        return theta @ A.T

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.A = inputs[1]

    @staticmethod
    def backward(ctx, g):
        _CountingMatmul.counts["vjp"] += 1
        return g @ ctx.A, None

    @staticmethod
    def jvp(ctx, t_theta, t_A):
        _CountingMatmul.counts["jvp"] += 1
        return t_theta @ ctx.A.T


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("warm", [False, True])
def test_iters_counts_jacobian_product_pairs(k, warm):
    # iters = k costs exactly k jvps and k vjps (the J^T r after the last step is not computed); a warm
    # start one more jvp. A 40 x 30 problem does not converge in 7 steps, so nothing stops early.
    g = torch.Generator().manual_seed(0)
    A = torch.randn(40, 30, generator=g, dtype=DT)
    v = torch.randn(2, 1, 40, generator=g, dtype=DT)
    params = {"theta": torch.zeros(2, 30, dtype=DT)}

    def render(p):
        return _CountingMatmul.apply(p["theta"], A)[:, None]

    _CountingMatmul.counts.update(jvp=0, vjp=0)
    x0 = {"theta": torch.randn(2, 30, generator=g, dtype=DT)} if warm else None
    seen = []
    solve(render, params, v, solver="cg", iters=k, x0=x0, callback=lambda i, d, r: seen.append(
        (i, (r - (v - render(d))).abs().max().item())))
    assert _CountingMatmul.counts == {"jvp": k + int(warm), "vjp": k}
    assert [i for i, _ in seen] == list(range(1, k + 1))
    assert max(e for _, e in seen) < 1e-10  # the callback's residual is v - J d


def test_fixed_count_without_checks_gives_the_same_answer():
    A, v, params, render = problem(B=3, m=20, n=12, seed=4)
    a = solve(render, params, v, solver="cg", iters=9)["theta"]
    b = solve(render, params, v, solver="cg", iters=9, check_every=0)["theta"]
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------ Jacobi, K-FAC
def test_hutchinson_is_exact_for_a_diagonal_jacobian_and_unbiased():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, generator=g, dtype=DT)
    params = {"theta": torch.zeros(2, 6, dtype=DT)}
    D = hutchinson_diagonal(Linear(torch.diag(a)).render, params, probes=3, generator=g)["theta"]
    assert torch.allclose(D, (a * a).expand(2, 6), rtol=1e-14, atol=0)  # (a_i z_i)^2 = a_i^2 for z_i = +-1
    A = torch.randn(5, 4, generator=g, dtype=DT)
    m = 20000
    D = hutchinson_diagonal(Linear(A).render, {"theta": torch.zeros(1, 4, dtype=DT)}, probes=m, generator=g)["theta"][0]
    exact = (A * A).sum(0)
    # Var[(sum_i z_i A_ij)^2] = 2 (sum_i A_ij^2)^2 - 2 sum_i A_ij^4: within 5 standard errors
    sd = ((2 * exact**2 - 2 * (A**4).sum(0)) / m).sqrt()
    assert torch.all((D - exact).abs() < 5 * sd)


def test_jacobi_preconditioned_cg_matches_lstsq():
    A, v, params, render = problem(B=3, m=9, n=4, seed=5)
    pre = JacobiPreconditioner({"theta": (A * A).sum(0).expand(3, 4)})
    d = solve(render, params, v, solver="cg", iters=4, precond=pre)["theta"]
    assert rel_err(d, per_sample_lstsq(A, v)) < 1e-10


def test_pixel_layer_grads_are_the_exact_per_pixel_jacobian():
    # d f_c(n) / d [W, b] of every linear layer = g_cn [a_n, 1]^T, checked against jacrev of the render.
    torch.manual_seed(0)
    rep = SirenImage(3, channels=2, hidden=5, hidden_layers=1, omega_0=3.0)
    params = rep.init_params(1, generator=torch.Generator().manual_seed(1), dtype=DT)
    p1 = {k: t[0] for k, t in params.items()}
    jac = jacrev(lambda p: rep._field({k: t[None] for k, t in p.items()}, rep.coords)[0])(p1)  # [N, C, *shape]
    grads = rep.pixel_layer_grads(p1)
    assert set(grads) == {"net.0.linear", "net.1.linear", "out"}
    N, C = 9, 2
    for name, (g, a) in grads.items():
        g = g.reshape(C, N, -1)
        want = torch.cat([jac[f"{name}.weight"], jac[f"{name}.bias"][..., None]], -1)  # [N, C, out, in + 1]
        got = torch.einsum("cno,ni->ncoi", g, a)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), name


def test_kfac_is_exact_for_one_pixel_and_matches_the_kronecker_inverse():
    torch.manual_seed(0)
    rep = SirenImage(1, channels=1, hidden=4, hidden_layers=1, omega_0=3.0)  # one pixel, one channel
    params = rep.init_params(2, generator=torch.Generator().manual_seed(1), dtype=DT)
    lam = 1e-3
    M = rep.kfac_preconditioner(params, damping=lam)
    for b in range(2):
        p1 = {k: t[b] for k, t in params.items()}
        jac = jacrev(lambda p: rep._field({k: t[None] for k, t in p.items()}, rep.coords)[0, 0, 0])(p1)
        for (wk, bk, Gi, Ai), (name, (g, a)) in zip(M.blocks, rep.pixel_layer_grads(p1).items()):
            Jl = torch.cat([jac[wk], jac[bk][..., None]], -1).reshape(-1)  # row of J for [W, b], row-major
            G, A = g.T @ g, a.T @ a
            assert torch.allclose(torch.kron(G, A), torch.outer(Jl, Jl), rtol=1e-12, atol=1e-14)  # K-FAC exact
            Gd = G + lam * torch.linalg.eigvalsh(G).max() * torch.eye(G.shape[0], dtype=DT)
            Ad = A + lam * torch.linalg.eigvalsh(A).max() * torch.eye(A.shape[0], dtype=DT)
            S = torch.randn(G.shape[0], A.shape[0], dtype=DT)
            want = torch.linalg.solve(torch.kron(Gd, Ad), S.reshape(-1)).reshape(S.shape)
            s = {wk: S[:, :-1][None].expand(2, -1, -1), bk: S[:, -1][None].expand(2, -1)}
            s.update({k: torch.zeros(2, *t.shape[1:], dtype=DT) for k, t in params.items() if k not in s})
            got = M(s)
            assert torch.allclose(torch.cat([got[wk][b], got[bk][b][:, None]], -1), want, rtol=1e-9, atol=1e-12)


def test_kfac_preconditioned_cg_solves_a_siren_least_squares_problem():
    # Overdetermined 12x12 SIREN (67 parameters): the preconditioned solve reaches the same optimal residual.
    rep, params, g = tiny_siren(12, 6, 30.0)
    v = torch.randn(2, 1, 1, 12, 12, generator=g, dtype=DT)
    r_dense = linear_residual(rep, params, solve(rep.render, params, v, solver="dense"), v)
    d = solve(rep.render, params, v, solver="cg", iters=200, precond=rep.kfac_preconditioner(params, damping=1e-9))
    assert torch.allclose(linear_residual(rep, params, d, v), r_dense, rtol=1e-8, atol=0)


def test_ddr_with_a_preconditioner_samples_the_same_on_a_tall_linear_diffrep():
    # Full column rank: every least-squares solve has one answer, so a preconditioned DDR run must give the
    # unpreconditioned one (CG exact after n = 3 steps), and be reproducible.
    import diffrep_lite as dl
    from diffrep_lite.priors import Gaussian

    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 3, generator=g, dtype=DT)
    prior = Gaussian(torch.zeros(5, dtype=DT), torch.eye(5, dtype=DT), dtype=DT)
    kw = dict(steps=8, n=6, seed=1, solver_iters=3, progress=False)
    plain = dl.sample("ddr", prior, Linear(A), **kw)
    jac = dl.sample("ddr", prior, Linear(A), preconditioner="jacobi", **kw)
    assert torch.allclose(jac.x, plain.x, rtol=0, atol=1e-9)
    assert torch.equal(jac.x, dl.sample("ddr", prior, Linear(A), preconditioner="jacobi", **kw).x)


# ------------------------------------------------------------------------------------ pixel-kernel solver
@pytest.mark.parametrize("res, hidden, channels", [(4, 8, 2), (12, 6, 2)])  # under- and overdetermined
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_kernel_solve_is_the_dense_solve(res, hidden, channels, damping):
    # J^T (J J^T + lambda I)^+ v = (J^T J + lambda I)^{-1} J^T v, and J^T (J J^T)^+ v = J^+ v, the minimum-norm
    # (4x4x2 = 32 outputs, 114 parameters) or least-squares (12x12x2 = 288 outputs, 74 parameters, K singular)
    # solution of the dense solver.
    torch.manual_seed(0)
    rep = SirenImage(resolution=res, channels=channels, hidden=hidden, hidden_layers=1, omega_0=10.0)
    params = rep.init_params(2, generator=torch.Generator().manual_seed(1), dtype=DT)
    v = torch.randn(2, 1, channels, res, res, generator=torch.Generator().manual_seed(2), dtype=DT)
    want = solve(rep.render, params, v, solver="dense", damping=damping)
    got = solve(rep.render, params, v, solver="kernel", kernel=rep.pixel_kernel, damping=damping)
    num = sum((got[k] - want[k]).flatten(1).norm(dim=1) ** 2 for k in want) ** 0.5
    den = sum(want[k].flatten(1).norm(dim=1) ** 2 for k in want) ** 0.5
    assert (num / den).max() < 1e-8


def test_pixel_kernel_is_j_jt_in_render_order():
    # An image field (channel-major render) and a field whose render is [N, C] (pixel-major).
    from diffrep_lite.diffreps import NeuralField
    from diffrep_lite.diffreps.siren import Siren

    torch.manual_seed(0)
    img = SirenImage(3, channels=2, hidden=5, hidden_layers=1, omega_0=3.0)
    pts = NeuralField(Siren(2, 2, hidden=5, hidden_layers=1, omega_0=3.0), img.coords, view_shape=(9, 2))
    for rep in (img, pts):
        params = rep.init_params(1, generator=torch.Generator().manual_seed(1), dtype=DT)
        p1 = {k: t[0] for k, t in params.items()}
        jac = jacrev(lambda p: rep.render({k: t[None] for k, t in p.items()}).reshape(-1))(p1)
        J = torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], 1)
        assert torch.allclose(rep.pixel_kernel(p1), J @ J.T, rtol=1e-10, atol=1e-12)


def test_ddr_with_the_kernel_solver_equals_ddr_with_the_dense_solver():
    import diffrep_lite as dl
    from diffrep_lite.priors import GaussianMixture

    torch.manual_seed(0)
    rep = SirenImage(4, channels=1, hidden=8, hidden_layers=1, omega_0=10.0)
    means = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=DT)
    prior = GaussianMixture(torch.ones(3), means, 1e-2, dtype=DT)
    kw = dict(steps=12, n=3, seed=4, fit_iters=2, progress=False, params0=rep.init_params(
        3, generator=torch.Generator().manual_seed(1), dtype=DT))
    dense = dl.sample("ddr", prior, rep, solver="dense", **kw)
    kernel = dl.sample("ddr", prior, rep, solver="kernel", **kw)
    assert torch.allclose(kernel.x, dense.x, rtol=0, atol=1e-8)
    dist = (dense.x[:, 0, None] - means[None]).flatten(2).norm(dim=-1).min(-1).values
    assert dist.max() < 0.5  # near a component (measured 0.27 at most; N(mean, 0.01 I) in 16 dims: 0.4 on average)


def test_kernel_solver_needs_a_kernel():
    import diffrep_lite as dl
    from diffrep_lite.priors import Gaussian

    A, v, params, render = problem(B=1, m=3, n=2, seed=0)
    with pytest.raises(ValueError, match="solver='kernel' needs kernel="):
        solve(render, params, v, solver="kernel")
    prior = Gaussian(torch.zeros(3, dtype=DT), torch.eye(3, dtype=DT), dtype=DT)
    with pytest.raises(ValueError, match="solver='kernel' needs a NeuralField.*Linear.*use solver='cg'"):
        dl.sample("ddr", prior, Linear(A), solver="kernel", steps=2, progress=False)
