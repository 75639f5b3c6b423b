#!/usr/bin/env python
"""DDR vs SJC vs SDS NeRFs from the shipped view-conditioned model (``objects16``): 3-D consistency at equal NFE.

Setting: the voxel NeRF of ``diffrep_lite.consistency.object_nerf`` (16^3 grid, raw RGB, the data's background)
renders 16x16 views from the azimuth bins ``--bins`` (default the even bins 0, 2, 4, 6: 90 degrees apart);
each view is conditioned on its own bin, with classifier-free guidance ``--cfg``. Every method gets the same
number of prior evaluations per view (NFE = ``--steps`` x ``--repaint``):

* ``ddr``: DDR with RePaint (``--steps`` levels x U = ``--repaint``, eta 1, jump 1; CG pull-back);
* ``ddr_no_repaint``: DDR with U = 1 and ``steps x U`` levels;
* ``sjc`` (PAAS, Adamax, annealed sigmas) and ``sds`` (Adam, t in [0.02, 0.98]) with ``steps x U`` optimiser
  steps, at the learning rate picked by ``--sweep`` (the lowest mean per-azimuth KID over all 8 bins, on
  ``--sweep-n`` samples of another seed).

Scores (``diffrep_lite.consistency.evaluate_scenes``; shipped azimuth classifier ``objects_features``): every
sample is rendered from all 8 bins; **Janus rate** = share of samples with some render predicted >= 2 bins from
its camera's bin (over all bins, over the sampled bins, over the held-out bins); **per-azimuth KID** of the renders
against 256 held-out objects at that bin (classifier features). Writes ``--out`` (JSON) and, with ``--png``, a
figure of every method's samples from all 8 bins.

Usage::

    PYTHONPATH=. python benchmarks/objects_nerf_methods.py --n 16 --sweep --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SWEEP = {"sjc": [0.01, 0.03, 0.1, 0.3], "sds": [0.01, 0.03, 0.1, 0.3]}
DEFAULT_LR = {"sjc": 0.05, "sds": 0.05}


def run(method, prior, nerf, *, n, seed, steps, repaint, cfg, lr=None, solver_iters=10):
    import diffrep_lite as dl

    budget = steps * repaint
    if method == "ddr":
        kw = dict(steps=steps, repaint_iters=repaint, eta=1.0, solver_iters=solver_iters)
    elif method == "ddr_no_repaint":
        kw = dict(steps=budget, solver_iters=solver_iters)
    else:
        kw = dict(steps=budget, lr=lr)
    t0 = time.perf_counter()
    out = dl.sample("ddr" if method.startswith("ddr") else method, prior, nerf, n=n, seed=seed, guidance_scale=cfg,
                    progress=False, **kw)
    return out, time.perf_counter() - t0, kw


def summary(ev):
    keep = ("janus_rate", "janus_rate_sampled", "janus_rate_heldout", "view_accuracy", "kid_sampled", "kid_heldout")
    d = {k: ev[k] for k in keep if k in ev}
    d["kid_per_bin"] = ev["kid_per_bin"]
    d["kid_mean"] = sum(ev["kid_per_bin"]) / len(ev["kid_per_bin"])
    d["janus"] = ev["janus"].int().tolist()
    return d


def figure(renders: dict, path, per_method=4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(renders)
    rows = []
    for m in names:
        x = ((renders[m][:per_method] + 1) / 2).clamp(0, 1)  # [k, 8, 3, H, W]
        rows.append(torch.cat([torch.cat(list(s), -1) for s in x], -2))  # [3, k H, 8 W]
    img = torch.cat(rows, -2)
    H = renders[names[0]].shape[-2]
    fig, ax = plt.subplots(figsize=(8 * 0.6, len(names) * per_method * 0.6 + 0.6))
    ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([(i * per_method + per_method / 2) * H for i in range(len(names))])
    ax.set_yticklabels(names)
    ax.set_xticks([(b + 0.5) * H for b in range(8)])
    ax.set_xticklabels([f"{45 * b}" for b in range(8)], fontsize=7)
    ax.set_xlabel("azimuth (deg); columns 0, 90, 180, 270 were sampled, the others are held out")
    ax.set_title("each row: one NeRF sample seen from all 8 bins", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="samples per method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20, help="DDR levels (NFE per view = steps x repaint)")
    ap.add_argument("--repaint", type=int, default=3)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--bins", type=int, nargs="+", default=[0, 2, 4, 6], help="azimuth bins the NeRF is sampled on")
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--methods", nargs="+", default=["ddr", "ddr_no_repaint", "sjc", "sds"])
    ap.add_argument("--sweep", action="store_true", help="pick SJC's and SDS's learning rates by a sweep first")
    ap.add_argument("--sweep-n", type=int, default=8)
    ap.add_argument("--sweep-seed", type=int, default=100)
    ap.add_argument("--lr", type=float, nargs=2, default=None, metavar=("SJC", "SDS"), help="skip the sweep")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped objects16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/objects_nerf_methods.json")
    ap.add_argument("--png", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import diffrep_lite as dl
    from diffrep_lite.consistency import azimuth_features, evaluate_scenes, object_nerf
    from diffrep_lite.data import toy_objects

    prior = dl.priors.load_objects_prior(path=a.model)
    nerf = object_nerf(a.bins, grid=a.grid)
    held = toy_objects(256, 0, start=10**6)
    fe = azimuth_features()
    lrs = dict(DEFAULT_LR) if a.lr is None else {"sjc": a.lr[0], "sds": a.lr[1]}
    sweep = {}
    if a.sweep and a.lr is None:
        for m, grid in SWEEP.items():
            if m not in a.methods:
                continue
            sweep[m] = []
            for lr in grid:
                out, dt, _ = run(m, prior, nerf, n=a.sweep_n, seed=a.sweep_seed, steps=a.steps, repaint=a.repaint,
                                 cfg=a.cfg, lr=lr)
                s = summary(evaluate_scenes(nerf, out.params, held, features=fe))
                sweep[m].append(dict(lr=lr, seconds=round(dt, 1), kid_mean=s["kid_mean"], janus_rate=s["janus_rate"]))
                print(m, "lr", lr, json.dumps({k: round(v, 4) for k, v in sweep[m][-1].items()}), flush=True)
            lrs[m] = min(sweep[m], key=lambda r: r["kid_mean"])["lr"]
    results, renders = {}, {}
    for m in a.methods:
        out, dt, kw = run(m, prior, nerf, n=a.n, seed=a.seed, steps=a.steps, repaint=a.repaint, cfg=a.cfg,
                          lr=lrs.get(m))
        ev = evaluate_scenes(nerf, out.params, held, features=fe)
        renders[m] = ev["renders"]
        results[m] = dict(nfe_per_view=out.nfe, seconds=round(dt, 1), options=kw, **summary(ev))
        print(m, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in results[m].items()
                             if k not in ("kid_per_bin", "janus", "options")}), flush=True)
    data_floor = [dl.metrics.kid(toy_objects(64, 0, start=10**6 + 1000)[:, b], held[:, b], features=fe)
                  for b in range(held.shape[1])]
    doc = dict(model=a.model or "objects16 (shipped)", n=a.n, seed=a.seed, cfg=a.cfg, sampled_bins=a.bins,
               grid=a.grid, steps=a.steps, repaint=a.repaint, lrs=lrs, sweep=sweep,
               sweep_note=f"learning rates chosen by the lowest mean per-azimuth KID on n={a.sweep_n}, "
                          f"seed {a.sweep_seed}" if sweep else "fixed learning rates",
               kid_data_floor_per_bin=data_floor,
               features="objects_features (AzimuthNet penultimate layer, trained on data renders)",
               heldout="toy_objects(256, 0, start=10**6)", results=results, torch=torch.__version__,
               platform=platform.platform(), threads=torch.get_num_threads())
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    if a.png:
        figure(renders, a.png)


if __name__ == "__main__":
    main()
