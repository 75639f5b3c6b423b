#!/usr/bin/env python
"""Sample quality of the shipped digits DDPM (or any checkpoint folder): the figures of its model card.

Its own 50-step DDIM samples (``dl.sample("reference", ...)``), ``--per-class`` per digit, at each CFG scale:

* accuracy of an SVM trained on the *held-out* digits on the requested label,
* share of noise-textured samples (total variation above the training split's 99th percentile),
* KID against the held-out digits (shipped feature net), next to the KID of same-size stratified subsets
  of the *training* split against the held-out split (the floor a perfect model would reach),
* with ``clip_sample`` on (the shipped scheduler config) and off.

Usage::

    python -m benchmarks.digits_model_quality [--model DIR] [--tv-seeds 20 --exact-prior] [--out benchmarks/results/digits16_quality.json]
    python -m benchmarks.digits_model_quality --tv-seeds 10 --exact-only --steps 1000   # the exact prior alone
    python -m benchmarks.digits_model_quality --figure-from benchmarks/results/digits16_flagged.npz \
        --figure benchmarks/results/digits16_flagged.png   # redraw the figure from its stored samples, no sampling
"""
from __future__ import annotations

import os
import sys
import time

import torch

import diffrep_lite as dl
from diffrep_lite import metrics
from diffrep_lite.data import digits_split
from diffrep_lite.priors.shipped import DIGITS_NULL_LABEL, shipped_model_path

from . import harness


def main(argv=None):
    ap = harness.parser(__doc__)
    ap.add_argument("--model", default=str(shipped_model_path("digits16")))
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-unclipped", action="store_true", help="skip the clip_sample=False figures")
    ap.add_argument("--tv-seeds", type=int, default=0,
                    help="also repeat the noise-textured (TV) figure over this many seed sets (0..N-1) at each "
                         "CFG scale, clip_sample on, with the flagged samples per digit (0: skip)")
    ap.add_argument("--exact-prior", action="store_true",
                    help="with --tv-seeds: also run the exact class-conditional prior over the training digits "
                         "(what a perfect model of the training split gives under the same sampler and guidance)")
    ap.add_argument("--exact-only", action="store_true",
                    help="with --tv-seeds: the exact prior's TV figures alone, no model samples (cheap at many "
                         "--steps: how much of its share is the sampler's discretisation)")
    ap.add_argument("--figure", default=None,
                    help="with --tv-seeds: save the flagged CFG samples of the first 5 seed sets (TV or second "
                         "differences), with the roughest training digits for comparison, to this PNG")
    ap.add_argument("--flagged-data", default=None,
                    help="with --tv-seeds: also store the samples --figure shows (images, prior, CFG, seed, index, "
                         "digit, TV, second differences) and the roughest training digits in this .npz")
    ap.add_argument("--figure-from", default=None,
                    help="draw --figure from a --flagged-data .npz alone (no sampling, no JSON)")
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    if a.figure_from:
        if not a.figure:
            ap.error("--figure-from needs --figure PNG")
        save_flagged_figure(a.figure, load_flagged(a.figure_from))
        return
    if a.exact_only and not a.tv_seeds:
        ap.error("--exact-only needs --tv-seeds N (N >= 1)")
    a.exact_prior = a.exact_prior or a.exact_only
    labels = torch.arange(10).repeat_interleave(a.per_class)
    res = dict(benchmark="digits_model_quality", model=os.path.relpath(a.model), steps=a.steps,
               per_class=a.per_class, seed=a.seed, sampler="reference (DDIM, eta 0)", rows=[],
               train_vs_heldout_kid=dict(**metrics.digits_kid_floor(a.per_class),
                                         full_train=metrics.kid(*(digits_split()[k][0] for k in ("train", "heldout")))))
    for clip in [] if a.exact_only else [True] if a.no_unclipped else [True, False]:
        prior = dl.priors.UNetPrior.from_pretrained(a.model, null_label=DIGITS_NULL_LABEL,
                                                    **({} if clip else dict(clip_sample=False)))
        for s in a.cfg:
            t0 = time.perf_counter()
            x = dl.sample("reference", prior, None, steps=a.steps, n=len(labels), seed=a.seed, cond=labels,
                          guidance_scale=s, progress=False).x[:, 0]
            row = dict(cfg=s, clip_sample=clip, seconds=round(time.perf_counter() - t0, 2),
                       **metrics.digits_quality(x, labels))
            res["rows"].append(row)
            print(row, file=sys.stderr, flush=True)
    if a.tv_seeds:
        res["tv_by_seed"] = tv_by_seed(a, labels)
    harness.emit(res, a.out)


FIGURE_SEEDS = 5  # --figure shows the flagged samples of the first seed sets only (a readable page)


