"""Exploratory pull-back solvers that did not make it into the library, kept with their measurements.

Not part of :mod:`diffrep_lite` and not imported by it; these are the experiments behind the choices the library
made (CGLS, Jacobi and K-FAC preconditioning, the exact pixel-kernel solve), on the problems of
:mod:`benchmarks.bench_pullback` (a 64x64 RGB SIREN of 198,915 parameters and a latent voxel NeRF, batch 2):

* ``linear``: variable projection (``varpro_cgls``: the output layer solved in closed form per channel on the last
  hidden features, CGLS on the other layers against what it leaves) and ``scipy.sparse.linalg``'s ``lsqr`` and
  ``lsmr`` on a ``LinearOperator`` of jvp/vjp, one sample at a time (float64 outside, float32 products);
* ``kfac_variants``: attempts to bring K-FAC below ``1e-2`` in 10 pairs: its damping; eigenvalue-corrected K-FAC
  (EKFAC: the exact diagonal of ``J^T J`` in the Kronecker eigenbasis, George et al. 2018); the best Kronecker
  approximation of each block in the Frobenius norm (Van Loan's alternating fit, started from K-FAC) and K-FAC
  with ``A`` weighted by each pixel's gradient energy; the output layer in closed form with K-FAC on the other
  layers; K-FAC started from the closed-form output layer;
* ``nystrom``: a preconditioner that sees the coupling between layers. The kernel ``K = J J^T`` is known exactly
  from the per-pixel layer factors (``K[(c,n),(c',n')] = sum_l (a_ln . a_ln') (g_lcn . g_lc'n')``); its columns
  at ``m`` random landmark pixels give a Nystrom approximation ``U diag(lam) U^T``, and the conjugate residual
  method on ``K u = v`` (``d = J^T u``) is preconditioned by ``U (lam + delta)^-1 U^T + (I - U U^T) / (lam_min +
  delta)`` (Frangella, Tropp and Udell 2023).

Results: ``benchmarks/results/pullback_cpu.json`` (``linear``: the ``varpro_cgls``, ``lsqr`` and ``lsmr`` rows)
and ``benchmarks/results/pullback_kfac_cpu.json`` (``kfac_variants``, ``nystrom``), recorded when these sections
were part of ``bench_pullback``. One thread, CPU::

    OMP_NUM_THREADS=1 python -m benchmarks.lab.pullback_solvers --sections kfac_variants nystrom --pairs 20
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.func import functional_call, jvp, vjp, vmap

from diffrep_lite.pullback import KroneckerPreconditioner, cg_solve

from .. import harness
from ..bench_pullback import B, nerf_problem, rel, run_cg, siren_problem, true_residual


def bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product of two ``[B, ...]`` tensors -> ``[B]``."""
    return (a * b).flatten(1).sum(1)


def axpy(alpha: torch.Tensor, x: dict, y: dict) -> dict:
    """``y + alpha * x`` for parameter dicts, with a per-sample ``alpha`` ``[B]``."""
    return {k: y[k] + alpha.reshape(-1, *([1] * (x[k].ndim - 1))) * x[k] for k in y}


# ----------------------------------------------------------------------------------- variable projection
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


