#!/usr/bin/env python
"""Time to quality: sample quality against wall-clock seconds for DDR and its peers, one script, one run.

Two workloads, each method timed on one thread in this process:

* **SIREN images on the shipped digits model** (16x16, class 3, classifier-free guidance 3, a SIREN of 2 hidden
  layers of 64): the KID (``diffrep_lite.metrics``, the shipped digits feature net) of ``n`` samples against
  ``n_ref`` reference DDIM samples of the model (50 steps, other seeds). Lower is better.
* **The analytic 3-D toy** of notebook 05 / ``tests/test_nerf.py`` (two blob scenes, a view-conditioned
  mixture prior, a voxel NeRF seen by 24 cameras): the PSNR of 12 held-out cameras against the nearest true
  scene, averaged over the samples. Higher is better.

DDR runs over a grid of (levels, Gauss-Newton fits, CG iterations) and, on SIRENs, over a grid of (levels, fits)
with the exact pixel-kernel solve (``solver="kernel"``); SJC, SDS and SDI over their step counts.
For each workload the script finds the best quality any peer reaches, the time of that peer run, and the
fastest DDR setting that does at least as well: the **DDR-vs-best-peer time ratio** (the issue's goal is
<= 0.5). It also reports the reverse view (DDR's best quality and the peers' time to it).

Writes the JSON to ``benchmarks/results/time_to_quality_cpu.json`` (``--quick``: ``..._quick.json``), the figure
to ``book/figures/time_to_quality.png`` and a short summary the book includes,
``book/figures/time_to_quality.md``. The full run takes about an hour and a half on one CPU thread (each setting
is timed twice, the faster run kept):

    OMP_NUM_THREADS=1 python -m benchmarks.time_to_quality            # full
    OMP_NUM_THREADS=1 python -m benchmarks.time_to_quality --quick    # a few minutes, smoke test
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from . import harness
from .harness import ROOT

FULL = {
    "siren": dict(n=32, n_ref=128, ddr_grid=dict(levels=[5, 10, 20, 30], fits=[2, 4, 6], iters=[2, 4, 8]),
                  ddr_kernel_grid=dict(levels=[5, 10, 20, 30], fits=[2, 4, 6, 8]),
                  peer_steps=[10, 20, 30, 60, 120, 240]),
    "nerf": dict(n=4, ddr_grid=dict(levels=[5, 10, 20], fits=[1, 2], iters=[4, 10]),
                 peer_steps=[40, 80, 160, 320, 640, 1000]),
}
QUICK = {
    "siren": dict(n=4, n_ref=16, ddr_grid=dict(levels=[3, 6], fits=[1, 2], iters=[2]),
                  ddr_kernel_grid=dict(levels=[3], fits=[2]), peer_steps=[4, 8]),
    "nerf": dict(n=1, ddr_grid=dict(levels=[3], fits=[1], iters=[2, 4]), peer_steps=[4, 8]),
}
#: Settings of the methods that the grid does not vary: on SIRENs each peer's best at notebook 03's budget
#: (``benchmarks/results/peers_sweep_siren.json``), on the toy notebook 05's.
SIREN_KW = {"ddr": dict(solver="cg"), "sjc": dict(lr=1e-3, optimizer="adamax"), "sds": dict(lr=3e-3, t_range=[0.02, 0.98]),
            "sdi": dict(lr=1e-3, inversion_steps=1, t_range=[0.2, 0.98], inversion_guidance_scale=None)}
NERF_KW = {"ddr": dict(solver="cg", repaint_iters=2, jump_eta=1.0), "sjc": dict(lr=0.05), "sds": dict(lr=0.05),
           "sdi": dict(lr=0.05, inversion_steps=3)}
PEERS = ("sjc", "sds", "sdi")


REPEATS = 1


def timed(fn):
    """Run ``fn`` ``REPEATS`` times (the samplers are seeded, so every run gives the same samples) and keep the
    fastest time: on a shared machine the minimum is the least disturbed measurement."""
    best = math.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def ddr_grid(grid):
    return [dict(steps=L, fit_iters=F, solver_iters=K) for L in grid["levels"] for F in grid["fits"] for K in grid["iters"]]


def ddr_kernel_grid(grid):
    """DDR with the exact pixel-kernel solve: no solver iterations to vary."""
    return [dict(solver="kernel", steps=L, fit_iters=F) for L in grid["levels"] for F in grid["fits"]]


# ----------------------------------------------------------------------------------------------- workloads
def siren_workload(cfg, log):
    import diffrep_lite as dl
    from diffrep_lite import metrics
    from diffrep_lite.diffreps import SirenImage

    prior = dl.priors.load_digits_prior()
    rep = SirenImage(16, 1, hidden=64, hidden_layers=2)
    feats = metrics.digits_features()
    common = dict(cond=3, guidance_scale=3.0, progress=False)
    ref = dl.sample("reference", prior, None, steps=50, n=cfg["n_ref"], seed=1000, **common).x[:, 0]
    fref = feats(ref)
    dl.sample("ddr", prior, rep, steps=1, n=cfg["n"], seed=0, **common)  # warm-up

    def run(method, kw):
        out, sec = timed(lambda: dl.sample(method, prior, rep, n=cfg["n"], seed=0, **common, **kw))
        q = metrics.kid(feats(out.x[:, 0]), fref, features=None)
        row = {"method": method, **kw, "seconds": round(sec, 3), "quality": round(q, 5), "nfe": out.nfe}
        log(row)
        return row

    rows = [run("ddr", {**SIREN_KW["ddr"], **g}) for g in ddr_grid(cfg["ddr_grid"])]
    rows += [run("ddr", g) for g in ddr_kernel_grid(cfg["ddr_kernel_grid"])]
    rows += [run(m, {**SIREN_KW[m], "steps": s}) for m in PEERS for s in cfg["peer_steps"]]
    own = dl.sample("reference", prior, None, steps=50, n=cfg["n"], seed=0, **common).x[:, 0]
    floor = metrics.kid(feats(own), fref, features=None)  # the model's own samples: the noise floor of the KID
    return {"quality": "KID (lower is better)", "lower_is_better": True, "n": cfg["n"], "n_ref": cfg["n_ref"],
            "model": "shipped digits16", "siren": dict(hidden=64, hidden_layers=2), "cfg": 3.0, "label": 3,
            "reference_kid_floor": round(floor, 5), "runs": rows}


def nerf_workload(cfg, log):
    import diffrep_lite as dl
    from diffrep_lite.diffreps import VoxelNeRF, cameras_on_sphere
    from diffrep_lite.metrics import psnr
    from diffrep_lite.priors import blob_scenes, scene_mixture
    from diffrep_lite.schedule import geometric_schedule

    cams = cameras_on_sphere(6, [-30.0, 0.0, 30.0, 60.0], radius=2.5, fov=40.0, azimuth_offset=20.0)
    nerf = VoxelNeRF(cams, 12, grid=8, channels=3, background=1.0, view_conds="index", init_features=0.0,
                     n_samples=16)
    scenes = blob_scenes(2, 8, n_blobs=2, generator=torch.Generator().manual_seed(1))
    prior = scene_mixture(nerf, scenes, variance=1e-3, schedule=geometric_schedule(0.01, 200.0))
    held = cameras_on_sphere(6, [15.0, 40.0], radius=2.5, fov=40.0)
    with torch.no_grad():
        true = nerf.render(scenes, held)

    def quality(params):
        with torch.no_grad():
            x = nerf.render(params, held)
        return sum(max(float(psnr(x[b], true[k]).mean()) for k in range(true.shape[0])) for b in range(x.shape[0])) / x.shape[0]

    def run(method, kw):
        out, sec = timed(lambda: dl.sample(method, prior, nerf, n=cfg["n"], seed=0, progress=False, **kw))
        row = {"method": method, **kw, "seconds": round(sec, 3), "quality": round(quality(out.params), 3),
               "nfe": out.nfe}
        log(row)
        return row

    rows = [run("ddr", {**NERF_KW["ddr"], **g}) for g in ddr_grid(cfg["ddr_grid"])]
    rows += [run(m, {**NERF_KW[m], "steps": s}) for m in PEERS for s in cfg["peer_steps"]]
    return {"quality": "held-out PSNR, dB (higher is better)", "lower_is_better": False, "n": cfg["n"],
            "toy": "2 blob scenes, grid 8, 24 training cameras at 12x12, 12 held-out cameras", "runs": rows}


# ----------------------------------------------------------------------------------------------- summary
DDR_KEYS = ("solver", "steps", "fit_iters", "solver_iters", "seconds", "quality")


def summarise(res):
    """The best quality any peer reaches and DDR's time to it (and the reverse)."""
    low = res["lower_is_better"]
    better = (lambda a, b: a <= b) if low else (lambda a, b: a >= b)
    best = min if low else max
    peers = [r for r in res["runs"] if r["method"] != "ddr"]
    ddr = [r for r in res["runs"] if r["method"] == "ddr"]
    q_peer = best(r["quality"] for r in peers)
    peer = min((r for r in peers if r["quality"] == q_peer), key=lambda r: r["seconds"])
    reach = [r for r in ddr if better(r["quality"], q_peer)]
    out = {"best_peer": {k: peer[k] for k in ("method", "steps", "seconds", "quality")}}
    if reach:
        d = min(reach, key=lambda r: r["seconds"])
        out["ddr_fastest_reaching_it"] = {k: d.get(k) for k in DDR_KEYS}
        out["time_ratio_ddr_over_best_peer"] = round(d["seconds"] / peer["seconds"], 3)
        # the grid's cheapest DDR setting already beats the peer: the ratio is only an upper bound
        out["ratio_is_upper_bound"] = d["seconds"] == min(r["seconds"] for r in ddr)
    else:
        out["ddr_fastest_reaching_it"] = None
        out["time_ratio_ddr_over_best_peer"] = None
    q_ddr = best(r["quality"] for r in ddr)
    dbest = min((r for r in ddr if r["quality"] == q_ddr), key=lambda r: r["seconds"])
    out["best_ddr"] = {k: dbest.get(k) for k in DDR_KEYS}
    preach = [r for r in peers if better(r["quality"], q_ddr)]
    out["peer_fastest_reaching_best_ddr"] = (
        {k: min(preach, key=lambda r: r["seconds"])[k] for k in ("method", "steps", "seconds", "quality")}
        if preach else None)
    return out


