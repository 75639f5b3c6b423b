#!/usr/bin/env python
"""The pull-back solve ``min ||J d - v||``: relative residual against Jacobian-product pairs and seconds.

Two problems (issue 12):

* ``siren64``: a SIREN image, 64x64 RGB, 3 hidden layers of 256 (198,915 parameters), batch 2; the target is a
  smooth image (Gaussian-blurred noise, std 0.5) minus the render, what ``x0_hat - f(theta)`` looks like.
* ``nerf``: the latent voxel NeRF of ``bench_nerf.py --size small`` (16^3 grid, 4 channels), 4 views of 16x16,
  batch 2, target a smooth latent image per view minus the render.

Section ``linear`` (both problems): the relative residual ``||J d - v|| / ||v||`` after ``k`` pairs for

* ``cgls``: :func:`diffrep_lite.pullback.cg_solve` (``iters`` = pairs; the library default);
* ``cgls_jacobi_hutchinson{m}``: CGLS preconditioned by ``diag(J^T J)`` estimated from ``m`` Rademacher
  probes (``m`` vjps of setup; :func:`~diffrep_lite.pullback.hutchinson_diagonal`,
  :class:`~diffrep_lite.pullback.JacobiPreconditioner`); ``cgls_jacobi_exact`` (SIREN): the exact diagonal,
  the best any diagonal estimate can do;
* ``cgls_kfac`` (SIREN): CGLS preconditioned by K-FAC (:meth:`~diffrep_lite.diffreps.NeuralField.kfac_preconditioner`);
* ``varpro_cgls`` (SIREN): the output layer solved in closed form (per-channel least squares on the last
  hidden features), CGLS on the other layers against what it leaves (variable projection);
* ``lsqr``, ``lsmr``: ``scipy.sparse.linalg`` on a ``LinearOperator`` of jvp/vjp, one sample at a time
  (float64 outside, float32 products; pairs counted from the calls);
* ``adam``: the inner-Adam fit (``solver="adam"``, lr 1e-3), one forward and backward per step.

Section ``sequence`` (SIREN): what DDR does with the solve. A DDR-like run (convention B, 3 Gauss-Newton fits per
level) on an exact mixture prior of four smooth 64x64 images (scaled-linear schedule, 10 levels, the first 4
run); per level the *nonlinear* residual ``||x0_hat - f(theta)||`` before the level and after each fit, for
CGLS with 4 / 8 / 16 pairs, CGLS warm-started from the previous level's increment, and K-FAC (alone, with a
backtracking line search, with Levenberg-Marquardt damping).

Section ``kfac_variants`` (SIREN): attempts to bring K-FAC (the best of section ``linear``) below ``1e-2`` in 10
pairs: its damping; eigenvalue-corrected K-FAC (EKFAC: the exact diagonal of ``J^T J`` in the Kronecker
eigenbasis, George et al. 2018); the best Kronecker approximation of each block in the Frobenius norm (Van Loan's
alternating fit, started from K-FAC) and K-FAC with ``A`` weighted by each pixel's gradient energy; the output layer
in closed form with K-FAC on the other layers; K-FAC started from the closed-form output layer.

Section ``nystrom`` (SIREN): a preconditioner that sees the coupling between layers. The kernel ``K = J J^T``
(pixels x pixels) is known exactly from the per-pixel layer factors that K-FAC uses
(``K[(c,n),(c',n')] = sum_l (a_ln . a_ln') (g_lcn . g_lc'n')``); its columns at ``m`` random landmark pixels give
a Nystrom approximation ``U diag(lam) U^T`` (rank ``3m``, no Jacobian products), and the conjugate residual method on
``K u = v`` (``d = J^T u``; one pair per step, minimising ``||r||`` in the preconditioner's norm) is preconditioned
by ``U (lam + delta)^-1 U^T + (I - U U^T) / (lam_min + delta)`` (Frangella, Tropp and Udell 2023).

Section ``kernel`` (SIREN): the whole kernel ``K`` (all 4096 pixels, 12,288 x 12,288), factored: the exact
solve ``d = J^T K^-1 v`` of ``solver="kernel"`` (:func:`~diffrep_lite.pullback.kernel_solve`), one vjp; and the
``sequence`` run with it (3 exact Gauss-Newton fits per level); and the norm of the first step of the exact solve,
of CGLS (8 pairs) and of K-FAC-preconditioned CGLS (10 pairs), with the part of K-FAC's step outside
``range(J^T)``.

Section ``kernel_sizes`` (SIRENs, batch 2, target a smooth image minus the render): seconds and relative residual
of the exact kernel solve against 10 and 20 CGLS pairs as the number of outputs ``M`` grows from a 16 x 16 grey
image to 64 x 64 RGB: where the exact solve stops being the cheaper one.

Section ``nerf_ddr``: DDR itself on notebook 05's 3-D toy with and without the Jacobi preconditioner (held-out
PSNR and seconds).

Prints one JSON document (``--out`` also writes it). One thread, CPU:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_pullback.py --out benchmarks/results/pullback_cpu.json
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_pullback.py --sections sequence kfac_variants nystrom \
        --pairs 20 --out benchmarks/results/pullback_kfac_cpu.json
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_pullback.py --sections kernel \
        --out benchmarks/results/pullback_kernel_cpu.json
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_pullback.py --sections kernel_sizes \
        --out benchmarks/results/pullback_kernel_sizes_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from torch.func import functional_call, jvp, vjp, vmap

from diffrep_lite.diffreps import SirenImage, VoxelNeRF, cameras_on_sphere
from diffrep_lite.priors import GaussianMixture
from diffrep_lite.pullback import (JacobiPreconditioner, KroneckerPreconditioner, _axpy, _bdot, _bdot_t,
                                   adam_solve, cg_solve, hutchinson_diagonal, kernel_solve)
from diffrep_lite.schedule import Schedule

B = 2


def smooth_field(shape, g, width=4.0):
    """Gaussian-blurred white noise over the last two axes, scaled to std 0.5."""
    *lead, H, W = shape
    z = torch.randn(int(np.prod(lead)), 1, H, W, generator=g)
    r = int(3 * width)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * width**2))
    k = k / k.sum()
    z = torch.nn.functional.pad(z, (r, r, r, r), mode="circular")
    z = torch.nn.functional.conv2d(z, k.view(1, 1, 1, -1))
    z = torch.nn.functional.conv2d(z, k.view(1, 1, -1, 1))
    return (0.5 * z / z.std()).reshape(shape)


def siren_problem(seed=0, res=64, channels=3, hidden=256, hidden_layers=3):
    torch.manual_seed(seed)
    rep = SirenImage(res, channels, hidden=hidden, hidden_layers=hidden_layers)
    if (res, channels, hidden, hidden_layers) == (64, 3, 256, 3):
        assert rep.num_params() == 198915
    g = torch.Generator().manual_seed(seed + 1)
    params = rep.init_params(B, generator=g)
    with torch.no_grad():
        v = smooth_field((B, 1, channels, res, res), g) - rep.render(params)
    return rep, params, v


def nerf_problem(seed=0):
    cams = cameras_on_sphere(4, 15.0, radius=2.0, fov=60.0)
    rep = VoxelNeRF(cams, 16, grid=16, channels=4, n_samples=32, background="learned")
    g = torch.Generator().manual_seed(seed + 1)
    params = rep.init_params(B, generator=g)
    with torch.no_grad():
        v = smooth_field((B, 4, 4, 16, 16), g) - rep.render(params)
    return rep, params, v


def rel(r, v):
    return (r.flatten(1).norm(dim=1) / v.flatten(1).norm(dim=1)).tolist()


def true_residual(rep, params, d, v):
    return rel(v - jvp(rep.render, (params,), (d,))[1], v)


# ----------------------------------------------------------------------------------- CGLS family
def run_cg(rep, params, v, iters, precond=None, setup_s=0.0, setup_products=0, **kw):
    rows = []
    t0 = time.perf_counter()

    def cb(k, d, r):
        rows.append({"pairs": k, "seconds": round(setup_s + time.perf_counter() - t0, 3), "rel_residual": rel(r, v)})

    d = cg_solve(rep.render, params, v, iters=iters, precond=precond, callback=cb, check_every=0, **kw)
    final = true_residual(rep, params, d, v)  # the recursion's residual, checked against a fresh jvp
    return {"curve": rows, "setup_seconds": round(setup_s, 3), "setup_products": setup_products,
            "final_true_rel_residual": final}


def exact_diag_field(rep, params):
    """``diag(J^T J)`` of a NeuralField exactly, from the per-pixel layer gradients: ``sum_{c,n} g^2 a^2``."""
    out = {}
    layers = dict(rep._linear_layers())
    for b in range(B):
        for name, (gr, a) in rep.pixel_layer_grads({k: t[b] for k, t in params.items()}).items():
            D = (gr**2).T @ (a**2).repeat(gr.shape[0] // a.shape[0], 1)  # [out, in(+1)]
            if layers[name].bias is not None:
                out.setdefault(f"{name}.weight", []).append(D[:, :-1])
                out.setdefault(f"{name}.bias", []).append(D[:, -1])
            else:
                out.setdefault(f"{name}.weight", []).append(D)
    return {k: torch.stack(t) for k, t in out.items()}


def last_hidden(rep, params):
    """The SIREN's last hidden features at every pixel, ``[B, N, hidden]``: the inputs of its output layer."""
    net = {k[4:]: t for k, t in params.items() if k.startswith("net.")}
    return vmap(lambda p: functional_call(rep.module.net, p, (rep.coords,)))(net)


