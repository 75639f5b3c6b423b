"""Seconds per step, NFEs, peak memory and projected minutes per asset of DDR vs SJC vs SDS on a latent voxel NeRF.

The prior is the package's ``StableDiffusionPrior`` (built with ``from_components``) around a Stable Diffusion
1.5-shaped ``UNet2DConditionModel`` with *random* weights (no weights can be downloaded; the timing of a network
does not depend on its weights) and random text embeddings, under classifier-free guidance (2 UNet passes per
view). The NeRF renders 4-channel latents (SJC's ``V_SD``).

Sizes:
  ``--size paper``: SD-1.5 UNet config (860M parameters), 100^3 grid, 64x64 latent views, 200 samples per ray.
      Meant for a GPU (``--device cuda``); on a CPU one UNet pass alone takes many seconds.
  ``--size small``: a tiny UNet (2 levels, 32/64 channels), 16^3 grid, 16x16 latent views: runs on a CPU.

The settings default to notebook 05's Stable Diffusion branch and the peers' usual runs: DDR samples 8 fixed
cameras with 10 CG iterations per pull-back and 3 RePaint repeats per level (``--views``, ``--cg``,
``--repaint``); SJC and SDS render one camera per step (``--peer-views``), as SJC and threestudio do. The UNet runs
in ``--dtype`` (float16 on CUDA by default, float32 on a CPU; the NeRF, the solve and the optimisers stay in
float32). Each method times ``--steps`` steps (DDR: levels, each with its repeats) after one warm-up step, and
the JSON projects minutes per asset from them: DDR over ``--asset-levels`` levels (notebook 05's ``sd_steps``),
SJC and SDS over ``--asset-steps`` steps (10,000, the SDI paper's runs of both).

Each method runs in its own subprocess so its peak memory is its own: CUDA ``max_memory_allocated`` on a
GPU, the process's peak resident set size (``ru_maxrss``) on a CPU (which includes the Python/torch baseline,
reported separately as ``baseline_rss_mib``). Prints one JSON object.

    python -m benchmarks.bench_nerf --size small
    python -m benchmarks.bench_nerf --size paper --device cuda                   # float16 UNet
    python -m benchmarks.bench_nerf --size paper --device cuda --dtype float32
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from . import harness

SIZES = {
    "small": dict(grid=16, res=16, n_samples=32, unet=dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8), text_dim=32),
    # Stable Diffusion v1.5's UNet (runwayml/stable-diffusion-v1-5, unet/config.json), written out here.
    "paper": dict(grid=100, res=64, n_samples=200, unet=dict(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32), text_dim=768),
}


#: ``--dtype`` names -> the UNet's weights dtype
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

#: the text condition (its embedding is random, like the UNet's weights)
PROMPT = "a DSLR photo of a hamburger"
#: Stable Diffusion's scheduler (DDIM with scaled-linear betas, epsilon prediction)
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def make_prior(cfg, device, dtype):
    """The package's :class:`~diffrep_lite.priors.StableDiffusionPrior` around a random-weight SD-shaped UNet, built
    from components: the UNet, SD's scheduler config and random text embeddings for ``PROMPT`` and the
    unconditional ``""`` (no text encoder, no VAE: the NeRF renders latents and nothing is decoded)."""
    from diffusers import UNet2DConditionModel

    from diffrep_lite.priors import StableDiffusionPrior

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**cfg["unet"]).to(device=device, dtype=dtype).eval()
    g = torch.Generator().manual_seed(1)
    text = torch.randn(2, 77, cfg["text_dim"], generator=g)
    return StableDiffusionPrior.from_components(unet, SD_SCHEDULER, embeddings={"": text[0], PROMPT: text[1]})


def run_one(args):
    import diffrep_lite as dl
    from diffrep_lite.diffreps import VoxelNeRF, cameras_on_sphere

    cfg = SIZES[args.size]
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    base_rss = harness.peak_rss_mb()
    prior = make_prior(cfg, device, dtype)
    views = args.views if args.method == "ddr" else args.peer_views
    cams = cameras_on_sphere(views, 15.0, radius=2.0, fov=60.0)
    nerf = VoxelNeRF(cams, cfg["res"], grid=cfg["grid"], channels=4, n_samples=cfg["n_samples"],
                     background="learned", chunk=args.chunk)
    # one warm-up step, then the timed ones; a step's cost does not depend on its noise level, so a short
    # schedule times what a step of the full run costs
    kw = dict(steps=args.steps + 1, n=1, seed=0, cond=PROMPT, guidance_scale=args.cfg, progress=False)
    if args.method == "ddr":
        kw.update(solver_iters=args.cg, repaint_iters=args.repaint)
    times = []

    def tick(step, info):
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = dl.sample(args.method, prior, nerf, callback=tick, **kw)
    total = time.perf_counter() - t0
    steps_s = [b - a for a, b in zip([t0] + times[:-1], times)]
    sec = sum(steps_s[1:]) / (len(steps_s) - 1)
    asset = args.asset_levels if args.method == "ddr" else args.asset_steps
    res = {"method": args.method, "views": views, "dtype": args.dtype, "timed_steps": args.steps, "sec_per_step": sec,
           "first_step_sec": steps_s[0], "total_sec": total, "nfe_per_view": out.nfe, "unet_passes": out.nfe * views,
           "asset_steps": asset, "minutes_per_asset_est": sec * asset / 60,
           "finite": bool(torch.isfinite(out.x).all())}
    if args.method == "ddr":
        res.update(cg_iters=args.cg, repaint_iters=args.repaint)
    if device.type == "cuda":
        res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    res["peak_rss_mib"] = harness.peak_rss_mb()
    res["baseline_rss_mib"] = base_rss
    res["estimate_mib"] = {k: v / 2**20 for k, v in nerf.memory_estimate(1).items()}
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = harness.parser(__doc__)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default="ddr,sjc,sds")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="the UNet's weights dtype (default float16 on CUDA, float32 on a CPU)")
    p.add_argument("--views", type=int, default=8, help="DDR's fixed cameras (notebook 05's sd_views)")
    p.add_argument("--peer-views", type=int, default=1, help="cameras SJC and SDS render per step")
    p.add_argument("--steps", type=int, default=3, help="timed steps (DDR: levels), after one warm-up step")
    p.add_argument("--cg", type=int, default=10, help="DDR conjugate-gradient iterations per pull-back")
    p.add_argument("--repaint", type=int, default=3, help="DDR RePaint repeats per level (notebook 05's repaint_iters)")
    p.add_argument("--asset-levels", type=int, default=50, help="DDR levels per asset (notebook 05's sd_steps)")
    p.add_argument("--asset-steps", type=int, default=10000, help="SJC and SDS steps per asset")
    p.add_argument("--cfg", type=float, default=7.5, help="classifier-free guidance scale (2 UNet passes)")
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method in this process
    args = p.parse_args(argv)
    harness.set_threads(args.threads)
    if args.dtype is None:
        args.dtype = "float16" if args.device.startswith("cuda") else "float32"
    for name in ("views", "peer_views", "steps", "cg", "repaint", "asset_levels", "asset_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.method:
        harness.emit(run_one(args), indent=None)
        return
    results = {"size": args.size, "device": args.device, "dtype": args.dtype, "views": args.views,
               "peer_views": args.peer_views, **{k: v for k, v in SIZES[args.size].items() if k != "unet"},
               "unet_params_M": None, **harness.environment("torch", "threads"), "methods": {}}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    for m in args.methods.split(","):
        # the child parses this run's own arguments (with the device and dtype resolved), plus its one method
        results["methods"][m] = harness.run_module("bench_nerf", *argv, "--device", args.device, "--dtype",
                                                   args.dtype, "--method", m, check=False)
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        results["unet_params_M"] = sum(t.numel() for t in UNet2DConditionModel(**SIZES[args.size]["unet"]).parameters()) / 1e6
    harness.emit(results, args.out)


if __name__ == "__main__":
    main()
