"""Notebook 04's photo panoramas over many seeds: DDR with and without RePaint, with shared and independent view
noise, against SJC and SDS at their best step size, scored by patch distance, seam score and a pixel KID.

Every method runs at notebook 04's defaults: the exact Gaussian mixture over the 16 x 16 patches (stride 4) of
scikit-learn's ``china.jpg`` shrunk 5x, s^2 = 0.0025, a 16 x 128 pixel canvas seen through 16 x 16 windows at
stride 8 (15 windows), 100 prior evaluations per window for every method, DDR with CG(3) pull-backs and RePaint
U = 5 (20 levels x 5) or none (100 levels), jump eta 0.5. Each call draws ``--n`` panoramas (notebook 04's
``photo_samples``, 6) with one seed, seeds 0, 1, ..., ``--seeds`` - 1, so seed 0 is the notebook's own run. SJC
and SDS run at every step size of ``--lrs`` (notebook 04 picks the better of 0.3 and 1.0 by mean patch
distance); the comparisons use each peer at the step size with the lowest mean patch distance over all seeds.
On seed 0, step size 3 gave patch distance 0.174 for SJC (0.101 at 0.3) and 0.214 for SDS (0.145 at 0.1), far from
either peer's best, so the default sweep stops at 1.

Per method: mean, a 95 % bootstrap interval of the mean and the per-panorama spread (sd, quartiles, extremes) of

* ``dist``: :func:`diffrep_lite.metrics.nearest_patch_distance` (stride 4), the mean RMS distance of every
  16 x 16 window of the canvas to its nearest patch of the photo;
* ``seam``: :func:`diffrep_lite.metrics.window_seam_score` (stride 8), the RMS disagreement on the shared columns
  of neighbouring windows, each replaced by its nearest patch;

and two diagnostics that the two scores could miss: ``tv_ratio``, the canvas's total variation over the mean
total variation of the photo's own 16 x 128 strips (below 1: smoother than the photo, from blur or from more
sky; above 1: rougher, from static, block edges or more foliage), and ``patches_used``, how many of the photo's patches are the nearest patch of at least one
of the method's windows (at the sampler's stride 8; a collapse onto a few patches scores well on ``dist`` but
uses few). And one score of a set of canvases, computed per seed (its unit is the seed's ``--n`` panoramas):

* ``kid``: the unbiased MMD^2 (cubic polynomial kernel of the raw pixels, the KID estimator without a feature
  network; :func:`diffrep_lite.metrics.mmd2_unbiased`) between every 16 x 16 window at stride 4 of the seed's
  canvases and the photo's patches: a distance to the photo's patch *distribution*, which ``dist`` (a
  nearest-patch distance per window) is not. On raw pixels it mostly sees the mix of colours and brightness:
  sets of exact samples of the prior, as many windows, score about 0 (``reference_exact_kid``), while the
  photo's 229 bright patches (mean above 0.3, mostly sky) alone score 1.19 against all 522.

Planned comparisons (RePaint against none, shared against independent noise, DDR against each peer) give, for
``dist``, ``seam`` and ``kid``, the difference of means with its bootstrap interval, Welch's t-test and the
Mann-Whitney U test, and Holm-adjusted p-values over the family of comparisons of each score.

    OMP_NUM_THREADS=1 python -m benchmarks.panorama_methods --threads 1 \\
        --out benchmarks/results/panorama_methods.json --figure benchmarks/results/panorama_methods.png

(16 seeds x 6 panoramas x 10 settings: 696 s on one thread of a 2-core machine shared with other jobs.)
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy import stats

import diffrep_lite as dl
from diffrep_lite.data import image_patches, load_photo
from diffrep_lite.diffreps import Identity, Panorama
from diffrep_lite.metrics import mmd2_unbiased, nearest_patch_distance, total_variation, window_seam_score
from diffrep_lite.priors import GaussianMixture

from . import harness

#: Notebook 04's defaults (its parameters cell).
PHOTO, FACTOR, PATCH_STRIDE, VARIANCE, WIDTH = "china.jpg", 5, 4, 0.0025, 128
NFE, U, ETA = 100, 5, 0.5
DDR_KW = dict(solver="cg", solver_iters=3)
#: The DDR settings: name -> (RePaint?, view noise).
DDR = {"ddr_rp_ind": (True, "independent"), "ddr_rp_sh": (True, "shared"),
       "ddr_none_ind": (False, "independent"), "ddr_none_sh": (False, "shared")}
LABELS = {"ddr_rp_ind": f"DDR, RePaint U={U}, independent noise", "ddr_rp_sh": f"DDR, RePaint U={U}, shared noise",
          "ddr_none_ind": "DDR, no RePaint, independent noise", "ddr_none_sh": "DDR, no RePaint, shared noise",
          "sjc": "SJC, best step size", "sds": "SDS, best step size"}
#: The planned comparisons (a, b): the difference is mean(a) - mean(b).
COMPARISONS = [("ddr_rp_ind", "ddr_none_ind"), ("ddr_rp_sh", "ddr_none_sh"), ("ddr_rp_sh", "ddr_rp_ind"),
               ("ddr_none_sh", "ddr_none_ind"), ("ddr_rp_ind", "sjc"), ("ddr_rp_sh", "sjc"),
               ("ddr_none_ind", "sjc"), ("ddr_rp_ind", "sds"), ("sjc", "sds")]
SCORES = ("dist", "seam", "tv_ratio")  # per panorama
TESTED = ("dist", "seam", "kid")  # compared between methods (kid: per seed)


def setup(device: str = "cpu"):
    """The photo, its patches, the exact patch prior and the panorama diffrep of notebook 04."""
    image = load_photo(PHOTO, FACTOR)
    patches = image_patches(image, 16, PATCH_STRIDE)
    prior = GaussianMixture(torch.ones(len(patches)), patches, VARIANCE, device=device)
    wide = Panorama(Identity((3, 16, WIDTH)), 16, stride=8, view_conditioned=False)
    return image, patches, prior, wide


def nearest_index(canvas: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """The index of the nearest patch of each of the sampler's windows (stride 8): ``[B, V]``."""
    win = canvas.unfold(3, 16, 8).permute(0, 3, 1, 2, 4)  # [B, V, C, 16, 16]
    B, V = win.shape[:2]
    d = torch.cdist(win.reshape(B * V, -1).double(), patches.flatten(1).double())
    return d.argmin(1).reshape(B, V)