def run_varpro(rep, params, v, iters, precond=None):
    """Output layer in closed form, CGLS on the hidden layers against ``(I - P) (J_h d - v)``."""
    t0 = time.perf_counter()
    H = last_hidden(rep, params)
    Q, _ = torch.linalg.qr(torch.cat([H, torch.ones_like(H[..., :1])], -1))  # [B, N, 257]
    C = v.shape[2]

    def P(r):
        R = r.reshape(r.shape[0], C, -1).transpose(1, 2)
        return (Q @ (Q.transpose(1, 2) @ R)).transpose(1, 2).reshape(r.shape)

    hidden = [k for k in params if not k.startswith("out.")]
    ph = {k: params[k] for k in hidden}
    po = {k: params[k] for k in params if k.startswith("out.")}

    def render_h(p):  # the render as a function of the hidden layers, projected
        y = rep.render({**p, **po})
        return y - P(y)

    setup = time.perf_counter() - t0
    v1 = v - P(v)
    res = run_cg(type("R", (), {"render": staticmethod(render_h)})(), ph, v1, iters, precond=precond, setup_s=setup)
    n0 = v.flatten(1).norm(dim=1)
    n1 = v1.flatten(1).norm(dim=1)
    for row in res["curve"]:  # residual relative to the original v (the output layer absorbs P(...))
        row["rel_residual"] = (torch.tensor(row["rel_residual"]) * n1 / n0).tolist()
    res["after_closed_form_output_layer"] = (n1 / n0).tolist()
    res.pop("final_true_rel_residual")
    return res


