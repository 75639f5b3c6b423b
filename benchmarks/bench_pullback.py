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
* ``adam``: the inner-Adam fit (``solver="adam"``, lr 1e-3), one forward and backward per step.

Section ``sequence`` (SIREN): what DDR does with the solve. ``dl.sample("ddr", ...)`` (convention B, 3
Gauss-Newton fits per level) on an exact mixture prior of four smooth 64x64 images (scaled-linear schedule, 10
levels, the first 4 run); per level the *nonlinear* residual ``||x0_hat - f(theta)||`` before the level and after
each fit, for CGLS with 4 / 8 / 16 pairs, K-FAC-preconditioned CGLS and the exact kernel solve. The prior and the
SIREN are subclassed to observe what DDR does: the prior keeps each level's ``x0_hat``, the SIREN each render made
outside the solver (one after every fit). ``pullback_cpu.json`` also holds two variants DDR does not offer and that
lost (CGLS warm-started from the previous level's increment; K-FAC with a backtracking line search), measured by a
hand-written loop before issue 26.

Section ``kernel`` (SIREN): the whole kernel ``K = J J^T`` (all 4096 pixels, 12,288 x 12,288), factored: the exact
solve ``d = J^T K^-1 v`` of ``solver="kernel"`` (:func:`~diffrep_lite.pullback.kernel_solve`), one vjp; and the
``sequence`` run with it (3 exact Gauss-Newton fits per level); and the norm of the first step of the exact solve,
of CGLS (8 pairs) and of K-FAC-preconditioned CGLS (10 pairs), with the part of K-FAC's step outside
``range(J^T)``.

Section ``kernel_sizes`` (SIRENs, batch 2, target a smooth image minus the render): seconds and relative residual
of the exact kernel solve against 10 and 20 CGLS pairs as the number of outputs ``M`` grows from a 16 x 16 grey
image to 64 x 64 RGB: where the exact solve stops being the cheaper one.

Section ``nerf_ddr``: DDR itself on notebook 05's 3-D toy with and without the Jacobi preconditioner (held-out
PSNR and seconds).

The solvers that lost (variable projection, LSQR/LSMR, EKFAC and other K-FAC variants, a Nystrom-preconditioned
conjugate residual method) are in :mod:`benchmarks.lab.pullback_solvers`.

Prints one JSON document (``--out`` also writes it). One thread, CPU:

    OMP_NUM_THREADS=1 python -m benchmarks.bench_pullback --out benchmarks/results/pullback_cpu.json
    OMP_NUM_THREADS=1 python -m benchmarks.bench_pullback --sections sequence --pairs 20
    OMP_NUM_THREADS=1 python -m benchmarks.bench_pullback --sections kernel --out benchmarks/results/pullback_kernel_cpu.json
    OMP_NUM_THREADS=1 python -m benchmarks.bench_pullback --sections kernel_sizes \
        --out benchmarks/results/pullback_kernel_sizes_cpu.json
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.func import jvp

import diffrep_lite as dl
from diffrep_lite.diffreps import SirenImage, VoxelNeRF, cameras_on_sphere
from diffrep_lite.metrics import psnr
from diffrep_lite.priors import GaussianMixture, blob_scenes, scene_mixture
from diffrep_lite.pullback import JacobiPreconditioner, adam_solve, cg_solve, hutchinson_diagonal, kernel_solve
from diffrep_lite.schedule import Schedule, geometric_schedule

