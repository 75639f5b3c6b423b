"""Cost of one real-size Stable Diffusion UNet call: seconds per forward, per forward+backward to the
input (what score distillation and DDR's pull-back need per view), and peak memory.

The UNet is SD 1.5's ``UNet2DConditionModel`` config (859.5 M parameters) with random weights: the
cost does not depend on the weights, and nothing is downloaded. Prints one JSON object.

    python -m benchmarks.bench_sd_unet                       # CPU, fp32, B=1, 64x64 latents (~1-2 min)
    python -m benchmarks.bench_sd_unet --device cuda --dtype float16 --batch 2   # e.g. on Colab

Peak memory: the process's peak resident set size (CPU; includes the weights) and, on CUDA,
``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import time

import torch

from . import harness

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, reps):
    """First call (warm-up) and the following ``reps`` calls, in seconds."""
    out = []
    for _ in range(reps + 1):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out[0], out[1:]


def main(argv=None):
    ap = harness.parser(__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px)")
    ap.add_argument("--batch", type=int, default=1, help="UNet batch (2 = one CFG evaluation of one view)")
    ap.add_argument("--reps", type=int, default=2, help="timed calls after one warm-up call")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    from diffusers import UNet2DConditionModel

    device, dtype = torch.device(a.device), DTYPES[a.dtype]
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel(**SD15_UNET).to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet = unet.to(dtype)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, 4, a.latent, a.latent, generator=g).to(device, dtype)
    emb = torch.randn(a.batch, 77, 768, generator=g).to(device, dtype)
    t = torch.full((a.batch,), 500, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def forward():
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=emb)

    def forward_backward():
        xi = x.clone().requires_grad_(True)
        y = unet(xi, t, encoder_hidden_states=emb).sample
        (y.float() * y.detach().float()).sum().backward()  # a vector-Jacobian product, as J^T v needs
        assert xi.grad is not None and xi.grad.shape == x.shape

    fwd_first, fwd = _timed(forward, device, a.reps)
    fb_first, fb = _timed(forward_backward, device, a.reps)
    res = {
        "benchmark": "sd15_unet_random_weights",
        "device": str(device), "dtype": a.dtype, "batch": a.batch, "latent": [4, a.latent, a.latent],
        "params_millions": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "build_s": round(build_s, 2),
        "forward_s": {"first": round(fwd_first, 3), "runs": [round(v, 3) for v in fwd], "min": round(min(fwd), 3)},
        "forward_backward_s": {"first": round(fb_first, 3), "runs": [round(v, 3) for v in fb], "min": round(min(fb), 3)},
        "peak_rss_gib": round(harness.peak_rss_mb() / 2**10, 2),
        **harness.environment("torch", "threads", "machine"),
    }
    if device.type == "cuda":
        res["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        res["gpu"] = torch.cuda.get_device_name(device)
    harness.emit(res, a.out, indent=None)
    return res


if __name__ == "__main__":
    main()