def pareto(rows, low):
    pts = sorted(rows, key=lambda r: r["seconds"])
    front, cur = [], None
    for r in pts:
        if cur is None or (r["quality"] < cur if low else r["quality"] > cur):
            front.append(r)
            cur = r["quality"]
    return front


def plot(doc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    names = [k for k in ("siren", "nerf") if k in doc]
    # one panel per row, drawn at the book column's width (about 750 px at 100 dpi), so no text is shrunk
    fig, axes = plt.subplots(len(names), 1, figsize=(7.5, 6.6 * len(names)), squeeze=False)
    colors = {"sjc": "tab:orange", "sds": "tab:green", "sdi": "tab:red"}
    markers = {1: "v", 2: "s", 3: "^", 4: "o", 6: "D", 8: "P"}
    for ax, name in zip(axes[:, 0], names):
        res = doc[name]
        low = res["lower_is_better"]
        ddr = [r for r in res["runs"] if r["method"] == "ddr"]
        for solver, cmap, what in (("cg", plt.cm.Blues, "CG"), ("kernel", plt.cm.Purples, "exact")):
            rows = [r for r in ddr if r.get("solver", "cg") == solver]
            fits = sorted({r["fit_iters"] for r in rows})
            for j, F in enumerate(fits):
                pts = [r for r in rows if r["fit_iters"] == F]
                shade = cmap(0.45 + 0.5 * j / max(1, len(fits) - 1))
                ax.scatter([r["seconds"] for r in pts], [r["quality"] for r in pts], marker=markers.get(F, "o"),
                           s=22, color=shade, alpha=0.9, zorder=3,
                           label=f"DDR {what}, {F} fit{'s' if F > 1 else ''} per level")
        front = pareto(ddr, low)
        both = len({r.get("solver", "cg") for r in ddr}) > 1
        ax.plot([r["seconds"] for r in front], [r["quality"] for r in front], color="tab:blue", lw=1, zorder=2,
                label="DDR's best at each time (levels x fits x CG" + (", or exact)" if both else ")"))
        for r in front:
            ax.annotate(setting_text(r, short=True), (r["seconds"], r["quality"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points", color="tab:blue")
        for m in PEERS:
            pts = sorted((r for r in res["runs"] if r["method"] == m), key=lambda r: r["steps"])
            ax.plot([r["seconds"] for r in pts], [r["quality"] for r in pts], "-o", ms=3, color=colors[m],
                    label=f"{m.upper()} (steps)", zorder=2)
            for r in pts:
                ax.annotate(str(r["steps"]), (r["seconds"], r["quality"]), fontsize=8, xytext=(3, -10),
                            textcoords="offset points", color=colors[m])
        if "reference_kid_floor" in res:
            ax.axhline(res["reference_kid_floor"], color="k", lw=0.6, ls=":", label="the model's own samples")
        if low:  # KID: near 0 matters, a few diverged peer runs sit far above
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylim(bottom=min(0.0, min(r["quality"] for r in res["runs"])) - 0.005)
        s = res["summary"]
        ratio = s["time_ratio_ddr_over_best_peer"]
        rtxt = "not reached" if ratio is None else ("<= " if s.get("ratio_is_upper_bound") else "") + f"{ratio:.2f}"
        ax.set_title(("SIREN digits at CFG 3: KID to the model's samples" if name == "siren"
                      else "3-D toy: PSNR of held-out cameras") + f"\nDDR time / best peer's time to its quality: {rtxt}",
                     fontsize=10)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall-clock seconds (1 CPU thread)")
        ax.set_ylabel(res["quality"])
        ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle(f"time to quality ({doc['mode']} run, {doc['date']})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def setting_text(r, short=False):
    """A DDR row's setting: levels x fits x CG iterations, or levels x fits of the exact kernel solve."""
    if short:
        return f"{r['steps']}x{r['fit_iters']}" + (" exact" if r.get("solver") == "kernel" else f"x{r['solver_iters']}")
    if r.get("solver") == "kernel":
        return f"{r['steps']} levels x {r['fit_iters']} exact fits"
    return f"{r['steps']} levels x {r['fit_iters']} fits x {r['solver_iters']} CG"


def markdown(doc) -> str:
    lines = [f"<!-- written by benchmarks/time_to_quality.py ({doc['mode']} run, {doc['date']}); do not edit -->", ""]
    if doc["mode"] != "full":
        lines += [f"**This is a `{doc['mode']}` smoke-test run at tiny sizes; the numbers below say nothing about "
                  "quality. Rerun without `--quick` for the real figure.**", ""]
    lines += ["| workload | best peer (its time) | fastest DDR at least as good | DDR / peer time | best DDR | "
              "fastest peer at least as good as the best DDR |", "|---|---|---|---|---|---|"]
    for name, label in (("siren", "SIREN digits, KID"), ("nerf", "3-D toy, held-out PSNR")):
        if name not in doc:
            continue
        s = doc[name]["summary"]
        p, d, b, pr = s["best_peer"], s["ddr_fastest_reaching_it"], s["best_ddr"], s["peer_fastest_reaching_best_ddr"]
        fq = (lambda q: f"{q:.4f}") if name == "siren" else (lambda q: f"{q:.1f} dB")
        sec = lambda x: f"{x:.3g} s"  # noqa: E731
        ddr_txt = "not reached" if d is None else f"{setting_text(d)}: {fq(d['quality'])} ({sec(d['seconds'])})"
        ratio = "—" if s["time_ratio_ddr_over_best_peer"] is None else \
            ("≤ " if s.get("ratio_is_upper_bound") else "") + f"{s['time_ratio_ddr_over_best_peer']:.2f}"
        best_txt = f"{setting_text(b)}: {fq(b['quality'])} ({sec(b['seconds'])})"
        pr_txt = "none" if pr is None else f"{pr['method'].upper()} {pr['steps']} steps: {fq(pr['quality'])} ({sec(pr['seconds'])})"
        lines.append(f"| {label} | {p['method'].upper()} {p['steps']} steps: {fq(p['quality'])} ({sec(p['seconds'])}) "
                     f"| {ddr_txt} | {ratio} | {best_txt} | {pr_txt} |")
    labels = {"siren": "SIRENs", "nerf": "3-D toy"}
    repeats = ", ".join(f"{labels[n]} {doc[n].get('timing_repeats', doc.get('timing_repeats', 1))}"
                        for n in ("siren", "nerf") if n in doc)
    lines += ["", "DDR's time is that of the cheapest setting of its grid that reaches the peer's quality; \"≤\" marks "
              "a ratio where even the cheapest setting of the grid does better than the peer, so the true time to "
              f"the peer's quality is shorter still. Seeds fixed, one CPU thread; timed runs per setting (the fastest "
              f"kept): {repeats}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = harness.parser(__doc__, threads=1)
    ap.set_defaults(out=None)
    ap.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs (minutes)")
    ap.add_argument("--workloads", nargs="+", default=["siren", "nerf"], choices=["siren", "nerf"])
    ap.add_argument("--figure", default=str(ROOT / "book" / "figures" / "time_to_quality.png"))
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per setting, fastest kept (default: "
                    "2, --quick: 1)")
    ap.add_argument("--replot", metavar="JSON", help="only redraw the figure and summary from a results file")
    a = ap.parse_args(argv)
    fig = Path(a.figure)
    if a.replot:
        doc = json.loads(Path(a.replot).read_text())
        for name in ("siren", "nerf"):
            if name in doc:
                doc[name]["summary"] = summarise(doc[name])
        plot(doc, fig)
        fig.with_suffix(".md").write_text(markdown(doc))
        return
    global REPEATS
    REPEATS = a.repeats if a.repeats is not None else (1 if a.quick else 2)
    harness.set_threads(a.threads)
    cfgs = QUICK if a.quick else FULL
    mode = "quick" if a.quick else "full"
    import diffrep_lite as dl

    sched = json.loads((Path(dl.__file__).parent / "models" / "digits16" / "scheduler_config.json").read_text())
    doc = {"benchmark": "time_to_quality", "mode": mode,
           **harness.environment("date", "threads", "torch", "platform", "cpu_count", load_average_start="load_average"),
           "digits16_beta_schedule": sched.get("beta_schedule"), "settings": cfgs, "timing_repeats": REPEATS}

    def log(row):
        print(json.dumps(row), flush=True)

    for name in a.workloads:
        load0 = os.getloadavg()
        res = (siren_workload if name == "siren" else nerf_workload)(cfgs[name], log)
        res["summary"] = summarise(res)
        res.update(timing_repeats=REPEATS, load_average_start=load0, load_average_end=os.getloadavg())
        print(json.dumps({name: res["summary"]}), flush=True)
        doc[name] = res
    doc["load_average_end"] = os.getloadavg()
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"time_to_quality_cpu{'_quick' if a.quick else ''}.json"
    harness.emit(doc, out, echo=False)
    plot(doc, fig)
    fig.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out}, {fig} and {fig.with_suffix('.md')}")


if __name__ == "__main__":
    main()
