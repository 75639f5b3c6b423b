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
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
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
    flagged = {}  # prior -> (image, title) of every flagged sample of the first FIGURE_SEEDS seed sets, for --figure
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
                    flagged.setdefault(name, []).extend(
                        (x[i, 0], f"{name.split('_')[0]} CFG {s:g} s{seed} '{int(labels[i])}'\nTV {tv[i]:.0f} 2nd {sv[i]:.0f}")
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
    if a.figure:
        save_flagged_figure(a.figure, flagged, xtr, ytr, tv_tr, thr, sthr)
    return out


def save_flagged_figure(path, flagged, xtr, ytr, tv_tr, thr, sthr, cols=10):
    """Every flagged sample at 4x size with its TV and second-difference roughness, one block of rows per prior
    (``flagged``: name -> [(image, title)]), then the ten roughest training digits (by their TV ``tv_tr``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = [(xtr[i, 0], f"training '{int(ytr[i])}'\nTV {tv_tr[i]:.0f}") for i in tv_tr.argsort(descending=True)[:cols]]
    blocks = list(flagged.values()) + [real]
    rows = sum(-(-len(b) // cols) for b in blocks)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.45), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    r = 0
    for block in blocks:
        for j, (img, title) in enumerate(block):
            ax = axes[r + j // cols, j % cols]
            ax.imshow(img.numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_title(title, fontsize=6)
        r += -(-len(block) // cols)
    fig.suptitle(f"Samples flagged as rough (TV > {thr:.1f} or second differences > {sthr:.1f}, the training digits' "
                 f"99th percentiles), seed sets 0-{FIGURE_SEEDS - 1}.\n'model': the shipped model; 'exact': the exact "
                 f"prior over the training digits (its samples are training digits). Last row: the roughest training "
                 f"digits", fontsize=8, y=1 - 0.1 / (rows * 1.45), va="top")
    fig.subplots_adjust(top=1 - 0.85 / (rows * 1.45))  # the title right above the first row
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