def exact_digits_prior(schedule) -> "dl.priors.ClipDenoised":
    """The exact class-conditional prior over the *training* digits (a point mass on each of the 1,442 images,
    ``ClassConditionalMixture`` with variance 0), on the shipped model's schedule and clipped to [-1, 1] like the
    model (``clip_sample``): what a perfectly trained model of the training split returns, guidance included."""
    xtr, ytr = digits_split()["train"]
    mix = dl.priors.ClassConditionalMixture(xtr, ytr, 0.0, schedule=schedule)  # float32: the same initial noise per seed
    return dl.priors.ClipDenoised(mix)


def tv_by_seed(a, labels) -> dict:
    """The noise-textured share (TV above the training split's 99th percentile) over seed sets, with the
    flagged samples' digits and TVs, next to the share of each digit of the *real* data above the same
    threshold (a perfect model's expected share). With ``--exact-prior`` the same figures for the exact
    prior over the training digits (:func:`exact_digits_prior`) under the same sampler, seeds and guidance."""
    split = digits_split()
    (xtr, ytr), (xho, yho) = split["train"], split["heldout"]
    tv_tr, tv_ho = metrics.total_variation(xtr), metrics.total_variation(xho)
    thr = float(tv_tr.quantile(0.99))
    sthr = float(metrics.second_variation(xtr).quantile(0.99))
    out = dict(threshold=thr, real_share_per_digit={
        "train": [float((tv_tr[ytr == c] > thr).double().mean()) for c in range(10)],
        "heldout": [float((tv_ho[yho == c] > thr).double().mean()) for c in range(10)]})
    flagged = []  # every flagged sample of the first FIGURE_SEEDS seed sets (a dict each), for --figure
    prior = dl.priors.UNetPrior.from_pretrained(a.model, null_label=DIGITS_NULL_LABEL)
    priors = ([] if a.exact_only else [("model", prior)]) + (
        [("exact_prior", exact_digits_prior(prior.schedule))] if a.exact_prior else [])
    for name, pr in priors:
        rows = []
        for s in a.cfg:
            for seed in range(a.tv_seeds):
                x = dl.sample("reference", pr, None, steps=a.steps, n=len(labels), seed=seed, cond=labels,
                              guidance_scale=s, progress=False).x[:, 0].float().clamp(-1, 1)
                tv, sv = metrics.total_variation(x), metrics.second_variation(x)
                flag = tv > thr
                if seed < FIGURE_SEEDS:
                    flagged.extend(dict(prior=name, cfg=s, seed=seed, index=i, digit=int(labels[i]),
                                        tv=float(tv[i]), sv=float(sv[i]), image=x[i, 0].cpu().numpy())
                                   for i in torch.nonzero(flag | (sv > sthr)).flatten().tolist())
                row = dict(cfg=s, seed=seed, noise_textured=float(flag.double().mean()),
                           static=float((sv > sthr).double().mean()),
                           flagged_per_digit=[int(flag[labels == c].sum()) for c in range(10)],
                           flagged_tv=sorted(round(float(v), 1) for v in tv[flag]))
                rows.append(row)
                print(name, row, file=sys.stderr, flush=True)
        shares = {s: [r["noise_textured"] for r in rows if r["cfg"] == s] for s in a.cfg}
        summary = [dict(cfg=s, seeds=len(v), mean=sum(v) / len(v), min=min(v), max=max(v),
                        flagged_per_digit=[sum(r["flagged_per_digit"][c] for r in rows if r["cfg"] == s)
                                           for c in range(10)])
                   for s, v in shares.items()]
        if name == "model":
            out.update(rows=rows, summary=summary)
        else:
            out[name] = dict(prior="ClassConditionalMixture over the training split, variance 0, clipped to [-1, 1]",
                             rows=rows, summary=summary)
    if a.figure or a.flagged_data:
        rough = tv_tr.argsort(descending=True)[:10]
        data = dict(flagged=flagged, thr=thr, sthr=sthr, seeds=FIGURE_SEEDS, per_set=len(labels),
                    real=[dict(index=int(i), digit=int(ytr[i]), tv=float(tv_tr[i]), image=xtr[i, 0].numpy())
                          for i in rough])
        if a.flagged_data:
            save_flagged(a.flagged_data, data)
        if a.figure:
            save_flagged_figure(a.figure, data)
    return out


_FIELDS = ("prior", "cfg", "seed", "index", "digit", "tv", "sv")