from . import harness

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
    layers = dict(rep.linear_layers())
    for b in range(B):
        for name, (gr, a) in rep.pixel_layer_grads({k: t[b] for k, t in params.items()}).items():
            D = (gr**2).T @ (a**2).repeat(gr.shape[0] // a.shape[0], 1)  # [out, in(+1)]
            if layers[name].bias is not None:
                out.setdefault(f"{name}.weight", []).append(D[:, :-1])
                out.setdefault(f"{name}.bias", []).append(D[:, -1])
            else:
                out.setdefault(f"{name}.weight", []).append(D)
    return {k: torch.stack(t) for k, t in out.items()}


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
        return [round(t, 4) for t in sum((t * t).flatten(1).sum(1) for t in x.values()).sqrt().tolist()]

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
def run_adam(rep, params, v, ks, lr=1e-3):
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        d = adam_solve(rep.render, params, v, iters=k, lr=lr)
        sec = time.perf_counter() - t0
        rows.append({"steps": k, "seconds": round(sec, 3), "rel_residual": true_residual(rep, params, d, v)})
    return {"curve": rows, "lr": lr, "note": "one forward + backward per step (about one vjp); nonlinear fit"}


# ----------------------------------------------------------------------------------- DDR's sequence of solves
class StopAfter(Exception):
    """Raised by the callback to end a run after the levels that were asked for."""


def run_sequence(levels=4, n_levels=10, fits=3, configs=None):
    """``dl.sample("ddr", ...)`` for the first ``levels`` of ``n_levels``, ``fits`` Gauss-Newton fits per level;
    the nonlinear residual ``||x0_hat - f(theta)||`` before each level and after each fit."""
    _, params, _ = siren_problem()
    x0_hats, renders = [], []

    class ObservedMixture(GaussianMixture):
        def eps(self, x, sigma, cond=None, guidance_scale=None):
            e = super().eps(x, sigma, cond, guidance_scale)
            x0_hats.append(x - torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1) * e)
            return e

    class ObservedSiren(SirenImage):
        def render(self, params, views=None):
            f = super().render(params, views)
            if not torch.is_grad_enabled():  # DDR's own renders; the solver's run inside torch.func transforms
                renders.append(f)
            return f

    torch.manual_seed(0)
    rep = ObservedSiren(64, 3, hidden=256, hidden_layers=3)  # siren_problem's SIREN, observed
    g = torch.Generator().manual_seed(5)
    prior = ObservedMixture(torch.ones(4), smooth_field((4, 3, 64, 64), g), 1e-4, schedule=Schedule.named("scaled_linear"))
    sig = prior.schedule.sigma_grid(n_levels)

    def nl(x0, f):
        return [round(x, 3) for x in (x0 - f).flatten(1).norm(dim=1).tolist()]

    def stop(step, info):
        if step == levels - 1:
            raise StopAfter

    out = {}
    for name, cfg in configs.items():
        x0_hats.clear(), renders.clear()
        solver = dict(solver="kernel") if cfg.get("kernel") else dict(
            solver="cg", solver_iters=cfg["iters"], damping=cfg.get("damping", 0.0),
            preconditioner="kfac" if cfg.get("kfac") else None)
        t0 = time.perf_counter()
        try:
            dl.sample("ddr", prior, rep, steps=n_levels, params0=params, seed=3, fit_iters=fits, callback=stop,
                      progress=False, **solver)
        except StopAfter:
            pass
        sec = time.perf_counter() - t0
        if len(renders) != 1 + levels * fits or len(x0_hats) != levels:
            raise RuntimeError(f"expected {1 + levels * fits} renders and {levels} prior calls outside the solver, "
                               f"saw {len(renders)} and {len(x0_hats)}: DDR's loop changed, adapt the observers")
        rows = []
        for i in range(levels):
            x0 = x0_hats[i].reshape(renders[0].shape)
            trail = [nl(x0, f) for f in renders[i * fits: (i + 1) * fits + 1]]
            rows.append({"level": i, "sigma": round(float(sig[i]), 4), "nonlinear_residual_per_fit": trail})
        out[name] = {"config": cfg, "seconds": round(sec, 2), "levels": rows,
                     "final_nonlinear_residual": rows[-1]["nonlinear_residual_per_fit"][-1]}
        print(f"  sequence {name}: {out[name]['seconds']} s, per level "
              + " | ".join("->".join(str(max(x)) for x in r["nonlinear_residual_per_fit"]) for r in rows), flush=True)
    return out


def run_nerf_ddr(iters=4):
    """DDR itself on the 3-D toy of notebook 05 (20 levels, U = 2, 4 samples) with and without the Jacobi
    preconditioner: held-out PSNR to the nearest true scene and seconds."""
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
        res = dl.sample("ddr", prior, nerf, steps=20, n=4, seed=0, repaint_iters=2, jump_eta=1.0, solver_iters=iters,
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
    "cgls_kfac_10": {"iters": 10, "kfac": True},
    "cgls_kfac_8_damping_100": {"iters": 8, "kfac": True, "damping": 100.0},
    "cgls_kfac_1": {"iters": 1, "kfac": True},
}


def main(argv=None):
    ap = harness.parser(__doc__, threads=1)
    ap.add_argument("--pairs", type=int, default=40, help="largest number of pairs on the curves")
    ap.add_argument("--sections", nargs="+", default=["linear", "sequence", "nerf_ddr"],
                    choices=["linear", "sequence", "nerf_ddr", "kernel", "kernel_sizes"])
    ap.add_argument("--problems", nargs="+", default=["siren64", "nerf"], choices=["siren64", "nerf"])
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    ks = [k for k in (2, 5, 10, 20, 40, 80) if k <= a.pairs]
    doc = {"benchmark": "pullback", **harness.environment("torch", "threads", "platform", "cpu_count", "load_average"),
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
    if "kernel" in a.sections:
        doc["kernel"] = run_kernel()
    if "kernel_sizes" in a.sections:
        doc["kernel_sizes"] = run_kernel_sizes()
    if "nerf_ddr" in a.sections:
        doc["nerf_ddr"] = run_nerf_ddr()
    harness.emit(doc, a.out)


if __name__ == "__main__":
    main()