def windows(canvas: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Every 16 x 16 window of ``canvas`` ``[B, C, 16, W]`` at ``stride``, flattened: ``[B * n, C * 256]``."""
    win = canvas.unfold(3, 16, stride).permute(0, 3, 1, 2, 4)
    return win.reshape(-1, win[0, 0].numel())


def run(method: str, kw: dict, *, prior, wide, patches, strip_tv: float, seed: int, n: int) -> dict:
    t0 = time.perf_counter()
    out = dl.sample(method, prior, wide, n=n, seed=seed, progress=False, **kw)
    assert out.nfe == NFE, (method, out.nfe)
    can = wide.render_canvas(out.params).detach().cpu()
    sec = time.perf_counter() - t0
    return {"canvas": can, "seconds": sec,
            "dist": nearest_patch_distance(can, patches, stride=4).tolist(),
            "seam": window_seam_score(can, patches, view_stride=8).tolist(),
            "tv_ratio": (total_variation(can.clamp(-1, 1)) / strip_tv).tolist(),
            "kid": mmd2_unbiased(windows(can), patches.flatten(1)), "nearest": nearest_index(can, patches)}


def summary(v, rng, boot: int) -> dict:
    """Mean, 95 % bootstrap interval of the mean (percentile), and the spread of the values."""
    v = np.asarray(v, dtype=float)
    means = rng.choice(v, size=(boot, len(v))).mean(1)
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"mean": round(float(v.mean()), 4), "ci95": [round(float(x), 4) for x in np.quantile(means, [0.025, 0.975])],
            "sd": round(float(v.std(ddof=1)), 4), "min": round(float(q[0]), 4), "q25": round(float(q[1]), 4),
            "median": round(float(q[2]), 4), "q75": round(float(q[3]), 4), "max": round(float(q[4]), 4), "n": len(v)}


def compare(a, b, rng, boot: int) -> dict:
    """mean(a) - mean(b) with a 95 % bootstrap interval, Welch's t-test and the Mann-Whitney U test."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = rng.choice(a, size=(boot, len(a))).mean(1) - rng.choice(b, size=(boot, len(b))).mean(1)
    return {"diff": round(float(a.mean() - b.mean()), 4),
            "diff_ci95": [round(float(x), 4) for x in np.quantile(diff, [0.025, 0.975])],
            "welch_p": float(stats.ttest_ind(a, b, equal_var=False).pvalue),
            "mannwhitney_p": float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)}


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values."""
    order = np.argsort(ps)
    adj, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adj[i] = running
    return adj


def figure(canvases: dict, strip: torch.Tensor, path: str, per_method: int = 4) -> None:
    """The photo's strip and the first panorama of the first ``per_method`` seeds of each method, nearest-neighbour
    upsampled (one row per panorama)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("strip of the photo", strip)] + [(f"{LABELS[k]}, seed {i}", c[0])
                                               for k, cs in canvases.items() for i, c in enumerate(cs[:per_method])]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 0.95 * len(rows)))
    for ax, (name, can) in zip(axes, rows):
        ax.imshow((can.clamp(-1, 1).permute(1, 2, 0).numpy() + 1) / 2, interpolation="nearest")
        ax.set_title(name, fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = harness.parser(__doc__, threads=1)
    ap.add_argument("--seeds", type=int, default=16, help="seeds 0 .. SEEDS-1 (default 16)")
    ap.add_argument("--n", type=int, default=6, help="panoramas per call (default 6, notebook 04's photo_samples)")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.3, 1.0],
                    help="step sizes of SJC and SDS (default 0.1 0.3 1)")
    ap.add_argument("--boot", type=int, default=10000, help="bootstrap resamples (default 10000)")
    ap.add_argument("--figure", default=None, help="also save a PNG of a few panoramas per method here")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    harness.set_threads(a.threads)
    env = harness.environment("torch", "threads", "machine", "cpu_count", "date", load_average_start="load_average")
    image, patches, prior, wide = setup(a.device)
    strips = image.unfold(1, 16, 1).permute(1, 0, 3, 2)[..., :WIDTH]  # every 16 x 128 strip of the photo
    strip_tv = float(total_variation(strips).mean())
    common = dict(prior=prior, wide=wide, patches=patches, strip_tv=strip_tv, n=a.n)
    configs = {k: ("ddr", dict(steps=NFE // U, repaint_iters=U, jump_eta=ETA, view_noise=noise, **DDR_KW) if rp
                   else dict(steps=NFE, view_noise=noise, **DDR_KW)) for k, (rp, noise) in DDR.items()}
    configs |= {f"{m}_lr{lr:g}": (m, dict(steps=NFE, lr=lr)) for m in ("sjc", "sds") for lr in a.lrs}
    res = {k: {"dist": [], "seam": [], "tv_ratio": [], "kid": [], "nearest": [], "seconds": 0.0, "canvases": []}
           for k in configs}
    t0 = time.perf_counter()
    for seed in range(a.seeds):
        for k, (method, kw) in configs.items():
            r = run(method, kw, seed=seed, **common)
            for s in SCORES:
                res[k][s] += r[s]
            res[k]["nearest"].append(r["nearest"])
            res[k]["kid"].append(r["kid"])
            res[k]["seconds"] += r["seconds"]
            res[k]["canvases"].append(r["canvas"])
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    sweep = {k: {"dist": round(float(np.mean(r["dist"])), 4), "seam": round(float(np.mean(r["seam"])), 4),
                 "tv_ratio": round(float(np.mean(r["tv_ratio"])), 4), "kid": round(float(np.mean(r["kid"])), 4)}
             for k, r in res.items() if "_lr" in k}
    best_lr = {m: min(a.lrs, key=lambda lr: sweep[f"{m}_lr{lr:g}"]["dist"]) for m in ("sjc", "sds")}
    chosen = {k: k for k in DDR} | {m: f"{m}_lr{best_lr[m]:g}" for m in ("sjc", "sds")}
    methods = {}
    for name, k in chosen.items():
        r = res[k]
        used = torch.cat(r["nearest"]).unique().numel()
        methods[name] = {"label": LABELS[name], "config": k,
                         **{s: summary(r[s], rng, a.boot) for s in SCORES + ("kid",)},
                         "patches_used": used, "windows": int(sum(x.numel() for x in r["nearest"])),
                         "seconds_per_panorama": round(r["seconds"] / len(r["dist"]), 3),
                         "per_panorama": {s: [round(x, 4) for x in r[s]] for s in SCORES},
                         "per_seed_kid": [round(x, 4) for x in r["kid"]]}
    comparisons = []
    for x, y in COMPARISONS:
        c = {"a": x, "b": y}
        for s in TESTED:
            c[s] = compare(res[chosen[x]][s], res[chosen[y]][s], rng, a.boot)
        comparisons.append(c)
    for s in TESTED:
        for test in ("welch_p", "mannwhitney_p"):
            for c, p in zip(comparisons, holm([c[s][test] for c in comparisons])):
                c[s][test.replace("_p", "_p_holm")] = p
    strip = image[None, :, 40:56, :WIDTH]  # notebook 04's reference strip
    reference = {"dist": round(float(nearest_patch_distance(strip, patches, 4)[0]), 4),
                 "seam": round(float(window_seam_score(strip, patches, 8)[0]), 4),
                 "tv_ratio": round(float(total_variation(strip)[0]) / strip_tv, 4)}
    # the floor of kid: sets of exact samples of the prior (a patch plus N(0, s^2) noise) of the same size
    g = torch.Generator().manual_seed(0)
    size = len(windows(res["ddr_rp_ind"]["canvases"][0]))
    exact = [mmd2_unbiased(patches[torch.randint(len(patches), (size,), generator=g)].flatten(1)
                           + VARIANCE ** 0.5 * torch.randn(size, patches[0].numel(), generator=g), patches.flatten(1))
             for _ in range(a.seeds)]
    if a.figure:
        figure({k: res[chosen[k]]["canvases"] for k in chosen}, strip[0], a.figure)
    harness.emit({"benchmark": "panorama_methods", "device": a.device, **env,
                  "load_average_end": harness.environment("load_average")["load_average"],
                  "settings": {"photo": PHOTO, "factor": FACTOR, "patch_stride": PATCH_STRIDE, "variance": VARIANCE,
                               "canvas": [3, 16, WIDTH], "windows": wide.n_views, "nfe_per_window": NFE,
                               "repaint_U": U, "jump_eta": ETA, "ddr": DDR_KW, "seeds": list(range(a.seeds)),
                               "panoramas_per_call": a.n, "panoramas_per_method": a.seeds * a.n,
                               "peer_lrs": a.lrs, "bootstrap": a.boot, "n_patches": len(patches)},
                  "seconds": round(time.perf_counter() - t0, 1), "reference_strip": reference,
                  "reference_exact_kid": {"windows": size, **summary(exact, rng, a.boot)},
                  "peer_sweep": sweep, "best_lr": best_lr, "methods": methods, "comparisons": comparisons}, a.out)


if __name__ == "__main__":
    main()
