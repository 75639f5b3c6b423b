#!/usr/bin/env python
"""Overhead per sampler step: seconds, renders and Jacobian products per step of DDR, SJC, SDS and SDI.

The shipped digits model (16x16, CFG 3, 8 samples), a SIREN of 2 hidden layers of 64, DDR with 3 fits of 8
CG iterations per level (notebook 03's settings). Besides wall-clock seconds (noisy on a shared machine) it
counts the work, which is exact: calls of ``diffrep.render`` (a jvp calls it once, a vjp once when it is set
up), and Jacobian products through the render, counted by an identity ``torch.autograd.Function`` on its output
(no patching of the package): ``jvp`` = forward-mode products (the solver's ``J d``), ``vjp`` = backward passes
(the solver's ``J^T v``, and the gradient step of SJC, SDS and SDI, which is one vjp of the render too; the results
recorded before issue 26 counted only the solver's, so their SJC/SDS/SDI rows read 0). A ``vmap`` over probes is
one call.

``--compare OLD_TREE`` runs the same measurement on another checkout of the package (e.g. the code before
issue 12, from ``git archive``) in alternating subprocesses, ``--repeats`` times each, and reports the
fastest run of each, so that both see the same machine load:

    OMP_NUM_THREADS=1 python -m benchmarks.bench_step_overhead --compare /tmp/old_tree
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import harness

METHODS = {"ddr": dict(solver="cg", solver_iters=8, fit_iters=3), "sjc": dict(lr=1e-3), "sds": dict(lr=1e-3),
           "sdi": dict(inversion_steps=3)}


def measure(steps: int, n: int, threads: int = 1) -> dict:
    import torch

    harness.set_threads(threads)
    import diffrep_lite as dl
    from diffrep_lite.diffreps import SirenImage

    counts = {"render": 0, "jvp": 0, "vjp": 0}

    class Products(torch.autograd.Function):
        """The identity on the render, counting the Jacobian products that pass through it."""
        generate_vmap_rule = True

        @staticmethod
        def forward(y):
            return y.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            counts["vjp"] += 1
            return g

        @staticmethod
        def jvp(ctx, t):
            counts["jvp"] += 1
            return t

    class Counted(SirenImage):
        def render(self, params, views=None):
            counts["render"] += 1
            return Products.apply(super().render(params, views))

    prior = dl.priors.load_digits_prior()
    rep = Counted(16, 1, hidden=64, hidden_layers=2)
    rows = {}
    for m, kw in METHODS.items():
        common = dict(n=n, seed=0, cond=3, guidance_scale=3.0, progress=False, **kw)
        dl.sample(m, prior, rep, steps=2, **common)  # warm-up
        counts.update(render=0, jvp=0, vjp=0)
        t0 = time.perf_counter()
        out = dl.sample(m, prior, rep, steps=steps, **common)
        dt = time.perf_counter() - t0
        assert torch.isfinite(out.x).all()
        rows[m] = {"seconds_per_step": round(dt / steps, 5), **{f"{k}_per_step": v / steps for k, v in counts.items()},
                   "options": kw}
    return rows


def vmap_vs_loop(probes: int = 16, repeats: int = 3, threads: int = 1) -> dict:
    """Seconds for ``probes`` vjps with one Jacobian (Hutchinson's probes): ``vmap`` over them against a loop,
    on a SIREN and on the 3-D toy's voxel NeRF (best of ``repeats``)."""
    import torch
    from torch.func import vjp, vmap

    from diffrep_lite.diffreps import SirenImage, VoxelNeRF, cameras_on_sphere

    harness.set_threads(threads)
    cams = cameras_on_sphere(6, [-30.0, 0.0, 30.0, 60.0], radius=2.5, fov=40.0, azimuth_offset=20.0)
    reps = {"siren16 (64 wide, 2 hidden)": SirenImage(16, 1, hidden=64, hidden_layers=2),
            "voxel NeRF (3-D toy: 8^3, 24 views of 12x12)": VoxelNeRF(cams, 12, grid=8, channels=3, background=1.0,
                                                                      init_features=0.0, n_samples=16)}
    out = {}
    for name, rep in reps.items():
        params = rep.init_params(4, generator=torch.Generator().manual_seed(0))
        y, fn = vjp(rep.render, params)
        z = torch.randn(probes, *y.shape)
        tv, tl = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            vmap(fn)(z)
            tv.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            [fn(zz) for zz in z]
            tl.append(time.perf_counter() - t0)
        out[name] = {"probes": probes, "batch": 4, "vmap_seconds": round(min(tv), 4), "loop_seconds": round(min(tl), 4)}
    return out


def main(argv=None):
    ap = harness.parser(__doc__, threads=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--compare", help="another checkout of the package to measure the same way")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        harness.emit(measure(a.steps, a.n, a.threads), indent=None)
        return
    trees = {"this": str(harness.ROOT), **({"compare": str(Path(a.compare).resolve())} if a.compare else {})}
    runs = {k: [] for k in trees}
    for _ in range(a.repeats):
        for name, tree in trees.items():
            runs[name].append(harness.run_module("bench_step_overhead", "--one", "--steps", a.steps, "--n", a.n,
                                                 "--threads", a.threads, library=tree,
                                                 env={"OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1"}))
    best = {name: {m: {**r[0][m], "seconds_per_step": min(x[m]["seconds_per_step"] for x in r),
                       "seconds_per_step_all_runs": [x[m]["seconds_per_step"] for x in r]} for m in METHODS}
            for name, r in runs.items()}
    doc = {"benchmark": "step_overhead", "model": "shipped digits16, 16x16, CFG 3", "n": a.n, "steps": a.steps,
           "siren": {"hidden": 64, "hidden_layers": 2}, "threads": a.threads,
           **harness.environment("torch", "platform", "load_average"), "trees": trees, "results": best,
           "hutchinson_probes_vmap_vs_loop": vmap_vs_loop(threads=a.threads)}
    harness.emit(doc, a.out)


if __name__ == "__main__":
    main()
