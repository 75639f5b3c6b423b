#!/usr/bin/env python
"""Sample quality of the shipped digits DDPM (or any checkpoint folder): the figures of its model card.

Its own 50-step DDIM samples (``dl.sample("reference", ...)``), ``--per-class`` per digit, at each CFG scale:

* accuracy of an SVM trained on the *held-out* digits on the requested label,
* share of noise-textured samples (total variation above the training split's 99th percentile),
* KID against the held-out digits (shipped feature net), next to the KID of same-size stratified subsets
  of the *training* split against the held-out split (the floor a perfect model would reach),
* with ``clip_sample`` on (the shipped scheduler config) and off.

Usage::

    python benchmarks/digits_model_quality.py [--model DIR] [--out benchmarks/results/digits16_quality.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import diffrep_lite as dl  # noqa: E402
from diffrep_lite import metrics  # noqa: E402
from diffrep_lite.data import digits_split  # noqa: E402
from diffrep_lite.priors.shipped import DIGITS_NULL_LABEL, shipped_model_path  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(shipped_model_path("digits16")))
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-unclipped", action="store_true", help="skip the clip_sample=False figures")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    labels = torch.arange(10).repeat_interleave(a.per_class)
    res = dict(benchmark="digits_model_quality", model=os.path.relpath(a.model), steps=a.steps,
               per_class=a.per_class, seed=a.seed, sampler="reference (DDIM, eta 0)", rows=[],
               train_vs_heldout_kid=dict(**metrics.digits_kid_floor(a.per_class),
                                         full_train=metrics.kid(*(digits_split()[k][0] for k in ("train", "heldout")))))
    for clip in ([True] if a.no_unclipped else [True, False]):
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
    txt = json.dumps(res, indent=1)
    print(txt)
    if a.out:
        with open(a.out, "w") as f:
            f.write(txt + "\n")


if __name__ == "__main__":
    main()
