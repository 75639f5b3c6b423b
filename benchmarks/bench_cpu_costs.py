"""The small workloads of the practical guide's CPU cost table, timed on this machine; prints one JSON object.

* the exact mixture denoiser over the 1,797 scikit-learn digits at 32x32 (``GaussianMixture.eps``), batch 1
  and 64;
* the shipped digits DDPM (``digits16``): 50 DDIM steps (``dl.sample("reference", ...)``) for 64 samples,
  conditional without guidance and with CFG 3;
* the tiny random-weight Stable Diffusion pipeline of ``diffrep_lite.testing`` (8x8 latents): one UNet forward.

Each figure is the median of ``--reps`` timed calls after one warm-up call, at torch's default thread count
(or ``--threads``). The real-size SD UNet rows come from ``python -m benchmarks.bench_sd_unet``.

    python -m benchmarks.bench_cpu_costs [--reps 5] [--out benchmarks/results/cpu_costs.json]
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

import diffrep_lite as dl
from diffrep_lite.data import load_digits16
from diffrep_lite.testing import make_tiny_stable_diffusion

from . import harness


def timed(fn, reps: int) -> float:
    """Median seconds of ``reps`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = harness.parser(__doc__)
    ap.add_argument("--reps", type=int, default=5, help="timed calls per figure, after one warm-up call")
    a = ap.parse_args(argv)
    if a.reps < 1:
        raise SystemExit(f"--reps must be >= 1, got {a.reps}")
    harness.set_threads(a.threads)
    res = dict(benchmark="cpu_costs", **harness.environment("torch", "threads", "platform", "cpu_count",
                                                            load_average_start="load_average"),
               reps=a.reps, protocol="median of reps timed calls after one warm-up call", rows={})
    torch.manual_seed(0)

    digits, _ = load_digits16(32)
    mix = dl.priors.GaussianMixture(torch.ones(len(digits)), digits, 1e-3)
    for b in (1, 64):
        x = torch.randn(b, *digits.shape[1:])
        res["rows"][f"mixture_digits32_eps_batch{b}_s"] = timed(lambda: mix.eps(x, 1.0), a.reps)

    prior = dl.priors.load_digits_prior()
    labels = torch.arange(64) % 10
    for cfg in (1.0, 3.0):
        res["rows"][f"digits16_ddim50_64_samples_cfg{cfg:g}_s"] = timed(
            lambda: dl.sample("reference", prior, None, steps=50, n=64, seed=0, cond=labels, guidance_scale=cfg,
                              progress=False), max(1, a.reps // 2))

    from diffusers import UNet2DConditionModel
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_stable_diffusion(os.path.join(tmp, "tiny_sd"))
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet").eval()
    lat = torch.randn(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        res["rows"]["tiny_sd_unet_forward_batch1_s"] = timed(lambda: unet(lat, 500, ctx), a.reps)
    res.update(harness.environment(load_average_end="load_average"))
    harness.emit(res, a.out)


if __name__ == "__main__":
    main()
