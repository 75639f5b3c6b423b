#!/usr/bin/env python
r"""DDR vs SJC vs SDS NeRFs from the shipped view-conditioned model (``objects16``): 3-D consistency at equal NFE.

Setting: the voxel NeRF of ``diffrep_lite.consistency.object_nerf`` (12^3 grid, raw RGB, the data's background)
renders 16x16 views from the azimuth bins ``--bins`` (default 0, 1, 2, 4, 5, 6; bins 3 and 7 are held out);
each view is conditioned on its own bin, with classifier-free guidance ``--cfg``. Every method gets the same
number of prior evaluations per view (NFE = ``--steps`` x ``--repaint``):

* ``ddr``: DDR with RePaint (``--steps`` levels x U = ``--repaint``, jump_eta ``--jump-eta`` (default 1),
  jump ``--jump``, ``eta`` = ``--step-eta``; CG pull-back) and ``view_noise="shared"``: the views' noises share
  their per-channel mean (``VoxelNeRF.shared_noise``);
* ``ddr_stochastic``: ``ddr`` with ``eta = 1`` (fresh noise in every level's step, DDPM-like);
* ``ddr_fits``: ``ddr`` with 3 Gauss-Newton fits of 4 CG iterations per level (the SIREN study's best) instead of
  ``--fit-iters`` fits (default 1) of ``--solver-iters`` (no extra prior evaluations);
* ``ddr_independent``: the same with independent noise per view (the paper's setting);
* ``ddr_no_repaint``: DDR (shared noise) with U = 1 and ``steps x U`` levels;
* ``sjc`` (PAAS, Adamax, annealed sigmas) and ``sds`` (Adam, t in [0.02, 0.98]) with ``steps x U`` optimiser
  steps, at the (learning rate, guidance scale) picked by ``--sweep`` (the lowest mean per-azimuth KID over all 8 bins, on
  ``--sweep-n`` samples of another seed). ``--sweep`` also tries DDR's (levels, U, jump) at the same NFE
  (``DDR_SWEEP``) and keeps the lowest Janus rate (ties: lowest mean KID).

Scores (``diffrep_lite.consistency.evaluate_scenes``; shipped azimuth classifier ``objects_features``): every
sample is rendered from all 8 bins; **Janus rate** = share of samples with some render predicted >= 2 bins from
its camera's bin (over all bins, over the sampled bins, over the held-out bins), split into **two-faced** (a face at
a back-side camera), **faceless** (the back at a face-side camera) and consistent samples from every render's
predicted bin (``consistency.face_sides``, stored per sample as ``predicted``); **per-azimuth KID** of the renders
against 256 held-out objects at that bin (classifier features); **colour spread** (how much a sample's views
disagree on the body colour, ``consistency.colour_spread``; data objects: about 0.12); **colour diversity** (how much
the samples differ in body colour, ``consistency.colour_diversity``; data objects: about 1). Writes ``--out`` (JSON) and, with ``--png``, a
figure of every method's samples from all 8 bins.

Usage (``benchmarks/results/objects_nerf_methods.json``; about 35 min on one core)::

    python -m benchmarks.objects_nerf_methods --sweep --threads 1 --png objects_nerf_methods.png

DDR's RePaint jump eta on the learned prior (``benchmarks/results/objects_nerf_methods_cfg0.25_jump_eta.json``; the
setting of ``objects_nerf_methods_cfg0.25.json``, whose DDR row seed 0 at jump eta 1 reproduces sample for sample;
48 samples per eta from seeds 0, 1, 2; about 20 min on one loaded core)::

    python -m benchmarks.objects_nerf_methods --n 16 --seeds 0 1 2 --cfg 0.25 --steps 9 --repaint 4 \
        --solver-iters 8 --methods ddr --jump-eta 0 0.5 1 --threads 1 \
        --out benchmarks/results/objects_nerf_methods_cfg0.25_jump_eta.json
"""
from __future__ import annotations

import json
import time

import torch