# ----------------------------------------------------------------------------------- K-FAC variants, Nystrom
class EigenCorrectedKFAC:
    """EKFAC: ``M = (U_G (x) U_A) diag(D) (U_G (x) U_A)^T`` with ``U`` the eigenvectors of the K-FAC factors and
    ``D`` the exact diagonal of the block of ``J^T J`` in that basis, floored at ``floor`` times its largest.
    Called on a parameter-shaped dict ``s`` it returns ``M^{-1} s`` (a ``precond`` of ``cg_solve``)."""

    def __init__(self, rep, raw, floor=1e-8):
        self.blocks = []
        for n, m in rep.linear_layers():
            UGs, UAs, Ds = [], [], []
            for g, a in (r[n] for r in raw):
                UG = torch.linalg.eigh((g.T @ g).double())[1].float()
                UA = torch.linalg.eigh((a.T @ a).double())[1].float()
                D = ((g @ UG) ** 2).T @ ((a @ UA) ** 2).repeat(g.shape[0] // a.shape[0], 1)
                UGs.append(UG), UAs.append(UA), Ds.append(torch.clamp_min(D, floor * D.max()))
            self.blocks.append((f"{n}.weight", f"{n}.bias" if m.bias is not None else None,
                                torch.stack(UGs), torch.stack(UAs), torch.stack(Ds)))

    def __call__(self, s):
        out = {}
        for wk, bk, UG, UA, D in self.blocks:
            W = s[wk] if bk is None else torch.cat([s[wk], s[bk].unsqueeze(-1)], -1)
            W = UG @ ((UG.transpose(-1, -2) @ W @ UA) / D) @ UA.transpose(-1, -2)
            out.update({wk: W} if bk is None else {wk: W[..., :-1], bk: W[..., -1]})
        return out


def kronecker_blocks(rep, raw, mode="kfac", sweeps=1):
    """Per layer ``(G, A)`` stacked over the batch: K-FAC's, ``A`` weighted by each pixel's gradient energy
    (``"weighted"``), or the Frobenius-best ``G (x) A`` of ``sum_n Gamma_n (x) a_n a_n^T`` (``"vanloan"``, alternating
    sweeps from K-FAC, scaled so that the trace matches)."""
    blocks = []
    for n, m in rep.linear_layers():
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
    zAz = bdot(z, Ap)
    d = {k: torch.zeros_like(t) for k, t in p0.items()}
    for k in range(pairs):
        MAp = M(Ap)
        alpha = zAz / bdot(Ap, MAp)
        d = axpy(alpha, qp, d)
        r = r - alpha[:, None] * Ap
        rows.append({"pairs": k + 1, "seconds": round(setup_s + time.perf_counter() - t0, 3), "rel_residual": rel(r, vf)})
        if k == pairs - 1:
            break
        z = z - alpha[:, None] * MAp
        qz, Az = K(z)
        zAz_new = bdot(z, Az)
        beta = zAz_new / zAz
        zAz = zAz_new
        qp = axpy(beta, qp, qz)
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


# ----------------------------------------------------------------------------------- scipy
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


def main(argv=None):
    ap = harness.parser(__doc__, threads=1)
    ap.add_argument("--pairs", type=int, default=40, help="largest number of pairs on the curves")
    ap.add_argument("--sections", nargs="+", default=["linear"], choices=["linear", "kfac_variants", "nystrom"])
    ap.add_argument("--problems", nargs="+", default=["siren64", "nerf"], choices=["siren64", "nerf"])
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    ks = [k for k in (2, 5, 10, 20, 40, 80) if k <= a.pairs]
    doc = {"benchmark": "pullback_lab", **harness.environment("torch", "threads", "platform", "cpu_count",
                                                              "load_average"), "batch": B}
    if "linear" in a.sections:
        doc["linear"] = {}
        for prob in a.problems:
            rep, params, v = (siren_problem if prob == "siren64" else nerf_problem)()
            cg_solve(rep.render, params, v, iters=2)  # warm-up: the first call pays one-off costs
            res = {"varpro_cgls": run_varpro(rep, params, v, a.pairs)} if prob == "siren64" else {}
            res["lsqr"] = run_scipy(rep, params, v, "lsqr", [k for k in ks if k <= 20])
            res["lsmr"] = run_scipy(rep, params, v, "lsmr", [k for k in ks if k <= 20])
            doc["linear"][prob] = res
    if "kfac_variants" in a.sections:
        doc["kfac_variants"] = run_kfac_variants(min(a.pairs, 20))
    if "nystrom" in a.sections:
        doc["nystrom"] = run_nystrom(min(a.pairs, 20))
    harness.emit(doc, a.out)


if __name__ == "__main__":
    main()
