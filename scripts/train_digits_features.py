#!/usr/bin/env python
"""Train the KID feature network (``diffrep_lite.metrics.DigitsFeatureNet``) on scikit-learn's digits.

A small CNN classifier on the 16x16 digits in ``[-1, 1]`` (the shipped DDPM's data), with random
+-1 pixel shifts and light Gaussian noise as augmentation. Seeded and a fixed number of epochs.
A stratified 80/20 split gives the reported held-out accuracy; the shipped net is the one trained on
the 80 % split (so the accuracy describes exactly the shipped weights).

Usage::

    PYTHONPATH=. python scripts/train_digits_features.py --out diffrep_lite/models/digits_features
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from diffrep_lite.data import load_digits16  # noqa: E402
from diffrep_lite.metrics import DigitsFeatureNet  # noqa: E402


def shift(x, gen, max_shift=1):
    """Random integer translation by up to ``max_shift`` pixels (padding with the background value -1)."""
    n, _, h, w = x.shape
    p = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--noise", type=float, default=0.1, help="std of the Gaussian noise augmentation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    x, y = load_digits16(16)
    test_idx = []
    for c in range(10):  # stratified 20 % hold-out
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test_idx.append(idx[: len(idx) // 5])
    test_idx = torch.cat(test_idx)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[test_idx] = False
    xtr, ytr, xte, yte = x[mask], y[mask], x[test_idx], y[test_idx]

    net = DigitsFeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)
    t0, log = time.time(), []
    for ep in range(a.epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=gen)
        tot = 0.0
        for i in range(0, len(perm), a.batch):
            b = perm[i:i + a.batch]
            xb = shift(xtr[b], gen) + a.noise * torch.randn(xtr[b].shape, generator=gen)
            loss = F.cross_entropy(net(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        sched.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xte).argmax(1) == yte).float().mean())
        log.append(dict(epoch=ep + 1, loss=round(tot / len(ytr), 4), test_acc=round(acc, 4)))
        print(f"epoch {ep + 1:3d}  loss {tot / len(ytr):.4f}  held-out acc {acc:.4f}", flush=True)
    net.eval()
    net.save(a.out)
    n_params = sum(p.numel() for p in net.parameters())
    info = dict(args=vars(a), n_params=n_params, n_train=int(mask.sum()), n_test=len(test_idx),
                test_accuracy=log[-1]["test_acc"], wall_s=round(time.time() - t0, 1), torch=torch.__version__, log=log)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"saved to {a.out}: {n_params:,} params, held-out accuracy {log[-1]['test_acc']:.4f}, "
          f"{info['wall_s']} s")


if __name__ == "__main__":
    main()