from diffrep_lite.consistency import face_sides
from diffrep_lite.samplers.sdi import steps_for_nfe
from diffrep_lite.stats import fisher_exact, wilson_interval

from . import harness

#: (learning rate, guidance scale) pairs tried for SJC and SDS: score distillation is usually run at a high CFG
#: (DreamFusion: 100), so the sweep gives the peers the guidance scale that suits them, not DDR's.
SWEEP = {m: [(lr, cfg) for cfg in (3.0, 10.0, 30.0) for lr in (0.1, 0.3, 1.0)] for m in ("sjc", "sds")}
#: DDR's RePaint settings tried at the same NFE (levels x U = 36): (levels, U, jump). A jump of j levels
#: re-noises further up before each repeat, so the views can reorganise coarse structure (RePaint's own default
#: is j = 10).
DDR_SWEEP = [(18, 2, 1), (12, 3, 1), (9, 4, 1), (6, 6, 1), (9, 4, 3), (12, 3, 4), (6, 6, 3), (6, 6, 6)]
DEFAULT = {"sjc": dict(lr=0.05, cfg=None), "sds": dict(lr=0.05, cfg=None), "sdi": dict(lr=0.05, cfg=None)}
#: SDI's DDIM inversion steps at t = 1 here: few, so that SDI gets more than a handful of steps at DDR's budget.
SDI_INVERSION_STEPS = 2  # cfg None: --cfg


def run(method, prior, nerf, *, n, seed, steps, repaint, cfg, lr=None, solver_iters=8, fit_iters=1, jump=1,
        step_eta=0.0, jump_eta=1.0):
    import diffrep_lite as dl

    budget = steps * repaint
    repaint_kw = dict(steps=steps, repaint_iters=repaint, jump=jump, jump_eta=jump_eta, solver_iters=solver_iters,
                      fit_iters=fit_iters, eta=step_eta)
    if method == "ddr":
        kw = dict(repaint_kw, view_noise="shared")
    elif method == "ddr_stochastic":
        kw = dict(repaint_kw, view_noise="shared", eta=1.0)
    elif method == "ddr_fits":
        kw = dict(repaint_kw, view_noise="shared", fit_iters=3, solver_iters=4)
    elif method == "ddr_independent":
        kw = repaint_kw
    elif method == "ddr_no_repaint":
        kw = dict(steps=budget, solver_iters=solver_iters, fit_iters=fit_iters, view_noise="shared", eta=step_eta)
    elif method == "sdi":  # as many SDI steps as fit the budget, its DDIM inversions (2 steps at t = 1) included
        kw = dict(steps=steps_for_nfe(budget, inversion_steps=SDI_INVERSION_STEPS), lr=lr,
                  inversion_steps=SDI_INVERSION_STEPS)
    else:
        kw = dict(steps=budget, lr=lr)
    t0 = time.perf_counter()
    out = dl.sample("ddr" if method.startswith("ddr") else method, prior, nerf, n=n, seed=seed, guidance_scale=cfg,
                    progress=False, **kw)
    return out, time.perf_counter() - t0, kw


