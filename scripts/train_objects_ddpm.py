#!/usr/bin/env python
"""Train the shipped view-conditioned pixel DDPM on the toy 3-D objects (16x16 RGB, 8 azimuth bins).

Reproducible: everything is seeded and the run is a fixed number of optimiser steps (not a time budget), so
the same machine/torch version gives the same weights. Logs the loss and the wall time.

Data: ``diffrep_lite.data.objects_split`` -- procedural creatures (a body, a yellow face on the front, a black
tail on the back) rendered by the package's own voxel renderer from 8 azimuth bins at 20 degrees elevation;
the training split only (the held-out objects are kept for evaluation).
Model: diffusers ``UNet2DModel`` (block channels 32/64/64, no attention: 25 % cheaper on a CPU) with ``num_class_embeds =
bins + 1``: labels ``0 .. bins-1`` are the azimuth bins, label ``bins`` is the *null* label used for
classifier-free guidance (training drops each label to it with probability ``--p-uncond``).
Schedule: Stable Diffusion's, as the shipped digits model: ``DDPMScheduler`` with 1000 ``scaled_linear`` ticks,
beta 0.00085 -> 0.012, epsilon prediction, ``clip_sample=True``.
Optimiser: AdamW, linear warm-up then cosine decay to lr/10, gradient clipping 1.0; the saved weights are an
exponential moving average (EMA) of the parameters.

Usage (the shipped weights: three stages, each starting from the previous stage's EMA weights; 8000 steps)::

    PYTHONPATH=. nohup python scripts/train_objects_ddpm.py --out runs/objects16_stage1 \
        --steps 2000 --threads 1 --save-every 250 > train_objects.log 2>&1 &
    PYTHONPATH=. nohup python scripts/train_objects_ddpm.py --out runs/objects16_stage2 \
        --init-from runs/objects16_stage1 --steps 3000 --lr 5e-4 --warmup 100 --seed 1 --threads 1 \
        --save-every 500 > train_objects2.log 2>&1 &
    PYTHONPATH=. nohup python scripts/train_objects_ddpm.py --out diffrep_lite/models/objects16 \
        --init-from runs/objects16_stage2 --steps 3000 --lr 3e-4 --warmup 100 --seed 2 --threads 1 \
        --save-every 500 > train_objects3.log 2>&1 &

(The stages are what a shared 2-core CPU allowed: the first 2000 steps left noise-textured samples, so training
went on twice from the EMA weights; see the model card.)

Writes ``OUT/config.json`` + ``OUT/diffusion_pytorch_model.safetensors`` (the EMA UNet, via
``save_pretrained``), ``OUT/scheduler_config.json``, ``OUT/diffrep_lite.json`` (null label, class names, view_conditioned) and
``OUT/train_log.json`` (arguments, loss curve, wall time); with ``--save-every`` also EMA checkpoints under
``OUT/checkpoints/stepN``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from diffrep_lite.data import OBJECT_BINS, toy_objects  # noqa: E402


def build_unet(bins: int = OBJECT_BINS, size: int = 16):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=bins + 1,
    )


def save(unet, sched, out, bins):
    unet.save_pretrained(out, safe_serialization=True)
    sched.save_pretrained(out)
    names = [f"azimuth {360 * b / bins:g}" for b in range(bins)] + ["null"]
    with open(os.path.join(out, "diffrep_lite.json"), "w") as f:
        json.dump({"null_label": bins, "class_names": names, "view_conditioned": True}, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--n-train", type=int, default=2048, help="training objects (x bins views each)")
    p.add_argument("--bins", type=int, default=OBJECT_BINS)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (with the usual (1+k)/(10+k) warm-up)")
    p.add_argument("--p-uncond", type=float, default=0.1, help="probability of dropping a label to the null label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=0, help="also save the EMA weights every N steps (0: only at the end)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--init-from", default=None,
                   help="start from the (EMA) weights of this directory instead of random ones (a second stage)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    from diffusers import DDPMScheduler

    t_data = time.time()
    x = toy_objects(a.n_train, 0, bins=a.bins)  # the training split of objects_split: [N, bins, 3, 16, 16]
    t_data = time.time() - t_data
    N = x.shape[0] * a.bins
    x_all = x.flatten(0, 1)
    y_all = torch.arange(a.bins).repeat(x.shape[0])
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    unet = build_unet(a.bins, x.shape[-1])
    if a.init_from:
        from diffusers import UNet2DModel

        unet.load_state_dict(UNet2DModel.from_pretrained(a.init_from).state_dict())
    n_params = sum(q.numel() for q in unet.parameters())
    ema = build_unet(a.bins, x.shape[-1])
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, prediction_type="epsilon", clip_sample=True)
    abar = sched.alphas_cumprod.float()
    opt = torch.optim.AdamW(unet.parameters(), lr=a.lr, weight_decay=1e-4)

    def lr_at(k):
        if k < a.warmup:
            return a.lr * (k + 1) / a.warmup
        t = (k - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    print(f"objects {tuple(x.shape)} rendered in {t_data:.0f} s; UNet2DModel {n_params:,} params; "
          f"{a.steps} steps at batch {a.batch}", flush=True)
    log, run_loss, t0 = [], None, time.time()
    perm, pos = torch.randperm(N, generator=gen), 0
    unet.train()
    for k in range(a.steps):
        if pos + a.batch > N:
            perm, pos = torch.randperm(N, generator=gen), 0
        idx = perm[pos:pos + a.batch]
        pos += a.batch
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(len(y), generator=gen) < a.p_uncond] = a.bins
        t = torch.randint(0, 1000, (len(y),), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = abar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = F.mse_loss(unet(xt, t, class_labels=y).sample, eps)
        for g in opt.param_groups:
            g["lr"] = lr_at(k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        d = min(a.ema, (1 + k) / (10 + k))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pm, 1 - d)
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        if (k + 1) % a.log_every == 0 or k + 1 == a.steps:
            el = time.time() - t0
            log.append(dict(step=k + 1, loss=round(lv, 5), loss_ema=round(run_loss, 5), lr=lr_at(k),
                            wall_s=round(el, 1)))
            print(f"step {k + 1:5d}  loss {lv:.4f}  running {run_loss:.4f}  lr {lr_at(k):.2e}  {el:7.1f}s",
                  flush=True)
        if a.save_every and (k + 1) % a.save_every == 0 and k + 1 < a.steps:
            save(ema, sched, os.path.join(a.out, "checkpoints", f"step{k + 1}"), a.bins)
    wall = time.time() - t0

    os.makedirs(a.out, exist_ok=True)
    save(ema, sched, a.out, a.bins)
    info = dict(args=vars(a), n_params=n_params, n_train_objects=x.shape[0], n_train_images=N,
                data_render_s=round(t_data, 1), wall_s=round(wall, 1), final_loss_ema=run_loss,
                torch=torch.__version__, platform=platform.platform(), threads=torch.get_num_threads(), log=log)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"saved EMA weights to {a.out} ({wall:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
