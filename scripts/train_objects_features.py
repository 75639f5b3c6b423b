#!/usr/bin/env python
"""Train the azimuth classifier / KID feature net (``diffrep_lite.consistency.AzimuthNet``) on the toy objects.

Data: renders of the *training* objects of ``diffrep_lite.data.objects_split`` (indices ``0 .. n-1`` of seed 0,
every azimuth bin); the reported accuracy is on the first 128 held-out objects (indices from ``10**6``), which
neither this net nor the shipped view-conditioned model saw. Two heads on one 64-d penultimate layer: the azimuth
bin (cross-entropy) and the object's generating attributes (``data.toy_object_attributes``, standardised; mean
square error), so the features used for KID see colour and shape as well as the view. Augmentation: random
+-1 pixel shifts (padding with the background colour) and Gaussian pixel noise. Seeded; a fixed number of epochs.

Usage::

    PYTHONPATH=. python scripts/train_objects_features.py --out diffrep_lite/models/objects_features --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from diffrep_lite.consistency import AzimuthNet  # noqa: E402
from diffrep_lite.data import OBJECT_ATTRIBUTES, OBJECT_BACKGROUND, OBJECT_BINS, toy_object_attributes, toy_objects  # noqa: E402


def shift(x, gen, max_shift=1):
    """Random integer translation by up to ``max_shift`` pixels, padding with the background colour."""
    n, c, h, w = x.shape
    bg = torch.tensor(OBJECT_BACKGROUND, dtype=x.dtype)[None, :, None, None]
    p = F.pad(x - bg, (max_shift,) * 4) + bg
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-train", type=int, default=384, help="training objects (x bins views)")
    ap.add_argument("--n-test", type=int, default=128, help="held-out objects for the reported accuracy")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--noise", type=float, default=0.1, help="max std of the Gaussian noise augmentation")
    ap.add_argument("--attr-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    bins = OBJECT_BINS
    t0 = time.time()
    xtr = toy_objects(a.n_train, 0)  # [N, bins, 3, 16, 16]
    xte = toy_objects(a.n_test, 0, start=10**6)
    atr = toy_object_attributes(a.n_train, 0)
    ate = toy_object_attributes(a.n_test, 0, start=10**6)
    t_data = time.time() - t0
    mu, sd = atr.mean(0), atr.std(0)
    flat = lambda x: x.flatten(0, 1)  # noqa: E731
    Xtr, Xte = flat(xtr), flat(xte)
    Ytr, Yte = torch.arange(bins).repeat(a.n_train), torch.arange(bins).repeat(a.n_test)
    Atr = ((atr - mu) / sd).repeat_interleave(bins, 0)
    Ate = ((ate - mu) / sd).repeat_interleave(bins, 0)

    net = AzimuthNet(bins, len(OBJECT_ATTRIBUTES))
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    steps_per_epoch = (len(Ytr) + a.batch - 1) // a.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * steps_per_epoch)
    log, t1 = [], time.time()
    for ep in range(a.epochs):
        net.train()
        perm = torch.randperm(len(Ytr), generator=gen)
        tot = 0.0
        for i in range(0, len(perm), a.batch):
            b = perm[i:i + a.batch]
            s = a.noise * torch.rand(len(b), 1, 1, 1, generator=gen)
            xb = shift(Xtr[b], gen) + s * torch.randn(Xtr[b].shape, generator=gen)
            h = net._hidden(xb)
            loss = F.cross_entropy(net.head_bin(h), Ytr[b]) + a.attr_weight * F.mse_loss(net.head_attr(h), Atr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
        net.eval()
        with torch.no_grad():
            acc = float((net(Xte).argmax(1) == Yte).float().mean())
            attr_mse = float(F.mse_loss(net.attributes(Xte), Ate))
        log.append(dict(epoch=ep + 1, loss=round(tot / len(Ytr), 4), heldout_bin_acc=round(acc, 4),
                        heldout_attr_mse=round(attr_mse, 4)))
        print(f"epoch {ep + 1:3d}  loss {tot / len(Ytr):.4f}  held-out bin acc {acc:.4f}  attr mse {attr_mse:.4f}",
              flush=True)
    net.eval()
    with torch.no_grad():
        pred = net(Xte).argmax(1)
        d = (pred - Yte).remainder(bins)
        within1 = float((torch.minimum(d, bins - d) <= 1).float().mean())
        net.feature_scale = 1.0
        net.feature_scale = net.config["feature_scale"] = float(net.features(Xtr).pow(2).mean().sqrt())
    net.save(a.out)
    n_params = sum(p.numel() for p in net.parameters())
    info = dict(args=vars(a), n_params=n_params, n_train_views=len(Ytr), n_test_views=len(Yte),
                heldout_bin_accuracy=log[-1]["heldout_bin_acc"], heldout_within_1_bin=within1,
                heldout_attr_mse=log[-1]["heldout_attr_mse"], attributes=list(OBJECT_ATTRIBUTES),
                attr_mean=mu.tolist(), attr_std=sd.tolist(), data_render_s=round(t_data, 1),
                wall_s=round(time.time() - t1, 1), torch=torch.__version__, platform=platform.platform(),
                threads=torch.get_num_threads(), log=log)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"saved to {a.out}: {n_params:,} params, held-out bin accuracy {log[-1]['heldout_bin_acc']:.4f} "
          f"(within 1 bin {within1:.4f}), {info['wall_s']} s")


if __name__ == "__main__":
    main()
