#!/usr/bin/env python
"""Seconds per sampler step and peak memory of every method on the shipped digits model, SIREN images.

Each (method, resolution) runs in a fresh subprocess so that its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own; ``rss_after_load_mib`` is the resident
memory after imports and model loading, so ``peak - after_load`` is what sampling added.
Prints one JSON document. The shipped UNet was trained at 16x16; at 32x32 it still runs (it is
convolutional), which is what the timing needs.

Usage::

    python -m benchmarks.bench_siren_methods [--resolutions 16 32] [--n 8] [--steps 10]
"""
from __future__ import annotations

import argparse
import time

from . import harness

SIREN = dict(hidden=64, hidden_layers=2)
METHOD_KW = {"ddr": dict(solver="cg", solver_iters=8, fit_iters=3), "sjc": {}, "sds": {}, "sdi": {}, "reference": {}}


def one(method: str, res: int, n: int, steps: int, guidance: float) -> dict:
    import torch

    import diffrep_lite as dl
    from diffrep_lite.diffreps import SirenImage

    prior = dl.priors.load_digits_prior(resolution=res)
    rep = SirenImage(res, 1, **SIREN)
    rss_load = harness.peak_rss_mb()
    kw = dict(steps=steps, n=n, seed=0, cond=3, guidance_scale=guidance, progress=False, **METHOD_KW.get(method, {}))
    dl.sample(method, prior, rep, **{**kw, "steps": 1})  # warm-up
    t0 = time.perf_counter()
    out = dl.sample(method, prior, rep, **kw)
    dt = time.perf_counter() - t0
    assert torch.isfinite(out.x).all()
    return dict(method=method, resolution=res, n=n, steps=steps, guidance_scale=guidance,
                seconds_total=round(dt, 4), seconds_per_step=round(dt / steps, 5),
                seconds_per_step_per_sample=round(dt / steps / n, 6), nfe_per_sample=out.nfe,
                rss_after_load_mib=round(rss_load, 1),
                peak_rss_mib=round(harness.peak_rss_mb(), 1),
                method_options=METHOD_KW.get(method, {}))


def main(argv=None):
    ap = harness.parser(__doc__)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--methods", nargs="+", default=None, help="default: every method in diffrep_lite.METHODS")
    ap.add_argument("--n", type=int, default=8, help="samples per batched call")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "RES"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    if a.one:
        harness.emit(one(a.one[0], int(a.one[1]), a.n, a.steps, a.guidance), indent=None)
        return
    import diffrep_lite as dl

    methods = a.methods or list(dl.METHODS)
    rows = []
    for res in a.resolutions:
        for m in methods:
            r = harness.run_module("bench_siren_methods", "--one", m, res, "--n", a.n, "--steps", a.steps,
                                   "--guidance", a.guidance, env={"HF_HUB_OFFLINE": "1"}, check=False)
            rows.append(dict(method=m, resolution=res, error=r["error"].strip().splitlines()[-1:]) if "error" in r
                        else r)
    harness.emit(dict(benchmark="siren_methods", model="shipped digits16 (UNet2DModel, 1.1 M params)", siren=SIREN,
                      **harness.environment("torch", "threads", "cpu_count", "platform", "load_average"),
                      results=rows), a.out)


if __name__ == "__main__":
    main()
