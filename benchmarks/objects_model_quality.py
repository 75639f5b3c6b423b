#!/usr/bin/env python
"""Quality of the shipped view-conditioned model's own samples (``objects16``), per azimuth bin.

50-step DDIM (the reference sampler), ``--per-bin`` samples for every azimuth bin, at each CFG scale and each
``--eta`` (0: the deterministic DDIM / PF-ODE sampler; 1: its stochastic DDPM-like form, fresh noise at every
step), seeded.
Figures (with the shipped azimuth classifier ``objects_features``, trained on data renders only):

* ``bin_accuracy``: share of samples whose predicted bin is the requested one; ``within_1_bin``; ``wrong_side``:
  share predicted >= 2 bins away (the Janus criterion of :mod:`diffrep_lite.consistency`, for single views);
* ``noise_textured``: share of samples whose high-frequency energy (mean absolute 4-neighbour Laplacian) exceeds
  the largest of the 2048 held-out data renders (the renders are smooth; leftover noise shows here);
* ``kid_per_bin``: KID (classifier features) of the samples at bin b against 256 held-out objects' renders at
  bin b; ``kid_pooled``: all samples against all held-out renders; the same two numbers between 256 *training*
  objects' renders and the held-out ones are the floor (``data_floor``).

Writes the JSON to ``--out`` and a PNG grid (rows = bins, 8 samples each, 48 px per image) to ``--grid`` (the last
guidance scale, one file per eta: ``--grid`` with ``_eta1`` before the suffix for eta = 1).

Usage::

    python -m benchmarks.objects_model_quality [--model DIR] [--per-bin 16] [--threads 1]
"""
from __future__ import annotations

import json
import os
import time

import torch

from . import harness


def grid_png(samples, path, cols=8, scale=3, title=None):
    """samples: [bins, >= cols, 3, 16, 16] in [-1, 1] -> a PNG, one row per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = samples.shape[0]
    img = ((samples[:, :cols] + 1) / 2).clamp(0, 1)  # [bins, cols, 3, H, W]
    rows = torch.cat([torch.cat(list(r), -1) for r in img], -2)  # [3, bins H, cols W]
    fig, ax = plt.subplots(figsize=(cols * 0.16 * scale * 2, bins * 0.16 * scale * 2))
    ax.imshow(rows.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([(b + 0.5) * samples.shape[-2] for b in range(bins)])
    ax.set_yticklabels([f"bin {b} ({360 * b // bins} deg)" for b in range(bins)])
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = harness.parser(__doc__, out="benchmarks/results/objects_model_quality.json", threads=1)
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped objects16)")
    ap.add_argument("--per-bin", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--eta", type=float, nargs="+", default=[0.0, 1.0], help="sampler stochasticity (0: DDIM)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="PNG of the samples at the last guidance scale")
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    import diffrep_lite as dl
    from diffrep_lite.consistency import azimuth_features, circular_distance, predict_bins
    from diffrep_lite.data import OBJECT_BINS, toy_objects
    from diffrep_lite.metrics import kid, laplacian_energy

    bins = OBJECT_BINS
    held = toy_objects(256, 0, start=10**6)
    train = toy_objects(256, 0)
    fe = azimuth_features()
    held_max = laplacian_energy(held.flatten(0, 1)).max()  # the roughest held-out render
    floor = dict(kid_per_bin=[kid(train[:, b], held[:, b], features=fe) for b in range(bins)],
                 kid_pooled=kid(train.flatten(0, 1), held.flatten(0, 1), features=fe),
                 bin_accuracy=float((predict_bins(held) == torch.arange(bins)).float().mean()),
                 hf_energy_max=float(held_max),
                 noise_textured_train=float((laplacian_energy(train.flatten(0, 1)) > held_max).float().mean()))
    prior = dl.priors.load_objects_prior(path=a.model)
    cond = [b for b in range(bins) for _ in range(a.per_bin)]
    results = []
    for eta, g in [(eta, g) for eta in a.eta for g in a.guidance]:
        t0 = time.perf_counter()
        out = dl.sample("reference", prior, None, steps=a.steps, n=len(cond), seed=a.seed, cond=cond,
                        guidance_scale=g, eta=eta, progress=False)
        dt = time.perf_counter() - t0
        x = out.x[:, 0].reshape(bins, a.per_bin, *out.x.shape[2:])  # [bins, per_bin, 3, H, W]
        pred = predict_bins(x)
        dist = circular_distance(pred, torch.arange(bins)[:, None], bins)
        res = dict(guidance_scale=g, eta=eta, seconds=round(dt, 1),
                   bin_accuracy=float((dist == 0).float().mean()), within_1_bin=float((dist <= 1).float().mean()),
                   wrong_side=float((dist >= 2).float().mean()),
                   noise_textured=float((laplacian_energy(x.flatten(0, 1)) > floor["hf_energy_max"]).float().mean()),
                   bin_accuracy_per_bin=(dist == 0).float().mean(1).tolist(),
                   kid_per_bin=[kid(x[b], held[:, b], features=fe) for b in range(bins)],
                   kid_pooled=kid(x.flatten(0, 1), held.flatten(0, 1), features=fe))
        results.append(res)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()
                          if not isinstance(v, list)}), flush=True)
        if a.grid and g == a.guidance[-1]:
            root, ext = os.path.splitext(a.grid)
            grid_png(x, a.grid if eta == 0 else f"{root}_eta{eta:g}{ext}",
                     title=f"objects16, CFG {g:g}, {'DDIM' if eta == 0 else f'eta {eta:g}'}: row b = azimuth bin b "
                           "(45 b deg; 0 face, 4 tail)")
    doc = dict(model=a.model or "objects16 (shipped)", steps=a.steps, per_bin=a.per_bin, seed=a.seed,
               sampler="reference (DDIM; eta as in each result)", features="objects_features (AzimuthNet penultimate layer)",
               heldout="toy_objects(256, 0, start=10**6)", data_floor=floor, results=results,
               **harness.environment("torch", "platform", "threads"))
    harness.emit(doc, a.out, echo=False)
    print(json.dumps({"data_floor": {k: (v if not isinstance(v, list) else [round(t, 4) for t in v])
                                     for k, v in floor.items()}}))


if __name__ == "__main__":
    main()
