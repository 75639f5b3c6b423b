#!/usr/bin/env python
"""Give every peer its best settings: a small sweep of SJC, SDS and SDI on SIRENs at CFG 3 (issue 10).

Each setting samples ``--n`` SIRENs (16x16, width 64, 2 hidden layers: notebook 03's) of digit ``--label``
from the shipped digits model at CFG 3 and scores them by KID (shipped digits features) against 64 of the
model's own 50-step DDIM samples. Settings are grouped by their budget of prior evaluations per sample
(SDI's inversion included; ``result.nfe`` counts network passes, twice that under CFG). The best setting per method at
the study's budget ``--nfe`` goes into notebook 03; the larger budgets show what more steps buy.

Usage::

    python -m benchmarks.sweep_peers_siren --out benchmarks/results/peers_sweep_siren.json
"""
from __future__ import annotations

import itertools
import json
import sys
import time

import torch

import diffrep_lite as dl
from diffrep_lite import metrics
from diffrep_lite.diffreps import SirenImage

from . import harness


def grid(nfe: int, big: int) -> list[tuple[str, int, dict]]:
    """(method, kwargs) settings: learning rates x optimisers x steps for SJC/SDS; SDI's inversion steps,
    t-range, learning rate and inversion guidance (SDI's mirrored ``-s`` or plain) with its step count chosen to spend
    about ``nfe`` evaluations."""
    out = []
    lrs = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    for steps, lr, opt in itertools.product((nfe, big), lrs, ("adam", "adamax")):
        out.append(("sjc", steps, dict(steps=steps, lr=lr, optimizer=opt)))
    for steps, lr, tr in itertools.product((nfe, big), lrs, ((0.02, 0.98), (0.02, 0.6))):
        out.append(("sds", steps, dict(steps=steps, lr=lr, t_range=tr)))
    for budget, inv, lr, tr in itertools.product((nfe, big), (1, 3), lrs, ((0.2, 0.98), (0.05, 0.98))):
        # SDI spends 1 + max(1, int(inv * t)) evaluations per step (t decays linearly over t_range)
        per = 1 + sum(max(1, int(inv * (tr[1] + (tr[0] - tr[1]) * k / 99))) for k in range(100)) / 100
        out.append(("sdi", budget, dict(steps=max(2, round(budget / per)), lr=lr, t_range=tr, inversion_steps=inv)))
    # SDI's default inverts with the mirrored guidance scale (-s); plain (conditional, unguided) inversion too
    for budget, lr in itertools.product((nfe, big), (3e-4, 1e-3, 3e-3)):
        out.append(("sdi", budget, dict(steps=max(2, round(budget / 2)), lr=lr, t_range=(0.2, 0.98), inversion_steps=1,
                                        inversion_guidance_scale=None)))
    return out


def main(argv=None):
    ap = harness.parser(__doc__)
    ap.add_argument("--nfe", type=int, default=40, help="the study's NFE budget per sample")
    ap.add_argument("--big", type=int, default=200, help="a larger budget, for context")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--label", type=int, default=3)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["sjc", "sds", "sdi"])
    ap.add_argument("--resume", default=None, help="a JSON written by an earlier run: its rows are kept, not re-run")
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    prior = dl.priors.load_digits_prior()
    rep = SirenImage(16, 1, hidden=64, hidden_layers=2)
    feats = metrics.digits_features()
    fref = feats(dl.sample("reference", prior, None, steps=50, n=64, seed=1000, cond=a.label, guidance_scale=a.cfg,
                           progress=False).x[:, 0])
    rows = []
    if a.resume:
        with open(a.resume) as f:
            rows = json.load(f)["rows"]
    done = {json.dumps([r["method"], {k: r[k] for k in sorted(r) if k in ("steps", "lr", "optimizer", "t_range",
                                                                           "inversion_steps", "inversion_guidance_scale")}]) for r in rows}
    for m, budget, kw in grid(a.nfe, a.big):
        key = json.dumps([m, {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(kw.items())}])
        if m not in a.methods or key in done:
            continue
        t0 = time.perf_counter()
        out = dl.sample(m, prior, rep, n=a.n, seed=a.seed, cond=a.label, guidance_scale=a.cfg, progress=False, **kw)
        x = out.x[:, 0]
        ok = bool(torch.isfinite(x).all())
        row = dict(method=m, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}, nfe=out.nfe,
                   budget=budget,
                   kid=metrics.kid(feats(x), fref, features=None) if ok else float("inf"),
                   diversity=metrics.diversity(x) if ok else 0.0, seconds=round(time.perf_counter() - t0, 2))
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    best = {}
    for m in a.methods:
        for b in (a.nfe, a.big):
            cand = [r for r in rows if r["method"] == m and r["budget"] == b]
            if cand:
                best[f"{m}@{b}"] = min(cand, key=lambda r: r["kid"])
    res = dict(benchmark="sweep_peers_siren", cfg=a.cfg, label=a.label, n=a.n, seed=a.seed, nfe=a.nfe, big=a.big,
               siren="SirenImage(16, 1, hidden=64, hidden_layers=2)", kid_target="64 reference DDIM-50 samples",
               best=best, rows=rows)
    harness.emit(res, a.out)


if __name__ == "__main__":
    main()
