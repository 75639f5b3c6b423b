"""Cost of DDR panoramas: NFEs, seconds and peak memory for a 4-view and a 16-view SIREN panorama.

Prints one JSON object. The prior is the exact view-conditioned mixture (so the time is the diffrep,
the pull-back solver and the bookkeeping; a network prior adds its own cost per NFE). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak RSS growth (``ru_maxrss``) on CPU.

    python -m benchmarks.bench_panorama [--device cpu] [--steps 10] [--repaint 2] [--n 2]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from diffrep_lite import sample
from diffrep_lite.diffreps import SirenPanorama
from diffrep_lite.priors import ViewConditionedMixture, random_panoramas

from . import harness


def bench(n_views: int, *, height: int, view_width: int, stride: int, steps: int, repaint: int, n: int,
          solver_iters: int, device: str, hidden: int) -> dict:
    width = stride * n_views  # a 360° ring of n_views crops
    rep = SirenPanorama(height, width, view_width, stride=stride, wrap=True, hidden=hidden, hidden_layers=2)
    assert rep.n_views == n_views
    prior = ViewConditionedMixture(random_panoramas(3, 1, height, width), [0.5, 0.3, 0.2], 0.01,
                                   view_width=view_width, wrap=True, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = harness.peak_rss_mb()
    t0 = time.perf_counter()
    out = sample("ddr", prior, rep, steps=steps, n=n, seed=0, repaint_iters=repaint, jump_eta=0.5,
                 solver="cg", solver_iters=solver_iters, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = harness.peak_rss_mb() - rss0
    sec = time.perf_counter() - t0
    return {"views": n_views, "canvas": [1, height, width], "view": [1, height, view_width], "wrap": True,
            "siren_params": rep.num_params(), "samples": n, "steps": steps, "repaint_iters": repaint,
            "nfe_per_view": out.nfe, "nfe_total_per_sample": out.nfe_total, "seconds": round(sec, 3),
            "seconds_per_nfe": round(sec / out.nfe, 4), "peak_mem_mib": round(peak, 1),
            "peak_mem_kind": "cuda_max_allocated" if device.startswith("cuda") else "cpu_rss_growth"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = harness.parser(__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repaint", type=int, default=2)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--height", type=int, default=16)
    ap.add_argument("--view-width", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--solver-iters", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--views", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    kw = dict(height=a.height, view_width=a.view_width, stride=a.stride, steps=a.steps, repaint=a.repaint,
              n=a.n, solver_iters=a.solver_iters, device=a.device, hidden=a.hidden)
    if a.one:  # one size in this process (its peak memory is its own)
        harness.emit(bench(a.views[0], **kw), indent=None)
        return
    runs = []
    for v in a.views:  # each size in a fresh subprocess
        # the same options; the appended --views (argparse keeps the last) picks this size
        runs.append(harness.run_module("bench_panorama", *argv, "--one", "--views", v))
    harness.emit({"benchmark": "panorama_ddr", "device": a.device, **harness.environment("torch", "threads", "machine"),
                  "runs": runs}, a.out)


if __name__ == "__main__":
    main()