def show(tag, row: dict):
    """Print one result row as JSON, floats rounded."""
    print(tag, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


def summary(ev):
    keep = ("janus_rate", "janus_rate_sampled", "janus_rate_heldout", "view_accuracy", "kid_sampled", "kid_heldout",
            "kid_pooled", "colour_spread", "colour_diversity")
    d = {k: ev[k] for k in keep if k in ev}
    d["kid_per_bin"] = ev["kid_per_bin"]
    d["kid_mean"] = sum(ev["kid_per_bin"]) / len(ev["kid_per_bin"])
    d["janus"] = ev["janus"].int().tolist()
    d["janus_wilson95"] = list(wilson_interval(sum(d["janus"]), len(d["janus"])))
    d["predicted"] = ev["predicted"].tolist()  # [n, 8] the classifier's bin for each sample's render at each bin
    d["rotation"] = ev["rotation"].tolist()
    sides = face_sides(ev["predicted"] - ev["rotation"][:, None])  # turned back by janus's offset (camera-blind)
    d.update({k: int(v.sum()) for k, v in sides.items()})  # two_faced, faceless, consistent: sample counts
    return d


def figure(renders: dict, path, per_method=4, sampled=(0, 1, 2, 4, 5, 6), title=None):
    """``per_method`` samples of every method, each seen from all 8 bins: one row a sample, 0.6 in per image."""
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
    nb = renders[names[0]].shape[1]
    fig, ax = plt.subplots(figsize=(nb * 0.6 + 1.8, len(names) * per_method * 0.6 + 1.2), layout="constrained")
    ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    for i in range(1, len(names)):
        ax.axhline(i * per_method * H - 0.5, color="white", lw=2)
    ax.set_yticks([(i * per_method + per_method / 2) * H for i in range(len(names))])
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xticks([(b + 0.5) * H for b in range(nb)])
    ax.set_xticklabels([f"{45 * b}°" + ("" if b in sampled else "\n(held out)") for b in range(nb)], fontsize=7)
    ax.set_title(title or "each row: one NeRF sample seen from all 8 azimuths", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = harness.parser(__doc__, out="benchmarks/results/objects_nerf_methods.json", threads=1)
    ap.add_argument("--n", type=int, default=48, help="samples per method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=9,
                    help="DDR levels (NFE per view = steps x repaint = 36; --sweep may change the split, not the product)")
    ap.add_argument("--repaint", type=int, default=4)
    ap.add_argument("--jump", type=int, default=1, help="DDR's RePaint jump length (levels)")
    ap.add_argument("--jump-eta", type=float, nargs="+", default=[1.0],
                    help="DDR's RePaint jump noise (jump_eta: 0 reuses the tracked noise, 1 DDPM's forward process). "
                         "Default 1, the setting of every stored run, so they reproduce (the library's default is "
                         "0.5). Several values: every DDR method with RePaint runs at each, its row named "
                         "<method>_jump_eta<value>, with Fisher p between them")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="run every method at each of these seeds (--n samples each, in this order) and score the "
                         "samples pooled (default: --seed alone)")
    ap.add_argument("--step-eta", type=float, default=0.0,
                    help="DDR's eta (DDIM's eta for every level's step; 0: the deterministic flow)")
    ap.add_argument("--solver-iters", type=int, default=8, help="DDR's CG iterations per pull-back")
    ap.add_argument("--fit-iters", type=int, default=1,
                    help="DDR's Gauss-Newton fits per level (each one pull-back; no extra prior evaluations)")
    ap.add_argument("--cfg", type=float, default=3.0,
                    help="guidance scale on the azimuth label (DDR, and the peers unless swept or --peer-cfg); below 1 "
                         "it weakens what the prior knows of the camera (0: unconditional)")
    ap.add_argument("--bins", type=int, nargs="+", default=[0, 1, 2, 4, 5, 6], help="azimuth bins the NeRF is sampled on")
    ap.add_argument("--grid", type=int, default=12)
    ap.add_argument("--methods", nargs="+",
                    default=["ddr", "ddr_stochastic", "ddr_fits", "ddr_independent", "ddr_no_repaint", "sjc", "sds"],
                    help="methods to run; also 'sdi' (SDS's learning rate, 2 inversion steps, steps at the same NFE)")
    ap.add_argument("--sweep", action="store_true", help="pick SJC's and SDS's learning rates by a sweep first")
    ap.add_argument("--sweep-n", type=int, default=16)
    ap.add_argument("--sweep-seed", type=int, default=100)
    ap.add_argument("--lr", type=float, nargs=2, default=None, metavar=("SJC", "SDS"),
                    help="fixed SJC / SDS learning rates (skips their sweep; --sweep then tries DDR's settings only)")
    ap.add_argument("--peer-cfg", type=float, nargs=2, default=None, metavar=("SJC", "SDS"),
                    help="fixed SJC / SDS guidance scales (default --cfg; with --sweep and no --lr: swept)")
    ap.add_argument("--conditioning", choices=["bin", "null"], default="bin",
                    help="bin: each view conditioned on its own azimuth bin (with --cfg); null: every view gets the "
                         "null label, so the prior knows nothing of the cameras (no guidance; Janus scored up to a "
                         "turn of the object, peers' sweep over the learning rate only, picked by pooled KID)")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped objects16)")
    ap.add_argument("--png", default=None)
    ap.add_argument("--renders", default=None, help="also save every method's renders [n, 8, 3, H, W] here (torch.save)")
    ap.add_argument("--title", default=None, help="title of the --png figure")
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    import diffrep_lite as dl
    from diffrep_lite.consistency import azimuth_features, evaluate_scenes, object_nerf
    from diffrep_lite.data import toy_objects

    prior = dl.priors.load_objects_prior(path=a.model)
    null = a.conditioning == "null"
    if null:  # the prior is told nothing of the cameras: every view gets the null label, no guidance
        nerf = object_nerf(a.bins, grid=a.grid, view_conds=[prior.null_label] * len(a.bins))
        a.cfg = None
    else:
        nerf = object_nerf(a.bins, grid=a.grid)

    def evaluate(params):
        return evaluate_scenes(nerf, params, held, features=fe, sampled_bins=a.bins, up_to_rotation=null)
    held = toy_objects(256, 0, start=10**6)
    fe = azimuth_features()
    best = {m: dict(v) for m, v in DEFAULT.items()}
    if a.lr is not None:
        best["sjc"]["lr"], best["sds"]["lr"] = a.lr
        best["sdi"]["lr"] = a.lr[1]  # SDI is SDS with inverted noise: SDS's learning rate
    if a.peer_cfg is not None:
        best["sjc"]["cfg"], best["sds"]["cfg"] = a.peer_cfg
    sweep = {}
    if a.sweep:
        for m, grid in SWEEP.items():
            if m not in a.methods or a.lr is not None:
                continue
            sweep[m] = []
            for lr, cfg in (sorted({(lr, None) for lr, _ in grid}) if null else grid):
                out, dt, _ = run(m, prior, nerf, n=a.sweep_n, seed=a.sweep_seed, steps=a.steps, repaint=a.repaint,
                                 cfg=cfg, lr=lr)
                s = summary(evaluate(out.params))
                sweep[m].append(dict(lr=lr, cfg=cfg, seconds=round(dt, 1), kid_mean=s["kid_mean"],
                                     kid_pooled=s["kid_pooled"], janus_rate=s["janus_rate"]))
                show(m, sweep[m][-1])
            pick = min(sweep[m], key=lambda r: r["kid_pooled" if null else "kid_mean"])
            best[m] = dict(lr=pick["lr"], cfg=pick["cfg"])
        if "ddr" in a.methods:
            sweep["ddr"] = []
            for steps, U, jump in DDR_SWEEP:
                if steps * U != a.steps * a.repaint:
                    continue
                out, dt, _ = run("ddr", prior, nerf, n=a.sweep_n, seed=a.sweep_seed, steps=steps, repaint=U, cfg=a.cfg,
                                 solver_iters=a.solver_iters, fit_iters=a.fit_iters, jump=jump, step_eta=a.step_eta,
                                 jump_eta=a.jump_eta[0])
                s = summary(evaluate(out.params))
                sweep["ddr"].append(dict(steps=steps, repaint=U, jump=jump, seconds=round(dt, 1),
                                         kid_mean=s["kid_mean"], janus_rate=s["janus_rate"]))
                show(f"ddr {steps} x {U} jump {jump}", sweep["ddr"][-1])
            if sweep["ddr"]:
                pick = min(sweep["ddr"], key=lambda r: (r["janus_rate"], r["kid_mean"]))
                a.steps, a.repaint, a.jump = pick["steps"], pick["repaint"], pick["jump"]
    results, renders = {}, {}
    seeds = a.seeds or [a.seed]
    for m in a.methods:
        peer = best.get(m, {})
        cfg = a.cfg if peer.get("cfg") is None else peer["cfg"]
        with_jump = m.startswith("ddr") and m != "ddr_no_repaint"  # the jump's noise matters with RePaint only
        for jump_eta in a.jump_eta if with_jump else a.jump_eta[:1]:
            row = f"{m}_jump_eta{jump_eta:g}" if with_jump and len(a.jump_eta) > 1 else m
            params, seconds = [], 0.0
            for seed in seeds:
                out, dt, kw = run(m, prior, nerf, n=a.n, seed=seed, steps=a.steps, repaint=a.repaint, cfg=cfg,
                                  lr=peer.get("lr"), solver_iters=a.solver_iters, fit_iters=a.fit_iters,
                                  jump=a.jump, step_eta=a.step_eta, jump_eta=jump_eta)
                params.append(out.params)
                seconds += dt
            kw["guidance_scale"] = cfg
            ev = evaluate({k: torch.cat([p[k] for p in params]) for k in params[0]})
            renders[row] = ev["renders"]
            results[row] = dict(nfe_per_view=out.nfe, seconds=round(seconds, 1), options=kw, **summary(ev))
            show(row, {k: v for k, v in results[row].items()
                       if k not in ("kid_per_bin", "janus", "options", "predicted", "rotation")})
    fisher = {}
    if len(a.jump_eta) > 1:  # the Janus counts of each DDR method's jump etas, pair by pair
        for m in a.methods:
            rows = [(e, results.get(f"{m}_jump_eta{e:g}")) for e in a.jump_eta]
            for i, (e1, r1) in enumerate(rows):
                for e2, r2 in rows[i + 1:]:
                    if r1 is not None and r2 is not None:
                        fisher[f"{m} jump_eta {e1:g} vs {e2:g}"] = fisher_exact(
                            sum(r1["janus"]), len(r1["janus"]), sum(r2["janus"]), len(r2["janus"]))
    from diffrep_lite.consistency import colour_diversity, colour_spread

    ref = toy_objects(a.n, 0, start=10**6 + 1000)  # data objects as if they were samples: the floor of each figure
    data_floor = dict(kid_per_bin=[dl.metrics.kid(ref[:, b], held[:, b], features=fe) for b in range(held.shape[1])],
                      colour_spread=float(colour_spread(ref).mean()), colour_diversity=colour_diversity(ref[:, a.bins]))
    doc = dict(model=a.model or "objects16 (shipped)", conditioning=a.conditioning, n=a.n, seed=a.seed, cfg=a.cfg,
               seeds=seeds, n_scored=a.n * len(seeds), jump_eta=a.jump_eta, jump_eta_fisher_p=fisher,
               sampled_bins=a.bins, janus_up_to_rotation=null,
               grid=a.grid, steps=a.steps, repaint=a.repaint, jump=a.jump, step_eta=a.step_eta,
               solver_iters=a.solver_iters, fit_iters=a.fit_iters,
               peers={m: dict(lr=v["lr"], cfg=a.cfg if v["cfg"] is None else v["cfg"]) for m, v in best.items()}, sweep=sweep,
               sweep_note=(f"on n={a.sweep_n} samples of seed {a.sweep_seed}: SJC/SDS (learning rate, CFG) with the lowest mean "
                           "per-azimuth KID; DDR (levels, U, jump) at the same NFE with the lowest Janus rate (ties: KID)")
               if sweep else "no sweep",
               data_floor=data_floor,
               features="objects_features (AzimuthNet penultimate layer, trained on data renders)",
               heldout="toy_objects(256, 0, start=10**6)", results=results,
               **harness.environment("torch", "platform", "threads"))
    harness.emit(doc, a.out, echo=False)
    if a.renders:
        torch.save(renders, a.renders)
    if a.png:
        figure(renders, a.png, sampled=a.bins, title=a.title)


if __name__ == "__main__":
    main()