def save_flagged(path, data):
    """Store what :func:`save_flagged_figure` draws in a compressed .npz (float32 images, one array per field)."""
    import numpy as np

    f, r = data["flagged"], data["real"]
    np.savez_compressed(
        path, thr=data["thr"], sthr=data["sthr"], seeds=data["seeds"], per_set=data["per_set"],
        images=np.stack([d["image"] for d in f]).astype(np.float32),
        **{k: np.array([d[k] for d in f]) for k in _FIELDS},
        real_images=np.stack([d["image"] for d in r]).astype(np.float32),
        **{f"real_{k}": np.array([d[k] for d in r]) for k in ("index", "digit", "tv")})


def load_flagged(path) -> dict:
    """The inverse of :func:`save_flagged`."""
    import numpy as np

    z = np.load(path)
    n, m = len(z["images"]), len(z["real_images"])
    return dict(thr=float(z["thr"]), sthr=float(z["sthr"]), seeds=int(z["seeds"]), per_set=int(z["per_set"]),
                flagged=[dict(image=z["images"][i], **{k: z[k][i].item() for k in _FIELDS}) for i in range(n)],
                real=[dict(image=z["real_images"][i], **{k: z[f"real_{k}"][i].item() for k in ("index", "digit", "tv")})
                      for i in range(m)])


FIG_COLS = 7
FIG_WIDTH = FIG_COLS * 98  # 686 px: within the book's text column at 1300 px (688 px), shown at its natural size
FIG_ZOOM = 4  # every 16 px digit drawn 64 px, each pixel a 4 x 4 block (nearest neighbour)
FIG_FONT = 8  # points at 100 dpi: 11 px text


def save_flagged_figure(path, data):
    """Every flagged sample (``data`` from :func:`tv_by_seed` or :func:`load_flagged`) drawn 4x with its CFG, seed
    set, digit, TV and second-difference roughness, one block per prior, then the ten roughest training digits.
    The figure is FIG_WIDTH px wide at 100 dpi (shown unscaled in the book's column); each digit is placed pixel for
    pixel (``figimage``), so it is upsampled by whole pixels, never resampled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = {"model": "The shipped model", "exact_prior": "The exact prior over the training digits"}
    blocks = []
    for name in dict.fromkeys(d["prior"] for d in data["flagged"]):
        block = [d for d in data["flagged"] if d["prior"] == name]
        blocks.append((f"{names.get(name, name)}: {len(block)} flagged samples",
                       [(d["image"], f"CFG {d['cfg']:g}, s{d['seed']}, '{d['digit']}'",
                         f"TV {d['tv']:.0f}, 2nd {d['sv']:.0f}") for d in block]))
    blocks.append(("The ten roughest training digits",
                   [(d["image"], f"training '{d['digit']}'", f"TV {d['tv']:.0f}") for d in data["real"]]))
    dpi, px = 100, 16 * FIG_ZOOM
    cell_w = FIG_WIDTH // FIG_COLS
    line = FIG_FONT / 72 * dpi * 1.25  # px per text line
    cell_h = px + 2 * line + 10
    head_h, title_h = 2.2 * line + 8, 3 * 1.3 * line + 12
    height = int(title_h + sum(head_h + cell_h * -(-len(b) // FIG_COLS) for _, b in blocks))
    fig = plt.figure(figsize=(FIG_WIDTH / dpi, height / dpi), dpi=dpi)
    fig.patch.set_facecolor("white")

    def text(x, y, s, **kw):  # x, y in px from the top left
        fig.text(x / FIG_WIDTH, 1 - y / height, s, **{"fontsize": FIG_FONT, "va": "top", **kw})

    text(4, 4, f"Samples flagged as rough: TV > {data['thr']:.1f} or second differences (2nd) > "
               f"{data['sthr']:.1f},\nthe training digits' 99th percentiles; seed sets s0-s{data['seeds'] - 1}, "
               f"{data['per_set']} samples per set and CFG scale.\nThe exact prior's samples are training digits.",
         fontsize=FIG_FONT + 1, linespacing=1.3)
    y = title_h
    for head, block in blocks:
        text(4, y + 6, head, fontweight="bold")
        y += head_h
        for j, (img, l1, l2) in enumerate(block):
            x0 = (j % FIG_COLS) * cell_w
            y0 = y + (j // FIG_COLS) * cell_h
            big = np.kron(np.clip((np.asarray(img) + 1) / 2, 0, 1), np.ones((FIG_ZOOM, FIG_ZOOM)))
            ix = int(x0 + (cell_w - px) / 2)
            fig.figimage(big, xo=ix, yo=int(height - y0 - px), cmap="gray", vmin=0, vmax=1, origin="upper")
            text(x0 + cell_w / 2, y0 + px + 3, f"{l1}\n{l2}", ha="center", linespacing=1.1)
        y += cell_h * -(-len(block) // FIG_COLS)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


if __name__ == "__main__":
    main()