# ----------------------------------------------------------------------------------- K-FAC variants
class EigenCorrectedKFAC(KroneckerPreconditioner):
    """EKFAC: ``M = (U_G (x) U_A) diag(D) (U_G (x) U_A)^T`` with ``U`` the eigenvectors of the K-FAC factors and
    ``D`` the exact diagonal of the block of ``J^T J`` in that basis, floored at ``floor`` times its largest."""

    def __init__(self, rep, raw, floor=1e-8):
        self.blocks = []
        for n, m in rep._linear_layers():
            UGs, UAs, Ds = [], [], []
            for g, a in (r[n] for r in raw):
                UG = torch.linalg.eigh((g.T @ g).double())[1].float()
                UA = torch.linalg.eigh((a.T @ a).double())[1].float()
                D = ((g @ UG) ** 2).T @ ((a @ UA) ** 2).repeat(g.shape[0] // a.shape[0], 1)
                UGs.append(UG), UAs.append(UA), Ds.append(torch.clamp_min(D, floor * D.max()))
            self.blocks.append((f"{n}.weight", f"{n}.bias" if m.bias is not None else None,
                                torch.stack(UGs), torch.stack(UAs), torch.stack(Ds)))

    @staticmethod
    def _apply(block, W):
        _, _, UG, UA, D = block
        return UG @ ((UG.transpose(-1, -2) @ W @ UA) / D) @ UA.transpose(-1, -2)


def kronecker_blocks(rep, raw, mode="kfac", sweeps=1):
    """Per layer ``(G, A)`` stacked over the batch: K-FAC's, ``A`` weighted by each pixel's gradient energy
    (``"weighted"``), or the Frobenius-best ``G (x) A`` of ``sum_n Gamma_n (x) a_n a_n^T`` (``"vanloan"``, alternating
    sweeps from K-FAC, scaled so that the trace matches)."""
    blocks = []
    for n, m in rep._linear_layers():
        Gs, As = [], []
        for g, a in (r[n] for r in raw):
            N = a.shape[0]
            gc = g.reshape(g.shape[0] // N, N, -1)
            G, A = g.T @ g, a.T @ a / N
            if mode == "weighted":
                w = (gc**2).sum((0, 2))
                A = (a * w[:, None]).T @ a / w.sum()
            elif mode == "vanloan":
                for _ in range(sweeps):
                    A = (a * torch.einsum("cni,ij,cnj->n", gc, G, gc)[:, None]).T @ a
                    G = torch.einsum("cni,n,cnj->ij", gc, torch.einsum("ni,ij,nj->n", a, A, a), gc)
                    G, A = G / G.diagonal().sum(), A / A.diagonal().sum()
                A = A * ((gc**2).sum((0, 2)) * (a**2).sum(1)).sum()
            Gs.append(G), As.append(A)
        blocks.append((f"{n}.weight", f"{n}.bias" if m.bias is not None else None, torch.stack(Gs), torch.stack(As)))
    return blocks


def output_layer_closed_form(rep, params, v):
    """The output layer's least-squares increment for ``v`` (zero elsewhere), from the last hidden features."""
    H = last_hidden(rep, params)
    sol = torch.linalg.lstsq(torch.cat([H, torch.ones_like(H[..., :1])], -1),
                             v.reshape(v.shape[0], v.shape[2], -1).transpose(1, 2)).solution
    d = {k: torch.zeros_like(t) for k, t in params.items()}
    d["out.weight"], d["out.bias"] = sol[:, :-1].transpose(1, 2), sol[:, -1]
    return d


def run_kfac_variants(pairs):
    rep, params, v = siren_problem()
    cg_solve(rep.render, params, v, iters=2)
    raw = [rep.pixel_layer_grads({k: t[b] for k, t in params.items()}) for b in range(B)]
    blocks = kronecker_blocks(rep, raw)  # K-FAC's factors, as NeuralField.kfac_preconditioner builds them
    res = {}
    for damping in (1e-7, 1e-5, 1e-3):
        res[f"kfac_damping_{damping:g}"] = run_cg(rep, params, v, pairs, precond=KroneckerPreconditioner(blocks, damping))
    res["ekfac"] = run_cg(rep, params, v, pairs, precond=EigenCorrectedKFAC(rep, raw))
    res["kfac_weighted_A"] = run_cg(rep, params, v, pairs,
                                    precond=KroneckerPreconditioner(kronecker_blocks(rep, raw, "weighted")))
    res["kronecker_vanloan_1_sweep"] = run_cg(rep, params, v, pairs,
                                              precond=KroneckerPreconditioner(kronecker_blocks(rep, raw, "vanloan")))
    res["kfac_from_closed_form_output_layer"] = run_cg(rep, params, v, pairs, precond=KroneckerPreconditioner(blocks),
                                                       x0=output_layer_closed_form(rep, params, v))
    hidden = KroneckerPreconditioner([b for b in blocks if not b[0].startswith("out.")])
    res["varpro_cgls_kfac"] = run_varpro(rep, params, v, pairs, precond=hidden)
    for name, r in res.items():
        pts = {row["pairs"]: max(row["rel_residual"]) for row in r["curve"]}
        print(f"  {name:36s} " + "  ".join(f"{k}: {pts[k]:.4f}" for k in (2, 5, 10, 20, 40) if k in pts), flush=True)
    return {"siren64": res, "note": "max over the batch of 2 is what the acceptance point reads; rel_residual lists both"}


def nystrom_kernel(raw_b, landmarks):
    """Eigenpairs ``(U, lam)`` of the column-Nystrom approximation of one sample's ``K = J J^T`` at the landmark
    pixels, from ``pixel_layer_grads`` (float32 products, float64 eigensolves)."""
    N = next(iter(raw_b.values()))[1].shape[0]
    C = next(iter(raw_b.values()))[0].shape[0] // N
    m = len(landmarks)
    idx = torch.cat([c * N + landmarks for c in range(C)])
    cols = sum((a @ a[landmarks].T).repeat(C, C) * (g @ g[idx].T) for g, a in raw_b.values())  # K[:, idx]
    ev, vec = torch.linalg.eigh(0.5 * (cols[idx] + cols[idx].T).double())
    keep = ev > ev.max() * 1e-10
    Y = cols @ (vec[:, keep] / ev[keep].sqrt()).float()  # K_nys = Y Y^T
    s2, V = torch.linalg.eigh((Y.T @ Y).double())
    keep = s2 > s2.max() * 1e-10
    return (Y @ (V[:, keep] / s2[keep].sqrt()).float()), s2[keep].float()


def run_pcr_output_space(rep, params, v, pairs, eig, delta_rel, setup_s):
    """The preconditioned conjugate residual method on ``J J^T u = v``, ``d = J^T u`` (one pair a step)."""
    p0 = {k: t.detach() for k, t in params.items()}
    _, vjp_fn = vjp(rep.render, p0)
    vf = v.reshape(B, -1)

    def M(r):
        out = []
        for b, (U, lam) in enumerate(eig):
            delta = delta_rel * lam.max()
            c = U.T @ r[b]
            out.append(U @ (c / (lam + delta)) + (r[b] - U @ c) / (lam.min() + delta))
        return torch.stack(out)

    def K(x):
        q = vjp_fn(x.reshape(v.shape))[0]
        return q, jvp(rep.render, (p0,), (q,))[1].reshape(B, -1)

    # the search direction p itself is never needed: d moves along q_p = J^T p, r along A p = K p
    rows, t0 = [], time.perf_counter()
    r = vf.clone()
    z = M(r)
    qp, Ap = K(z)
    zAz = _bdot_t(z, Ap)
    d = {k: torch.zeros_like(t) for k, t in p0.items()}
    for k in range(pairs):
        MAp = M(Ap)
        alpha = zAz / _bdot_t(Ap, MAp)
        d = _axpy(alpha, qp, d)
        r = r - alpha[:, None] * Ap
        rows.append({"pairs": k + 1, "seconds": round(setup_s + time.perf_counter() - t0, 3), "rel_residual": rel(r, vf)})
        if k == pairs - 1:
            break
        z = z - alpha[:, None] * MAp
        qz, Az = K(z)
        zAz_new = _bdot_t(z, Az)
        beta = zAz_new / zAz
        zAz = zAz_new
        qp = _axpy(beta, qp, qz)
        Ap = Az + beta[:, None] * Ap
    return {"curve": rows, "setup_seconds": round(setup_s, 3),
            "setup_products": "1 forward + C backward passes per sample", "final_true_rel_residual": true_residual(rep, p0, d, v)}


def run_nystrom(pairs, configs=((512, (1e-2, 1e-3, 1e-4)), (1024, (1e-2, 1e-3, 1e-4)), (2048, (1e-3,)))):
    rep, params, v = siren_problem()
    cg_solve(rep.render, params, v, iters=2)
    N = rep.coords.shape[0]
    res = {}
    for m, deltas in configs:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        raw = [rep.pixel_layer_grads({k: t[b] for k, t in params.items()}) for b in range(B)]
        eig = [nystrom_kernel(raw[b], torch.randperm(N, generator=g)[:m]) for b in range(B)]
        setup = time.perf_counter() - t0
        for delta in deltas:
            r = res[f"nystrom_{m}_pixels_delta_{delta:g}"] = run_pcr_output_space(rep, params, v, pairs, eig, delta, setup)
            pts = {row["pairs"]: max(row["rel_residual"]) for row in r["curve"]}
            print(f"  nystrom {m} pixels, delta {delta:g}, setup {setup:.1f} s: "
                  + "  ".join(f"{k}: {pts[k]:.4f}" for k in (2, 5, 10, 20) if k in pts), flush=True)
    return {"siren64": res, "note": "max over the batch of 2 is what the acceptance point reads; rel_residual lists both"}


def run_kernel():
    """The exact solve through the whole pixel kernel (``solver="kernel"``): one vjp, then the checking jvp; and
    DDR's Gauss-Newton fits with it (the ``sequence`` run)."""
    rep, params, v = siren_problem()
    cg_solve(rep.render, params, v, iters=2)
    t0 = time.perf_counter()
    d = kernel_solve(rep.render, params, v, kernel=rep.pixel_kernel)
    sec = time.perf_counter() - t0
    r = true_residual(rep, params, d, v)
    print(f"  exact pixel kernel: 1 pair, {sec:.1f} s (kernel, factorisation and vjp): {max(r):.2e}", flush=True)
    linear = {"curve": [{"pairs": 1, "seconds": round(sec, 3), "rel_residual": r}],
              "setup_products": "1 forward + C backward passes per sample (the per-pixel factors), no pairs",
              "final_true_rel_residual": r}
    t0 = time.perf_counter()  # the best iterative solve, timed in the same run for comparison
    M = rep.kfac_preconditioner(params)
    kfac = run_cg(rep, params, v, 10, precond=M, setup_s=time.perf_counter() - t0,
                  setup_products="1 forward + C backward passes per sample")
    print(f"  K-FAC, 10 pairs: {kfac['curve'][-1]['seconds']:.1f} s with its setup: "
          f"{max(kfac['curve'][-1]['rel_residual']):.4f}", flush=True)
    # Why K-FAC stalls the fit and the exact solve does not: the size of each step and, for K-FAC, the part of
    # its step outside range(J^T) (d - J^+ J d), which changes nothing to first order.
    def norm(x):
        return [round(t, 4) for t in _bdot(x, x).sqrt().tolist()]

    df = cg_solve(rep.render, params, v, iters=10, precond=M)  # run_cg keeps the curve, not the increment
    inside = kernel_solve(rep.render, params, jvp(rep.render, (params,), (df,))[1], kernel=rep.pixel_kernel)
    steps = {"exact": norm(d), "cgls_8": norm(cg_solve(rep.render, params, v, iters=8)), "cgls_kfac_10": norm(df),
             "cgls_kfac_10_outside_range_Jt": norm({k: df[k] - inside[k] for k in df})}
    print(f"  step norms: {steps}", flush=True)
    return {"siren64": {"kernel_exact": linear, "cgls_kfac_10": kfac}, "step_norms": steps,
            "sequence": run_sequence(configs={"kernel_exact": {"kernel": True}})}


def run_kernel_sizes(sizes=((16, 1, 64, 2), (16, 1, 256, 3), (16, 3, 256, 3), (32, 1, 256, 3), (32, 3, 256, 3),
                             (64, 1, 256, 3), (48, 3, 256, 3), (64, 3, 256, 3))):
    """Seconds and residual of the exact kernel solve and of 10 / 20 CGLS pairs against the number of outputs."""
    rows = []
    for res, C, hidden, layers in sizes:
        rep, params, v = siren_problem(res=res, channels=C, hidden=hidden, hidden_layers=layers)
        cg_solve(rep.render, params, v, iters=2)  # warm-up
        kernel_solve(rep.render, {k: t[:1] for k, t in params.items()}, v[:1], kernel=rep.pixel_kernel)
        row = {"resolution": res, "channels": C, "hidden": hidden, "hidden_layers": layers,
               "num_params": rep.num_params(), "outputs_per_sample": v[0].numel()}
        t0 = time.perf_counter()
        d = kernel_solve(rep.render, params, v, kernel=rep.pixel_kernel)
        row["kernel"] = {"seconds": round(time.perf_counter() - t0, 3),
                         "rel_residual": [round(x, 7) for x in true_residual(rep, params, d, v)]}
        for k in (10, 20):
            t0 = time.perf_counter()
            d = cg_solve(rep.render, params, v, iters=k)
            row[f"cgls_{k}"] = {"seconds": round(time.perf_counter() - t0, 3),
                                "rel_residual": [round(x, 5) for x in true_residual(rep, params, d, v)]}
        print(f"  {res}x{res}x{C} width {hidden}x{layers} (M = {row['outputs_per_sample']}): kernel "
              f"{row['kernel']['seconds']:.2f} s {max(row['kernel']['rel_residual']):.1e}; CGLS 10 "
              f"{row['cgls_10']['seconds']:.2f} s {max(row['cgls_10']['rel_residual']):.3f}; CGLS 20 "
              f"{row['cgls_20']['seconds']:.2f} s {max(row['cgls_20']['rel_residual']):.3f}", flush=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------- scipy, Adam
def run_scipy(rep, params, v, method, ks):
    from scipy.sparse.linalg import LinearOperator, lsmr, lsqr

    rows = []
    for k in ks:
        t0 = time.perf_counter()
        res, pairs = [], []
        for b in range(B):
            pb = {key: t[b:b + 1].detach() for key, t in params.items()}
            shapes = {key: t.shape for key, t in pb.items()}
            sizes = [t.numel() for t in pb.values()]
            _, vjp_fn = vjp(rep.render, pb)
            cnt = {"mv": 0, "rmv": 0}

            def unflat(x):
                parts = torch.split(torch.as_tensor(x, dtype=torch.float32), sizes)
                return {key: parts[i].reshape(shapes[key]) for i, key in enumerate(pb)}

            def mv(x):
                cnt["mv"] += 1
                return jvp(rep.render, (pb,), (unflat(np.ravel(x)),))[1].reshape(-1).double().numpy()

            def rmv(y):
                cnt["rmv"] += 1
                g = vjp_fn(torch.as_tensor(np.ravel(y), dtype=torch.float32).reshape(v[b:b + 1].shape))[0]
                return torch.cat([g[key].reshape(-1) for key in pb]).double().numpy()

            A = LinearOperator((v[b].numel(), sum(sizes)), matvec=mv, rmatvec=rmv, dtype=np.float64)
            rhs = v[b].reshape(-1).double().numpy()
            fn = lsqr if method == "lsqr" else lsmr
            x = fn(A, rhs, atol=0, btol=0, conlim=0, iter_lim=k)[0] if method == "lsqr" else \
                fn(A, rhs, atol=0, btol=0, conlim=0, maxiter=k)[0]
            r = rhs - A.matvec(x)
            cnt["mv"] -= 1  # the check above is not part of the solve
            res.append(float(np.linalg.norm(r) / np.linalg.norm(rhs)))
            pairs.append(max(cnt["mv"], cnt["rmv"]))
        rows.append({"pairs": max(pairs), "iter_lim": k, "seconds": round(time.perf_counter() - t0, 3),
                     "rel_residual": res})
    return {"curve": rows, "note": "one sample at a time; seconds for both samples"}


def run_adam(rep, params, v, ks, lr=1e-3):
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        d = adam_solve(rep.render, params, v, iters=k, lr=lr)
        sec = time.perf_counter() - t0
        rows.append({"steps": k, "seconds": round(sec, 3), "rel_residual": true_residual(rep, params, d, v)})
    return {"curve": rows, "lr": lr, "note": "one forward + backward per step (about one vjp); nonlinear fit"}


# ----------------------------------------------------------------------------------- DDR-like sequence
def run_sequence(levels=4, n_levels=10, fits=3, configs=None):
    rep, params, _ = siren_problem()
    g = torch.Generator().manual_seed(5)
    means = smooth_field((4, 3, 64, 64), g)
    prior = GaussianMixture(torch.ones(4), means, 1e-4, schedule=Schedule.named("scaled_linear"))
    sig = prior.schedule.sigma_grid(n_levels)
    eps0 = torch.randn(B, 1, 3, 64, 64, generator=torch.Generator().manual_seed(3))

    def nl(x0, f):
        return [round(x, 3) for x in (x0 - f).flatten(1).norm(dim=1).tolist()]

    def line_search(p, d, x0):
        best = None
        for a in (1.0, 0.5, 0.25, 0.125, 0.0625):
            with torch.no_grad():
                r = (x0 - rep.render({k: p[k] + a * d[k] for k in p})).flatten(1).norm(dim=1).max()
            if best is None or r < best[0]:
                best = (r, a)
        return {k: best[1] * t for k, t in d.items()}

    out = {}
    for name, cfg in configs.items():
        p, eps, prev = dict(params), eps0, {}
        t0 = time.perf_counter()
        rows = []
        for i in range(levels):
            with torch.no_grad():
                f = rep.render(p)
            s = float(sig[i])
            eh = prior.eps((f + s * eps).flatten(0, 1), torch.full((B,), s)).reshape(f.shape)
            x0 = f + s * (eps - eh)
            trail = [nl(x0, f)]
            for j in range(fits):
                if cfg.get("kernel"):
                    d = kernel_solve(rep.render, p, x0 - f, kernel=rep.pixel_kernel)
                else:
                    pre = rep.kfac_preconditioner(p) if cfg.get("kfac") else None
                    d = cg_solve(rep.render, p, x0 - f, iters=cfg["iters"], precond=pre,
                                 damping=cfg.get("damping", 0.0), x0=prev.get(j) if cfg.get("warm") else None)
                prev[j] = d
                if cfg.get("line_search"):
                    d = line_search(p, d, x0)
                p = {k: p[k] + d[k] for k in p}
                with torch.no_grad():
                    f = rep.render(p)
                trail.append(nl(x0, f))
            eps = eh
            rows.append({"level": i, "sigma": round(s, 4), "nonlinear_residual_per_fit": trail})
        out[name] = {"config": cfg, "seconds": round(time.perf_counter() - t0, 2), "levels": rows,
                     "final_nonlinear_residual": rows[-1]["nonlinear_residual_per_fit"][-1]}
        print(f"  sequence {name}: {out[name]['seconds']} s, per level "
              + " | ".join("->".join(str(max(x)) for x in r["nonlinear_residual_per_fit"]) for r in rows), flush=True)
    return out


def run_nerf_ddr(iters=4):
    """DDR itself on the 3-D toy of notebook 05 (20 levels, U = 2, 4 samples) with and without the Jacobi
    preconditioner: held-out PSNR to the nearest true scene and seconds."""
    import diffrep_lite as dl
    from diffrep_lite.priors import blob_scenes, geometric_schedule, psnr, scene_mixture

    cams = cameras_on_sphere(6, [-30.0, 0.0, 30.0, 60.0], radius=2.5, fov=40.0, azimuth_offset=20.0)
    nerf = VoxelNeRF(cams, 12, grid=8, channels=3, background=1.0, view_conds="index", init_features=0.0, n_samples=16)
    scenes = blob_scenes(2, 8, n_blobs=2, generator=torch.Generator().manual_seed(1))
    prior = scene_mixture(nerf, scenes, variance=1e-3, schedule=geometric_schedule(0.01, 200.0))
    held = cameras_on_sphere(6, [15.0, 40.0], radius=2.5, fov=40.0)
    with torch.no_grad():
        true = nerf.render(scenes, held)
    out = {}
    for pre in (None, "jacobi"):
        t0 = time.perf_counter()
        res = dl.sample("ddr", prior, nerf, steps=20, n=4, seed=0, repaint_iters=2, eta=1.0, solver_iters=iters,
                        preconditioner=pre, progress=False)
        sec = time.perf_counter() - t0
        with torch.no_grad():
            x = nerf.render(res.params, held)
        q = [round(max(float(psnr(x[b], true[k]).mean()) for k in range(2)), 2) for b in range(4)]
        out[str(pre)] = {"solver_iters": iters, "seconds": round(sec, 2), "held_out_psnr_db": q}
        print(f"  nerf DDR preconditioner={pre}: {sec:.1f} s, held-out PSNR {q}", flush=True)
    return out


SEQUENCE = {
    "cgls_4": {"iters": 4}, "cgls_8": {"iters": 8}, "cgls_16": {"iters": 16},
    "cgls_8_warm": {"iters": 8, "warm": True},
    "cgls_kfac_10": {"iters": 10, "kfac": True},
    "cgls_kfac_10_line_search": {"iters": 10, "kfac": True, "line_search": True},
    "cgls_kfac_8_damping_100": {"iters": 8, "kfac": True, "damping": 100.0},
    "cgls_kfac_1": {"iters": 1, "kfac": True},
    "cgls_kfac_2_line_search": {"iters": 2, "kfac": True, "line_search": True},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40, help="largest number of pairs on the curves")
    ap.add_argument("--sections", nargs="+", default=["linear", "sequence", "nerf_ddr"],
                    choices=["linear", "sequence", "nerf_ddr", "kfac_variants", "nystrom", "kernel",
                             "kernel_sizes"])
    ap.add_argument("--problems", nargs="+", default=["siren64", "nerf"], choices=["siren64", "nerf"])
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ks = [k for k in (2, 5, 10, 20, 40, 80) if k <= a.pairs]
    doc = {"benchmark": "pullback", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
           "batch": B}
    if "linear" in a.sections:
        doc["linear"] = {}
        for prob in a.problems:
            rep, params, v = (siren_problem if prob == "siren64" else nerf_problem)()
            res = {"num_params": rep.num_params(), "outputs_per_sample": v[0].numel()}
            cg_solve(rep.render, params, v, iters=2)  # warm-up: the first call pays one-off costs
            print(f"{prob}: {rep.num_params()} parameters, {v[0].numel()} outputs", flush=True)
            res["cgls"] = run_cg(rep, params, v, a.pairs)
            for m in (4, 16):
                t0 = time.perf_counter()
                D = hutchinson_diagonal(rep.render, params, m, generator=torch.Generator().manual_seed(0))
                res[f"cgls_jacobi_hutchinson{m}"] = run_cg(rep, params, v, a.pairs, precond=JacobiPreconditioner(D),
                                                           setup_s=time.perf_counter() - t0, setup_products=f"{m} vjps")
            if prob == "siren64":
                t0 = time.perf_counter()
                D = exact_diag_field(rep, params)
                res["cgls_jacobi_exact"] = run_cg(rep, params, v, a.pairs, precond=JacobiPreconditioner(D),
                                                  setup_s=time.perf_counter() - t0,
                                                  setup_products="1 forward + C backward passes per sample")
                t0 = time.perf_counter()
                M = rep.kfac_preconditioner(params)
                res["cgls_kfac"] = run_cg(rep, params, v, a.pairs, precond=M, setup_s=time.perf_counter() - t0,
                                          setup_products="1 forward + C backward passes per sample")
                res["varpro_cgls"] = run_varpro(rep, params, v, a.pairs)
            res["lsqr"] = run_scipy(rep, params, v, "lsqr", [k for k in ks if k <= 20])
            res["lsmr"] = run_scipy(rep, params, v, "lsmr", [k for k in ks if k <= 20])
            res["adam"] = run_adam(rep, params, v, ks)
            for name, r in res.items():
                if isinstance(r, dict) and "curve" in r:
                    pts = {row.get("iter_lim", row.get("pairs", row.get("steps"))): (max(row["rel_residual"]), row["seconds"])
                           for row in r["curve"]}
                    shown = "  ".join(f"{k}: {pts[k][0]:.4f} ({pts[k][1]:.1f} s)" for k in (2, 5, 10, 20, 40) if k in pts)
                    print(f"  {name:28s} setup {r.get('setup_seconds', 0):.2f} s  {shown}", flush=True)
            doc["linear"][prob] = res
    if "sequence" in a.sections:
        doc["sequence"] = run_sequence(configs=SEQUENCE)
    if "kfac_variants" in a.sections:
        doc["kfac_variants"] = run_kfac_variants(min(a.pairs, 20))
    if "nystrom" in a.sections:
        doc["nystrom"] = run_nystrom(min(a.pairs, 20))
    if "kernel" in a.sections:
        doc["kernel"] = run_kernel()
    if "kernel_sizes" in a.sections:
        doc["kernel_sizes"] = run_kernel_sizes()
    if "nerf_ddr" in a.sections:
        doc["nerf_ddr"] = run_nerf_ddr()
    text = json.dumps(doc, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
