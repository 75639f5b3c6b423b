#!/usr/bin/env python
"""3-D sampling as a distribution: how often DDR, SJC, SDS and SDI return each scene of an exact scene mixture.

The prior (:class:`~diffrep_lite.priors.SceneMixture`, exact) is, for every training camera ``v``, the Gaussian
mixture ``sum_k w_k N(render_v(scene_k), s^2 I)``. A correct 3-D sampler returns scene ``k`` with probability
``w_k`` and never a blend. Two toys:

* ``three``: three random blob scenes (:func:`~diffrep_lite.priors.blob_scenes`), weights 0.5 / 0.3 / 0.2;
* ``turned``: one scene and the same scene turned 180 degrees about the vertical axis
  (:func:`~diffrep_lite.priors.turn_scene`), weights 0.5 / 0.5: front-back ambiguity, the right answer is each
  orientation half the time and never a two-faced blend.

Every sample is assigned to its nearest true scene by mean PSNR over held-out cameras (never used while
sampling; :func:`~diffrep_lite.priors.nearest_scene`); a sample below ``BLEND_PSNR`` = 20 dB to every scene is
a **blend**. Reported per method (:func:`diffrep_lite.stats.mode_histogram`): counts, fractions with 95 % Wilson
intervals, Pearson chi-square p of the assigned counts against the weights, the blend share, and the median
held-out PSNR of the non-blends. For reference also the chi-square p against the *product* of the ``V`` views'
priors restricted to one scene (weights ``w_k^V``, normalised), and the exponent ``a`` of the tempered weights
``w_k^a`` that fit the histogram best (maximum likelihood; ``a = 1``: the weights, ``a = V``: the product).

Methods at equal prior evaluations per view (NFE = ``--steps`` x ``--repaint``): DDR (RePaint, independent
noise per view, the library's per-view default), SJC and SDS (notebook 05's learning rate 0.05), SDI (its
steps chosen so that its NFE, inversion included, is at most DDR's). ``--wallclock`` adds SJC / SDS / SDI
runs given as many steps as fit in DDR's wall-clock time, measured by an interleaved timing pass on the same
machine just before (``time_methods``; stored under ``timing``), up to the schedule's 1000 training ticks.
``--grid`` runs DDR's settings on the ``three`` toy: independent vs shared noise (``view_noise``) x RePaint jump eta in {0, 0.5, 1}, U in {1, 3, 6} at the same
NFE, and twice the budget.

The stored results (CPU time under load; DDR with 24 cameras is about 3 s per sample)::

    B=benchmarks.scene_mixture_distribution; R=benchmarks/results
    python -m $B --n 128 --out $R/scene_mixture_distribution.json
    python -m $B --cameras 24 --toys three --n 128 --out $R/scene_mixture_distribution_24cams.json
    python -m $B --cameras 24 --toys turned --n 128 --out $R/scene_mixture_distribution_24cams_turned.json
    python -m $B --cameras 24 --toys --grid --grid-n 24 --grid-etas 0 0.5 1 --grid-noise independent \
        --out $R/scene_mixture_jump_eta_24cams.json
    python -m $B --cameras 24 --toys --grid --grid-n 24 --grid-etas 1 --grid-noise shared \
        --out $R/scene_mixture_shared_noise_24cams.json
    python -m $B --cameras 24 --toys --grid --grid-n 64 --grid-etas 0 --grid-noise independent --seed 10 \
        --out $R/scene_mixture_jump_eta0_24cams_n64.json        # likewise 0.5 and 1 (..._eta05_..., ..._eta1_...)
    python -m $B --toys three --methods SJC SDS SDI --wallclock \
        --out $R/scene_mixture_wallclock_three.json                # likewise --toys turned (..._turned.json)
    python -m $B --png book/figures/scene_mixture_distribution.png \
        --figure-from $R/scene_mixture_distribution.json $R/scene_mixture_distribution_24cams.json \
        $R/scene_mixture_distribution_24cams_turned.json

(``scene_mixture_jump_eta_8cams.json``: an 8-camera ``--grid --grid-n 32`` run stopped after eta 0 and 0.5.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch


#: The name of DDR's RePaint-jump stochasticity keyword (one place, so a rename of the keyword changes one line).
JUMP_KEY = "jump_eta"
#: DDR's defaults here (notebook 05's toy settings): levels, RePaint U, CG iterations, jump eta.
DDR = dict(steps=20, repaint_iters=3, solver_iters=10)
JUMP_ETA = 1.0
PEER_LR = 0.05
#: Training-camera rigs of :func:`~diffrep_lite.priors.distribution_toy`: 8 cameras, or notebook 05's 24.
CAMERAS = {8: dict(n_azimuths=4, elevations=(0.0, 40.0)), 24: dict(n_azimuths=6, elevations=(-30.0, 0.0, 30.0, 60.0))}


def run_method(method, prior, nerf, *, n, seed, **kw):
    import diffrep_lite as dl

    t0 = time.perf_counter()
    r = dl.sample(method, prior, nerf, n=n, seed=seed, progress=False, **kw)
    return r, time.perf_counter() - t0


def tempered_exponent(counts, weights) -> float:
    """Maximum-likelihood ``a`` of the multinomial with probabilities ``w^a / sum w^a`` (``a`` in [0, 50])."""
    from scipy.optimize import minimize_scalar

    c, lw = np.asarray(counts, float), np.log(np.asarray(weights, float))
    if c.sum() == 0 or np.allclose(lw, lw[0]):
        return math.nan

    def nll(a):
        z = a * lw
        return -(c * (z - np.logaddexp.reduce(z))).sum()

    return float(minimize_scalar(nll, bounds=(0.0, 50.0), method="bounded").x)


def score(nerf, result, scenes, weights, held, seconds) -> dict:
    from diffrep_lite.priors import nearest_scene
    from diffrep_lite.stats import mode_histogram
    from scipy.stats import chisquare

    a = nearest_scene(nerf, result.params, scenes, held)
    h = mode_histogram(a["counts"], weights, blends=a["blends"])
    V = nerf.n_views
    w = np.asarray(weights, float)
    prod = w**V / (w**V).sum()
    m = sum(a["counts"])
    h["p_product"] = float(chisquare(a["counts"], prod * m).pvalue) if m and np.all(prod * m > 0) else math.nan
    h["tempered_exponent"] = tempered_exponent(a["counts"], weights)
    good = a["best"][~a["blend"]]
    h["psnr_median"] = float(good.median()) if good.numel() else math.nan
    h["psnr_median_all"] = float(a["best"].median())
    h["nfe_per_view"] = int(result.nfe)
    h["seconds"] = round(seconds, 1)
    return h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=128, help="samples per method")
    p.add_argument("--grid-n", type=int, default=64, help="samples per DDR setting of --grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--toys", nargs="*", default=["three", "turned"], choices=["three", "turned"])
    p.add_argument("--wallclock", action="store_true",
                   help="also the peers at DDR's wall-clock time: an interleaved timing pass (--timing-reps rounds "
                        "of every method on all --n samples; DDR on 1/5 of its levels, scaled) fixes each peer's "
                        "steps, then the peers run with them")
    p.add_argument("--timing-reps", type=int, default=2, help="rounds of the --wallclock timing pass")
    p.add_argument("--grid", action="store_true", help="DDR settings on the 'three' toy")
    p.add_argument("--cameras", type=int, default=8, choices=[8, 24],
                   help="training cameras: 8 (4 azimuths x elevations 0, 40) or 24 (notebook 05's rig: 6 x -30, 0, 30, 60)")
    p.add_argument("--methods", nargs="+", default=["DDR", "SJC", "SDS", "SDI"])
    p.add_argument("--grid-etas", nargs="+", type=float, default=None,
                   help="with --grid: only these jump etas, no U / budget rows")
    p.add_argument("--grid-noise", nargs="+", default=["independent", "shared"], choices=["independent", "shared"],
                   help="with --grid: the view_noise settings tried")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "scene_mixture_distribution.json"))
    p.add_argument("--png", default=None, help="figure of the histograms (bars per method beside the weights)")
    p.add_argument("--figure-from", nargs="+", default=None, metavar="JSON",
                   help="only draw --png from these result files (one panel per toy and camera rig)")
    args = p.parse_args(argv)
    if args.figure_from:
        merged = {"toys": {}}
        for path in args.figure_from:
            with open(path) as fh:
                res = json.load(fh)
            merged["n"] = res["n"]
            for toy, t in res["toys"].items():
                V = t["views"]
                merged["toys"][f"{toy}, {V} cameras"] = t
        figure(merged, args.png)
        return
    torch.set_num_threads(args.threads)
    from diffrep_lite.priors import BLEND_PSNR, distribution_toy
    from diffrep_lite.samplers.sdi import steps_for_nfe

    cams = CAMERAS[args.cameras]
    budget = DDR["steps"] * DDR["repaint_iters"]
    out = {"n": args.n, "seed": args.seed, "blend_psnr": BLEND_PSNR, "ddr": {**DDR, JUMP_KEY: JUMP_ETA},
           "peer_lr": PEER_LR, "budget_nfe_per_view": budget, "toys": {}, "torch": torch.__version__,
           "platform": platform.platform(), "threads": args.threads, "cameras": cams}

    def save():
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)

    for toy in args.toys:
        nerf, prior, scenes, weights, held = distribution_toy(toy, **cams)
        res = {}
        out["toys"][toy] = {"weights": weights, "views": nerf.n_views, "held_out_views": len(held), "methods": res}
        n_sdi = steps_for_nfe(budget)
        runs = [("DDR", "ddr", {**DDR, JUMP_KEY: JUMP_ETA}),
                ("SJC", "sjc", dict(steps=budget, lr=PEER_LR)),
                ("SDS", "sds", dict(steps=budget, lr=PEER_LR)),
                ("SDI", "sdi", dict(steps=n_sdi, lr=PEER_LR))]
        all_runs, runs = runs, [r for r in runs if r[0] in args.methods]
        for name, method, kw in runs:
            r, sec = run_method(method, prior, nerf, n=args.n, seed=args.seed, **kw)
            res[name] = {**score(nerf, r, scenes, weights, held, sec), "options": kw}
            print(toy, name, res[name]["counts"], "blends", res[name]["blends"], "p", f"{res[name]['p']:.3g}",
                  f"{sec:.0f}s", flush=True)
            save()
        if args.wallclock:
            peers = [r for r in runs if r[0] != "DDR"] or [r for r in all_runs if r[0] != "DDR"]
            timing = out["toys"][toy]["timing"] = time_methods(prior, nerf, all_runs, args)
            cap = prior.schedule.num_train_timesteps  # the peers' step schedules run over the training ticks
            for name, method, kw in peers:
                kw2 = {**kw, "steps": min(cap, max(kw["steps"], int(kw["steps"] * timing["DDR"] / timing[name])))}
                r, sec = run_method(method, prior, nerf, n=args.n, seed=args.seed, **kw2)
                key = name + " (DDR's time)"
                res[key] = {**score(nerf, r, scenes, weights, held, sec), "options": kw2}
                print(toy, key, kw2["steps"], "steps", res[key]["counts"], "blends", res[key]["blends"],
                      f"p {res[key]['p']:.3g}", f"{sec:.0f}s", flush=True)
                save()

    if args.grid:
        nerf, prior, scenes, weights, held = distribution_toy("three", **cams)
        grid = {}
        out["ddr_grid"] = {"toy": "three", "n": args.grid_n, "seed": args.seed + 1, "settings": grid}
        settings = [(f"{noise}, eta {eta:g}, U 3", dict(DDR, view_noise=noise, **{JUMP_KEY: eta}))
                    for noise in args.grid_noise for eta in (0.0, 0.5, 1.0)]
        if args.grid_etas is not None:
            settings = [(lab, kw) for lab, kw in settings if kw[JUMP_KEY] in args.grid_etas]
        settings += [] if args.grid_etas is not None else [("independent, U 1 (60 levels)", dict(DDR, steps=60, repaint_iters=1)),
                     ("independent, eta 1, U 6 (10 levels)", dict(DDR, steps=10, repaint_iters=6, **{JUMP_KEY: 1.0})),
                     ("independent, eta 1, U 3, 2x budget (40 levels)", dict(DDR, steps=40, **{JUMP_KEY: 1.0}))]
        for label, kw in settings:
            r, sec = run_method("ddr", prior, nerf, n=args.grid_n, seed=args.seed + 1, **kw)
            grid[label] = {**score(nerf, r, scenes, weights, held, sec), "options": kw}
            print("grid", label, grid[label]["counts"], "blends", grid[label]["blends"],
                  f"p {grid[label]['p']:.3g}", f"a {grid[label]['tempered_exponent']:.2f}", f"{sec:.0f}s", flush=True)
            save()
    save()
    if args.png and out["toys"]:
        figure(out, args.png)


def time_methods(prior, nerf, runs, args) -> dict:
    """Seconds each method of ``runs`` takes for its whole budget on all ``args.n`` samples, summed over
    ``args.timing_reps`` interleaved rounds (so every method meets the same machine load).

    DDR runs 1/5 of its levels and is scaled by 5 (its cost per level is constant: ``U`` prior calls and ``U``
    fits of ``solver_iters`` CG iterations), the peers run whole. Every run has the sampling run's seed.
    """
    total = {name: 0.0 for name, _, _ in runs}
    for _ in range(args.timing_reps):
        for name, method, kw in runs:
            scale = 5 if name == "DDR" else 1
            kw1 = {**kw, "steps": kw["steps"] // scale}
            total[name] += run_method(method, prior, nerf, n=args.n, seed=args.seed, **kw1)[1] * scale
    print("timing (s, summed over rounds):", {k: round(v, 1) for k, v in total.items()}, flush=True)
    return {k: round(v, 2) for k, v in total.items()}


def figure(out: dict, path: str):
    """Bars per method beside the true weights (95 % Wilson intervals), one panel per toy; blends in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toys = out["toys"]
    cols, rows = 1, len(toys)  # one panel per row, drawn at the book column's width (700 px at 100 dpi)
    fig, axes = plt.subplots(rows, cols, figsize=(7.0, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(toys):]:
        ax.axis("off")
    for ax, (toy, t) in zip(axes.flat, toys.items()):
        names = ["weights"] + list(t["methods"])
        K = len(t["weights"])
        width = 0.8 / (K + 1)
        colours = plt.cm.tab10(np.arange(K))
        for i, name in enumerate(names):
            if name == "weights":
                vals, ci, blend = t["weights"], None, 0.0
            else:
                h = t["methods"][name]
                vals, ci, blend = h["fractions"], np.array(h["ci"]), h["blend_share"]
            for k in range(K):
                x = i + (k - K / 2) * width
                ax.bar(x, vals[k], width, color=colours[k], label=f"scene {k}" if i == 0 else None)
                if ci is not None:
                    ax.errorbar(x, vals[k], yerr=[[vals[k] - ci[k, 0]], [ci[k, 1] - vals[k]]], color="k", lw=0.8,
                                capsize=2)
            ax.bar(i + (K - K / 2) * width, blend, width, color="0.6", label="blend" if i == 0 else None)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([nm.replace(" (DDR's time)", "\n(DDR's time)") for nm in names], fontsize=9)
        ax.set_ylim(0, 1.25)
        ax.set_ylabel("share of samples")
        ax.set_title(f"{toy}: weights {' / '.join(f'{w:g}' for w in t['weights'])}, "
                     f"n = {out['n']} per method", fontsize=10)
        ax.legend(fontsize=9, loc="upper center", ncol=K + 1, frameon=False)
    plt.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
