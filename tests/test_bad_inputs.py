"""A table of bad and edge inputs over every public entry point, as a new user would make them (issue #27).

Each row is one call that must fail with a given exception type, a message naming the parameter or the file at
fault, and (unless the fault can only show during a run) before any work: the priors and diffreps here count
their evaluations and renders, and model loading counts diffusers' ``from_pretrained`` calls; every counter must
still be zero after the error. Rows marked ``xfail(strict=True)`` are checks the sampler run loop is getting
(resumes, checkpoints, ``pullback.solve``'s options, divergence bounds, seeds, flags, view conditioning in the
samplers' shared setup); they flip to passing rows when that work lands.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite import pullback, validation
from diffrep_lite.diffreps import Identity, Linear, Panorama, SirenImage, SirenPanorama, VoxelNeRF, Warp2D
from diffrep_lite.diffreps.nerf import Camera, cameras_on_sphere
from diffrep_lite.priors import (ClassConditionalMixture, ClipDenoised, Gaussian, GaussianMixture, SceneMixture,
                                 StableDiffusionPrior, UNetPrior, ViewConditionedMixture, load_digits_prior,
                                 load_objects_prior)
from diffrep_lite.priors.shipped import shipped_model_path

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64
NAN, INF = math.nan, math.inf
# The lead's run-loop work adds these checks; each reason says which change flips its rows (drop the xfail then).
SETUP = None  # flipped: the run-loop work landed
CKPT = None  # flipped: the run-loop work landed
SOLVE = None  # flipped: the run-loop work landed
BOUND = None  # flipped: the run-loop work landed
LR = None  # flipped: the run-loop work landed


# ------------------------------------------------------------------------------------------------ counted objects
class Env:
    """Fresh priors and diffreps whose evaluations / renders are counted, plus temp files."""

    MEANS = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=DT)

    def __init__(self, tmp_path):
        self.calls = {"prior": 0, "render": 0, "load": 0}
        self.tmp = tmp_path

    # built on first use, so that a case pays only for what it touches
    @cached_property
    def gauss(self):
        return self.count_prior(Gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]], dtype=DT))

    @cached_property
    def gmm(self):
        return self.count_prior(GaussianMixture(torch.ones(6), self.MEANS, 0.05, dtype=DT))

    @cached_property
    def ccm(self):
        return self.count_prior(ClassConditionalMixture(self.MEANS, [0, 0, 1, 1, 2, 2], 0.05, dtype=DT))

    @cached_property
    def warp(self):
        return self.count_render(Warp2D())

    @cached_property
    def linear(self):
        return self.count_render(Linear(torch.eye(2, dtype=DT)))

    @cached_property
    def siren(self):
        return self.count_render(SirenImage(8, 1, hidden=16, hidden_layers=1))

    @cached_property
    def pano(self):
        """Crop offsets 0, 4, 8: a class-label prior would read them as the classes 0, 4, 8."""
        return self.count_render(SirenPanorama(8, 16, 8, stride=4, hidden=16, hidden_layers=1))

    def count_prior(self, prior):
        inner = prior._eps

        def _eps(*a, **k):
            self.calls["prior"] += 1
            return inner(*a, **k)

        prior._eps = _eps
        return prior

    def count_render(self, rep):
        inner = rep.render

        @functools.wraps(inner)  # keeps __wrapped__: pullback.solve reads the diffrep's output shape through it
        def render(*a, **k):
            self.calls["render"] += 1
            return inner(*a, **k)

        rep.render = render
        return rep

    def reset(self):
        for k in self.calls:
            self.calls[k] = 0

    def file(self, name="my_notes.txt", text="my notes, do not lose\n"):
        p = self.tmp / name
        p.write_text(text)
        return p


_DIGITS = {}


def digits(env):
    """The shipped digits prior (loaded once per module), its evaluations counted in ``env``."""
    if "p" not in _DIGITS:
        loads = env.calls["load"]
        _DIGITS["p"] = load_digits_prior()
        env.calls["load"] = loads  # loading the shipped model is the setup, not the case's work
    p = _DIGITS["p"]
    p.__dict__.pop("_eps", None)
    return env.count_prior(p)


@dataclass
class Case:
    id: str
    call: Callable  # Env -> anything; must raise
    exc: type
    names: tuple  # substrings the message must contain (the parameter, file or setting)
    xfail: str | None = None
    before_work: bool = True  # the prior is never evaluated and the diffrep never rendered
    marks: list = field(default_factory=list)


CASES: list[Case] = []


def case(id, call, exc, *names, xfail=None, before_work=True):
    CASES.append(Case(id, call, exc, names, xfail, before_work))


# ------------------------------------------------------------------------------------------------ priors: construction
G_MEAN, G_COV = [1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]]
M8 = torch.zeros(3, 1, 2, 2, dtype=DT)


def with_(t, idx, value):
    t = torch.as_tensor(t, dtype=DT).clone()
    t[idx] = value
    return t


case("gaussian-mean-nan", lambda e: Gaussian([NAN, 0.0], G_COV), ValueError, "mean")
case("gaussian-mean-inf", lambda e: Gaussian([INF, 0.0], G_COV), ValueError, "mean")
case("gaussian-mean-text", lambda e: Gaussian(["a", "b"], G_COV), TypeError, "mean")
case("gaussian-cov-inf", lambda e: Gaussian(G_MEAN, [[INF, 0.0], [0.0, 1.0]]), ValueError, "cov")
case("gaussian-cov-nan", lambda e: Gaussian(G_MEAN, [[1.0, NAN], [NAN, 1.0]]), ValueError, "cov")
case("gaussian-cov-shape", lambda e: Gaussian(G_MEAN, [[1.0, 0.0, 0.0]]), ValueError, "cov")
case("gaussian-cov-asymmetric", lambda e: Gaussian(G_MEAN, [[1.0, 0.5], [0.0, 1.0]]), ValueError, "cov")
case("gaussian-cov-not-psd", lambda e: Gaussian(G_MEAN, [[1.0, 0.0], [0.0, -1.0]]), ValueError, "cov")
case("gaussian-data-shape", lambda e: Gaussian(G_MEAN, G_COV, data_shape=(3,)), ValueError, "data_shape")
case("gaussian-dtype-str", lambda e: Gaussian(G_MEAN, G_COV, dtype="float64"), TypeError, "dtype", "torch.float64")
case("gaussian-dtype-int", lambda e: Gaussian(G_MEAN, G_COV, dtype=torch.int64), ValueError, "dtype")
case("gaussian-schedule", lambda e: Gaussian(G_MEAN, G_COV, schedule="cosine"), TypeError, "schedule")
case("mixture-weights-nan", lambda e: GaussianMixture([1.0, NAN, 1.0], M8, 0.1), ValueError, "weights")
case("mixture-weights-inf", lambda e: GaussianMixture([1.0, INF, 1.0], M8, 0.1), ValueError, "weights")
case("mixture-weights-negative", lambda e: GaussianMixture([1.0, -1.0, 1.0], M8, 0.1), ValueError, "weights")
case("mixture-weights-zero-sum", lambda e: GaussianMixture([0.0, 0.0, 0.0], M8, 0.1), ValueError, "weights")
case("mixture-weights-count", lambda e: GaussianMixture([1.0, 1.0], M8, 0.1), ValueError, "weights")
case("mixture-means-nan", lambda e: GaussianMixture([1.0] * 3, with_(M8, (1, 0, 0, 0), NAN), 0.1), ValueError, "means")
case("mixture-means-inf", lambda e: GaussianMixture([1.0] * 3, with_(M8, (2, 0, 1, 1), -INF), 0.1), ValueError, "means")
case("mixture-means-1d", lambda e: GaussianMixture([1.0] * 3, [0.0, 1.0, 2.0], 0.1), ValueError, "means")
case("mixture-variances-nan", lambda e: GaussianMixture([1.0] * 3, M8, NAN), ValueError, "variances")
case("mixture-variances-inf", lambda e: GaussianMixture([1.0] * 3, M8, [0.1, INF, 0.1]), ValueError, "variances")
case("mixture-variances-negative", lambda e: GaussianMixture([1.0] * 3, M8, -0.1), ValueError, "variances")
case("mixture-variances-shape", lambda e: GaussianMixture([1.0] * 3, M8, [0.1, 0.1]), ValueError, "variances")
case("mixture-dtype-str", lambda e: GaussianMixture([1.0] * 3, M8, 0.1, dtype="float32"), TypeError, "dtype")
case("classmix-labels-float", lambda e: ClassConditionalMixture(M8, [0.0, 1.0, 1.0]), ValueError, "labels")
case("classmix-labels-negative", lambda e: ClassConditionalMixture(M8, [-1, 0, 1]), ValueError, "labels")
case("classmix-labels-count", lambda e: ClassConditionalMixture(M8, [0, 1]), ValueError, "labels")
case("classmix-n-classes-small", lambda e: ClassConditionalMixture(M8, [0, 1, 2], n_classes=2), ValueError, "n_classes")
case("classmix-empty-class", lambda e: ClassConditionalMixture(M8, [0, 2, 2]), ValueError, "class")
case("classmix-means-nan", lambda e: ClassConditionalMixture(with_(M8, (0, 0, 0, 0), NAN), [0, 1, 2]), ValueError,
     "means")
case("classmix-weights-nan", lambda e: ClassConditionalMixture(M8, [0, 1, 2], weights=[1.0, NAN, 1.0]), ValueError,
     "weights")
case("classmix-variances-inf", lambda e: ClassConditionalMixture(M8, [0, 1, 2], INF), ValueError, "variances")
PANS = torch.zeros(2, 1, 4, 12, dtype=DT)
case("viewmix-panoramas-nan", lambda e: ViewConditionedMixture(with_(PANS, (0, 0, 0, 0), NAN), [1.0, 1.0],
                                                                view_width=4), ValueError, "panoramas")
case("viewmix-weights-nan", lambda e: ViewConditionedMixture(PANS, [1.0, NAN], view_width=4), ValueError, "weights")
case("viewmix-variance-inf", lambda e: ViewConditionedMixture(PANS, [1.0, 1.0], INF, view_width=4), ValueError,
     "variance")
case("viewmix-variance-zero", lambda e: ViewConditionedMixture(PANS, [1.0, 1.0], 0.0, view_width=4), ValueError,
     "variance")
case("viewmix-view-width", lambda e: ViewConditionedMixture(PANS, [1.0, 1.0], view_width=20), ValueError,
     "view_width")
case("scenemix-means-nan", lambda e: SceneMixture(with_(torch.zeros(2, 3, 1, 4, 4), (0, 0, 0, 0, 0), NAN)),
     ValueError, "means")
case("scenemix-variances-nan", lambda e: SceneMixture(torch.zeros(2, 3, 1, 4, 4), variances=NAN), ValueError,
     "variances")
case("clip-lo-inf", lambda e: ClipDenoised(e.gauss, lo=-INF), ValueError, "lo")
case("clip-hi-nan", lambda e: ClipDenoised(e.gauss, hi=NAN), ValueError, "hi")
case("clip-lo-above-hi", lambda e: ClipDenoised(e.gauss, lo=1.0, hi=-1.0), ValueError, "lo")
case("clip-prior-type", lambda e: ClipDenoised("gaussian"), TypeError, "prior")
case("digits-dtype-str", lambda e: load_digits_prior(dtype="float16"), TypeError, "dtype", "torch.float16")
case("digits-dtype-int", lambda e: load_digits_prior(dtype=torch.int32), ValueError, "dtype")
case("digits-resolution", lambda e: load_digits_prior(resolution=10), ValueError, "resolution")
case("digits-batch-size", lambda e: load_digits_prior(batch_size=0), ValueError, "batch_size")
case("objects-dtype-str", lambda e: load_objects_prior(dtype="float32"), TypeError, "dtype")
case("unet-null-label", lambda e: UNetPrior.from_pretrained(shipped_model_path("digits16"), null_label=11),
     ValueError, "null_label")
case("unet-clip-sample", lambda e: UNetPrior.from_pretrained(shipped_model_path("digits16"), clip_sample="yes"),
     TypeError, "clip_sample")
case("shipped-name", lambda e: shipped_model_path("digits17"), ValueError, "name", "digits16")

# ------------------------------------------------------------------------------------------------ priors: inputs
X2 = torch.zeros(3, 2, dtype=DT)
case("eps-x-nan", lambda e: e.gauss.eps(with_(X2, (1, 0), NAN), 1.0), ValueError, "x")
case("eps-x-inf", lambda e: e.gauss.eps(with_(X2, (2, 1), INF), 1.0), ValueError, "x")
case("x0-x-nan", lambda e: e.gauss.x0(with_(X2, (0, 0), NAN), 1.0), ValueError, "x")
case("score-x-nan", lambda e: e.gauss.score(with_(X2, (0, 1), NAN), 1.0), ValueError, "x")
case("eps-x-list", lambda e: e.gauss.eps([[0.0, 0.0]], 1.0), TypeError, "x")
case("eps-x-shape", lambda e: e.gauss.eps(torch.zeros(3, 3, dtype=DT), 1.0), ValueError, "x")
case("eps-x-dtype", lambda e: e.gauss.eps(torch.zeros(3, 2), 1.0), TypeError, "x")
case("eps-sigma-zero", lambda e: e.gauss.eps(X2, 0.0), ValueError, "sigma")
case("eps-sigma-negative", lambda e: e.gauss.eps(X2, -1.0), ValueError, "sigma")
case("eps-sigma-inf", lambda e: e.gauss.eps(X2, INF), ValueError, "sigma")
case("eps-sigma-nan", lambda e: e.gauss.eps(X2, NAN), ValueError, "sigma")
case("eps-sigma-shape", lambda e: e.gauss.eps(X2, torch.ones(2, dtype=DT)), ValueError, "sigma")
case("eps-cond-unconditional", lambda e: e.gauss.eps(X2, 1.0, [0, 1, 2]), ValueError, "cond")
case("eps-guidance-unsupported", lambda e: e.gauss.eps(X2, 1.0, None, 2.0), ValueError, "guidance_scale")
X8 = torch.zeros(2, 1, 8, 8, dtype=DT)
case("classmix-eps-guidance-inf", lambda e: e.ccm.eps(X8, 1.0, [0, 1], INF), ValueError, "guidance_scale")
case("classmix-eps-guidance-nan", lambda e: e.ccm.eps(X8, 1.0, [0, 1], NAN), ValueError, "guidance_scale")
case("classmix-eps-guidance-negative", lambda e: e.ccm.eps(X8, 1.0, [0, 1], -1.0), ValueError, "guidance_scale")
case("classmix-eps-guidance-str", lambda e: e.ccm.eps(X8, 1.0, [0, 1], "3"), TypeError, "guidance_scale")
case("classmix-eps-guidance-bool", lambda e: e.ccm.eps(X8, 1.0, [0, 1], True), TypeError, "guidance_scale")
case("classmix-eps-cond-range", lambda e: e.ccm.eps(X8, 1.0, [0, 3]), ValueError, "cond")
case("classmix-eps-cond-float", lambda e: e.ccm.eps(X8, 1.0, [0.5, 1.0]), ValueError, "cond")
case("classmix-eps-cond-count", lambda e: e.ccm.eps(X8, 1.0, [0]), ValueError, "cond")
case("classmix-eps-x-nan", lambda e: e.ccm.eps(with_(X8, (0, 0, 3, 3), NAN), 1.0, [0, 1]), ValueError, "x")
case("mixture-eps-x-inf", lambda e: e.gmm.eps(with_(X8, (1, 0, 0, 0), INF), 1.0), ValueError, "x")
case("clip-eps-x-nan", lambda e: ClipDenoised(e.gauss).eps(with_(X2, (0, 0), NAN), 1.0), ValueError, "x")
XD = torch.zeros(2, 1, 16, 16)
case("digits-eps-x-nan", lambda e: digits(e).eps(with_(XD, (0, 0, 1, 1), NAN).float(), 1.0, [1, 2]), ValueError,
     "x")
case("digits-eps-guidance-inf", lambda e: digits(e).eps(XD, 1.0, [1, 2], INF), ValueError, "guidance_scale")
case("digits-eps-cond-range", lambda e: digits(e).eps(XD, 1.0, [1, 11]), ValueError, "cond")
case("digits-eps-cond-text", lambda e: digits(e).eps(XD, 1.0, ["a 1", "a 2"]), TypeError, "cond")

# ------------------------------------------------------------------------------------------------ diffreps
CAMS = cameras_on_sphere(4)
case("siren-omega-inf", lambda e: SirenImage(8, 1, omega_0=INF), ValueError, "omega_0")
case("siren-omega-nan", lambda e: SirenImage(8, 1, omega_0=NAN), ValueError, "omega_0")
case("siren-omega-zero", lambda e: SirenImage(8, 1, omega_0=0.0), ValueError, "omega_0")
case("siren-omega-negative", lambda e: SirenImage(8, 1, omega_0=-30.0), ValueError, "omega_0")
case("siren-omega-str", lambda e: SirenImage(8, 1, omega_0="30"), TypeError, "omega_0")
case("siren-resolution", lambda e: SirenImage(0, 1), ValueError, "resolution")
case("siren-channels", lambda e: SirenImage(8, 0), ValueError, "channels")
case("siren-hidden", lambda e: SirenImage(8, 1, hidden=0), ValueError, "hidden")
case("panorama-omega-inf", lambda e: SirenPanorama(8, 16, 8, omega_0=INF), ValueError, "omega_0")
case("panorama-view-conditioned-str", lambda e: SirenPanorama(8, 16, 8, view_conditioned="no"), TypeError,
     "view_conditioned")
case("panorama-height", lambda e: SirenPanorama(0, 16, 8), ValueError, "height")
case("panorama-view-width", lambda e: SirenPanorama(8, 16, 32), ValueError, "view_width")
case("panorama-stride", lambda e: SirenPanorama(8, 16, 8, stride=0), ValueError, "stride")
case("panorama-canvas", lambda e: Panorama(Warp2D(), 1), TypeError, "canvas")
case("panorama-wrap-str", lambda e: Panorama(Identity((1, 4, 12)), 4, wrap="yes"), TypeError, "wrap")
case("nerf-density-shift-nan", lambda e: VoxelNeRF(CAMS, 4, grid=4, density_shift=NAN), ValueError, "density_shift")
case("nerf-density-shift-inf", lambda e: VoxelNeRF(CAMS, 4, grid=4, density_shift=INF), ValueError, "density_shift")
case("nerf-init-density-nan", lambda e: VoxelNeRF(CAMS, 4, grid=4, init_density=NAN), ValueError, "init_density")
case("nerf-init-features-inf", lambda e: VoxelNeRF(CAMS, 4, grid=4, init_features=INF), ValueError, "init_features")
case("nerf-bbox-inf", lambda e: VoxelNeRF(CAMS, 4, grid=4, bbox_half=INF), ValueError, "bbox_half")
case("nerf-background-nan", lambda e: VoxelNeRF(CAMS, 4, grid=4, background=[0.0, NAN, 0.0]), ValueError,
     "background")
case("nerf-background-str", lambda e: VoxelNeRF(CAMS, 4, grid=4, background="white"), ValueError, "background")
case("nerf-cameras-empty", lambda e: VoxelNeRF([], 4, grid=4), ValueError, "cameras")
case("nerf-camera-inside", lambda e: VoxelNeRF([Camera(radius=1.0)], 4, grid=4), ValueError, "cameras[0]")
case("nerf-camera-type", lambda e: VoxelNeRF([(0.0, 0.0)], 4, grid=4), TypeError, "cameras[0]")
case("nerf-grid", lambda e: VoxelNeRF(CAMS, 4, grid=1), ValueError, "grid")
case("nerf-output", lambda e: VoxelNeRF(CAMS, 4, grid=4, output="rgb"), ValueError, "output")
case("nerf-view-conds", lambda e: VoxelNeRF(CAMS, 4, grid=4, view_conds="text"), ValueError, "view_conds")
case("nerf-view-conds-count", lambda e: VoxelNeRF(CAMS, 4, grid=4, view_conds=[0, 1]), ValueError, "view_conds")
case("camera-radius-inf", lambda e: Camera(radius=INF), TypeError, "radius")
case("camera-azimuth-nan", lambda e: Camera(azimuth=NAN), TypeError, "azimuth")
case("camera-fov", lambda e: Camera(fov=180.0), ValueError, "fov")
case("camera-elevation", lambda e: Camera(elevation=90.0), ValueError, "elevation")
case("cameras-azimuths-zero", lambda e: cameras_on_sphere(0), ValueError, "azimuths")
case("cameras-azimuths-bool", lambda e: cameras_on_sphere(True), TypeError, "azimuths")
case("cameras-radius-nan", lambda e: cameras_on_sphere(4, radius=NAN), TypeError, "radius")
case("cameras-elevations-inf", lambda e: cameras_on_sphere(4, [0.0, INF]), TypeError, "elevation")
case("linear-nan", lambda e: Linear([[1.0, NAN], [0.0, 1.0]]), ValueError, "A")
case("linear-inf", lambda e: Linear([[INF, 0.0]]), ValueError, "A")
case("linear-1d", lambda e: Linear([1.0, 2.0]), ValueError, "A")
case("warp-s1-zero", lambda e: Warp2D(s1=0.0), ValueError, "s1")
case("warp-phi-nan", lambda e: Warp2D(phi=NAN), ValueError, "phi")
case("warp-s2-inf", lambda e: Warp2D(s2=INF), ValueError, "s2")
case("identity-shape", lambda e: Identity((0, 2)), ValueError, "shape")


# ------------------------------------------------------------------------------------------------ samplers
METHODS = ["reference", "ddr", "sjc", "sds", "sdi"]
DIFFREP_METHODS = ["ddr", "sjc", "sds", "sdi"]


def run(method, prior, rep, **kw):
    kw.setdefault("steps", 2)
    kw.setdefault("n", 2)
    kw.setdefault("progress", False)
    return dl.sample(method, prior, rep, **kw)


def toy(e):
    return e.gauss, e.warp


for m in METHODS:
    case(f"{m}-seed-huge", lambda e, m=m: run(m, *toy(e), seed=2**70), ValueError, "seed", "2**64", xfail=SETUP)
    case(f"{m}-seed-negative", lambda e, m=m: run(m, *toy(e), seed=-1), ValueError, "seed", xfail=SETUP)
    case(f"{m}-seed-float", lambda e, m=m: run(m, *toy(e), seed=1.5), TypeError, "seed")
    case(f"{m}-seed-str", lambda e, m=m: run(m, *toy(e), seed="0"), TypeError, "seed")
    case(f"{m}-seed-and-generator", lambda e, m=m: run(m, *toy(e), seed=0, generator=torch.Generator()), ValueError,
         "generator")
    case(f"{m}-generator-type", lambda e, m=m: run(m, *toy(e), generator=0), TypeError, "generator")
    case(f"{m}-guidance-inf", lambda e, m=m: run(m, e.ccm, e.siren, cond=0, guidance_scale=INF), ValueError,
         "guidance_scale")
    case(f"{m}-guidance-nan", lambda e, m=m: run(m, e.ccm, e.siren, cond=0, guidance_scale=NAN), ValueError,
         "guidance_scale")
    case(f"{m}-guidance-unsupported", lambda e, m=m: run(m, *toy(e), guidance_scale=2.0), ValueError,
         "guidance_scale")
    case(f"{m}-return-trace-str", lambda e, m=m: run(m, *toy(e), return_trace="no"), TypeError, "return_trace",
         xfail=SETUP)
    case(f"{m}-progress-str", lambda e, m=m: run(m, *toy(e), progress="yes"), TypeError, "progress")
    case(f"{m}-callback", lambda e, m=m: run(m, *toy(e), callback=3), TypeError, "callback")
    case(f"{m}-steps-zero", lambda e, m=m: run(m, *toy(e), steps=0), ValueError, "steps")
    case(f"{m}-n-zero", lambda e, m=m: run(m, *toy(e), n=0), ValueError, "n")
    case(f"{m}-cond-unconditional", lambda e, m=m: run(m, *toy(e), cond=1), ValueError, "cond")
    case(f"{m}-cond-range", lambda e, m=m: run(m, e.ccm, e.siren, cond=7), ValueError, "cond")
    case(f"{m}-view-conditioned-class-prior", lambda e, m=m: run(m, e.ccm, e.pano, cond=None), ValueError,
         "view_conditioned", xfail=SETUP)
    case(f"{m}-view-shape", lambda e, m=m: run(m, e.gmm, e.warp), ValueError, "diffrep")
    case(f"{m}-prior-type", lambda e, m=m: run(m, "gaussian", e.warp), TypeError, "prior")
    case(f"{m}-unknown-option", lambda e, m=m: run(m, *toy(e), stpes=5), TypeError, "stpes")

for m in DIFFREP_METHODS:
    case(f"{m}-params0-nan", lambda e, m=m: run(m, *toy(e), params0={"theta": torch.tensor([[0.0, NAN]] * 2,
                                                                                           dtype=DT)}),
         ValueError, "params0")
    case(f"{m}-params0-key", lambda e, m=m: run(m, *toy(e), params0={"phi": torch.zeros(2, 2, dtype=DT)}), ValueError,
         "params0")
    case(f"{m}-diffrep-missing", lambda e, m=m: run(m, e.gauss, None), TypeError, "diffrep")
    # checkpoints: nothing a user has is overwritten, a checkpoint knows its run (the lead's run loop)
    case(f"{m}-checkpoint-overwrites-file", lambda e, m=m: run(m, *toy(e), checkpoint_path=e.file()), ValueError,
         "checkpoint_path", "my_notes.txt", xfail=CKPT)
    case(f"{m}-checkpoint-missing-dir", lambda e, m=m: run(m, *toy(e), checkpoint_path=e.tmp / "missing_dir_xyz" / "ck.pt"),
         ValueError, "checkpoint_path", "missing_dir_xyz", xfail=CKPT)
    case(f"{m}-resume-text-file", lambda e, m=m: run(m, *toy(e), resume_from=e.file()), ValueError, "resume_from",
         "my_notes.txt", xfail=CKPT)
    case(f"{m}-resume-empty-file", lambda e, m=m: run(m, *toy(e), resume_from=e.file("empty.pt", "")), ValueError,
         "resume_from", "empty.pt", xfail=CKPT)
    case(f"{m}-resume-foreign-pickle",
         lambda e, m=m: (torch.save({101: "x"}, e.tmp / "foreign.pt"), run(m, *toy(e), resume_from=e.tmp / "foreign.pt")),
         ValueError, "resume_from", "foreign.pt", xfail=CKPT)
    case(f"{m}-resume-missing", lambda e, m=m: run(m, *toy(e), resume_from=e.tmp / "gone.pt"), ValueError,
         "resume_from", xfail=None if m == "ddr" else CKPT)

    def resume_other(e, m=m, **other):
        run(m, *toy(e), seed=0, checkpoint_path=e.tmp / "run.pt")
        e.reset()  # the first, good run did work; the resume must not
        run(m, *toy(e), resume_from=e.tmp / "run.pt", **{"seed": 0, **other})

    case(f"{m}-resume-other-seed", lambda e, f=resume_other: f(e, seed=1), ValueError, "resume_from", "seed",
         xfail=CKPT)
    case(f"{m}-resume-other-prior", lambda e, m=m: (
        run(m, *toy(e), seed=0, checkpoint_path=e.tmp / "run.pt"), e.reset(),
        run(m, Gaussian([0.0, 0.0], torch.eye(2), dtype=DT), e.warp, resume_from=e.tmp / "run.pt")),
         ValueError, "resume_from", "prior", xfail=CKPT)
    case(f"{m}-resume-other-diffrep", lambda e, m=m: (
        run(m, *toy(e), seed=0, checkpoint_path=e.tmp / "run.pt"), e.reset(),
        run(m, e.gauss, e.linear, resume_from=e.tmp / "run.pt")), ValueError, "resume_from", "diffrep", xfail=CKPT)

case("ddr-solver", lambda e: run("ddr", *toy(e), solver="lsqr"), ValueError, "solver", "cg")
case("ddr-convention", lambda e: run("ddr", *toy(e), convention="C"), ValueError, "convention")
case("ddr-damping-negative", lambda e: run("ddr", *toy(e), damping=-1.0), ValueError, "damping")
case("ddr-damping-nan", lambda e: run("ddr", *toy(e), damping=NAN), ValueError, "damping")
case("ddr-solver-iters", lambda e: run("ddr", *toy(e), solver_iters=0), ValueError, "solver_iters")
case("ddr-fit-iters", lambda e: run("ddr", *toy(e), fit_iters=0), ValueError, "fit_iters")
case("ddr-repaint-iters", lambda e: run("ddr", *toy(e), repaint_iters=0), ValueError, "repaint_iters")
case("ddr-jump", lambda e: run("ddr", *toy(e), jump=0), ValueError, "jump")
case("ddr-eta", lambda e: run("ddr", *toy(e), eta=1.5), ValueError, "eta")
case("ddr-step-eta", lambda e: run("ddr", *toy(e), step_eta=2.0), ValueError, "step_eta")
case("ddr-view-noise", lambda e: run("ddr", *toy(e), view_noise="joint"), ValueError, "view_noise")
case("ddr-solver-lr-zero", lambda e: run("ddr", *toy(e), solver="gd", solver_lr=0.0), ValueError, "solver_lr")
case("ddr-solver-lr-inf", lambda e: run("ddr", *toy(e), solver="gd", solver_lr=INF), ValueError, "solver_lr",
     xfail=LR)
case("ddr-preconditioner", lambda e: run("ddr", *toy(e), preconditioner="ilu"), ValueError, "preconditioner")
case("ddr-checkpoint-every", lambda e: run("ddr", *toy(e), checkpoint_every=0), ValueError, "checkpoint_every")
case("ddr-resume-other-solver", lambda e: (
    run("ddr", *toy(e), seed=0, checkpoint_path=e.tmp / "run.pt"), e.reset(),
    run("ddr", *toy(e), seed=0, solver="dense", resume_from=e.tmp / "run.pt")), ValueError, "resume_from", "solver",
     xfail=CKPT)
case("ddr-adam-diverges", lambda e: run("ddr", e.gauss, e.linear, steps=20, n=4, solver="adam", solver_lr=1e9),
     dl.DivergenceError, "solver_lr", xfail=BOUND, before_work=False)
case("sjc-lr-zero", lambda e: run("sjc", *toy(e), lr=0.0), ValueError, "lr")
case("sjc-lr-nan", lambda e: run("sjc", *toy(e), lr=NAN), ValueError, "lr")
case("sjc-lr-inf", lambda e: run("sjc", *toy(e), lr=INF), ValueError, "lr", xfail=LR)
case("sjc-optimizer", lambda e: run("sjc", *toy(e), optimizer="sgd2"), ValueError, "optimizer")
case("sjc-paas-str", lambda e: run("sjc", *toy(e), paas="yes"), TypeError, "paas")
case("sjc-sigmas", lambda e: run("sjc", *toy(e), sigmas="cosine"), ValueError, "sigmas")
case("sjc-lr-diverges", lambda e: run("sjc", e.gauss, e.linear, steps=20, n=4, lr=1e8), dl.DivergenceError, "lr",
     xfail=BOUND, before_work=False)
case("sds-lr-negative", lambda e: run("sds", *toy(e), lr=-0.1), ValueError, "lr")
case("sds-weighting", lambda e: run("sds", *toy(e), weighting="snr"), ValueError, "weighting")
case("sds-t-range-order", lambda e: run("sds", *toy(e), t_range=(0.9, 0.1)), ValueError, "t_range")
case("sds-t-range-str", lambda e: run("sds", *toy(e), t_range="wide"), ValueError, "t_range")
case("sds-lr-diverges", lambda e: run("sds", e.gauss, e.linear, steps=20, n=4, lr=1e9), dl.DivergenceError, "lr",
     xfail=BOUND, before_work=False)
case("sdi-inversion-steps", lambda e: run("sdi", *toy(e), inversion_steps=0), ValueError, "inversion_steps")
case("sdi-tau", lambda e: run("sdi", *toy(e), tau=-1.0), ValueError, "tau")
case("sdi-inversion-eta", lambda e: run("sdi", *toy(e), inversion_eta=2.0), ValueError, "inversion_eta")
case("sdi-inversion-guidance", lambda e: run("sdi", *toy(e), inversion_guidance_scale="flip"), ValueError,
     "inversion_guidance_scale")
case("sdi-lr-diverges", lambda e: run("sdi", e.gauss, e.linear, steps=20, n=4, lr=1e9), dl.DivergenceError, "lr",
     xfail=BOUND, before_work=False)
case("reference-eta", lambda e: run("reference", *toy(e), eta=1.5), ValueError, "eta")
case("reference-params0", lambda e: run("reference", *toy(e), params0={"theta": torch.zeros(2, 2, dtype=DT)}),
     ValueError, "params0")
case("sample-unknown-method", lambda e: dl.sample("ddim", *toy(e), steps=2), ValueError, "method", "ddr")

# ------------------------------------------------------------------------------------------------ pullback.solve
P2 = {"theta": torch.zeros(2, 2, dtype=DT)}
V2 = torch.ones(2, 1, 2, dtype=DT)


def solve(e, v=V2, params=None, **kw):
    return pullback.solve(e.warp.render, P2 if params is None else params, v, **kw)


case("solve-solver", lambda e: solve(e, solver="lsqr"), ValueError, "solver", "cg")
case("solve-kernel-missing", lambda e: solve(e, solver="kernel"), ValueError, "kernel")
case("solve-typo-option", lambda e: solve(e, itres=1), TypeError, "itres", xfail=SOLVE)
case("solve-iters-zero", lambda e: solve(e, iters=0), ValueError, "iters", xfail=SOLVE)
case("solve-damping-negative", lambda e: solve(e, solver="dense", damping=-1.0), ValueError, "damping", xfail=SOLVE)
case("solve-lr-nan", lambda e: solve(e, solver="gd", lr=NAN), ValueError, "lr", xfail=SOLVE)
case("solve-v-shape", lambda e: solve(e, v=torch.ones(2, 3, dtype=DT)), ValueError, "v", xfail=SOLVE)
case("solve-params-type", lambda e: solve(e, params=[torch.zeros(2, 2, dtype=DT)]), TypeError, "params", xfail=SOLVE)

# ------------------------------------------------------------------------------------------------ model paths
for loader_name, loader in [("unet", UNetPrior.from_pretrained), ("sd", StableDiffusionPrior.from_pretrained)]:
    case(f"{loader_name}-path-dot", lambda e, f=loader: f("./no/such/model"), ValueError, "./no/such/model")
    case(f"{loader_name}-path-absolute", lambda e, f=loader: f(str(e.tmp / "missing")), ValueError, "missing")
    case(f"{loader_name}-path-home", lambda e, f=loader: f("~/no-such-model-dir-xyz"), ValueError,
         "~/no-such-model-dir-xyz")
    case(f"{loader_name}-path-two-separators", lambda e, f=loader: f("models/digits/v2"), ValueError,
         "models/digits/v2")
    case(f"{loader_name}-path-trailing-separator", lambda e, f=loader: f("mymodel/"), ValueError, "mymodel/")
    case(f"{loader_name}-path-mistyped-one-slash", lambda e, f=loader: (
        (e.tmp / "models").mkdir(), os.chdir(e.tmp), f("models/digits16x")), ValueError, "models/digits16x",
         "looks like a local path")
    case(f"{loader_name}-path-pathlike", lambda e, f=loader: f(e.tmp / "nope"), ValueError, "nope")
    case(f"{loader_name}-path-file", lambda e, f=loader: f(e.file("weights.safetensors", "")), ValueError,
         "weights.safetensors", "is a file")
    case(f"{loader_name}-path-type", lambda e, f=loader: f(3), TypeError, "model_id_or_path")
    case(f"{loader_name}-path-empty", lambda e, f=loader: f(""), TypeError, "model_id_or_path")
    case(f"{loader_name}-hub-offline", lambda e, f=loader: f("diffrep-lite-tests/no-such-model"), ValueError,
         "diffrep-lite-tests/no-such-model", "not available offline", "HF_HUB_OFFLINE", "local folder")
    case(f"{loader_name}-hub-local-files-only", lambda e, f=loader: f("diffrep-lite-tests/no-such-model",
                                                                        local_files_only=True),
         ValueError, "diffrep-lite-tests/no-such-model", "not available offline", "local_files_only")
    case(f"{loader_name}-hub-no-network", lambda e, f=loader: (e.online("http://127.0.0.1:9"),
                                                                f("diffrep-lite-tests/no-such-model")),
         ValueError, "diffrep-lite-tests/no-such-model", "not available offline", "cannot be reached", "local folder")
    case(f"{loader_name}-hub-no-dns", lambda e, f=loader: (e.online("https://no-such-host.invalid"),
                                                            f("diffrep-lite-tests/no-such-model")),
         ValueError, "diffrep-lite-tests/no-such-model", "not available offline", "local folder")
case("unet-folder-no-config", lambda e: UNetPrior.from_pretrained(e.tmp), ValueError, "config.json")
case("sd-folder-incomplete", lambda e: ((e.tmp / "unet").mkdir(), StableDiffusionPrior.from_pretrained(e.tmp)),
     ValueError, "model_index.json")
case("objects-path-missing", lambda e: load_objects_prior(path="./objects16-typo"), ValueError, "./objects16-typo")
case("unet-local-files-only-type", lambda e: UNetPrior.from_pretrained("a/b", local_files_only="yes"), TypeError,
     "local_files_only")


# ------------------------------------------------------------------------------------------------ the test
@pytest.fixture
def env(tmp_path, monkeypatch):
    """A counted environment; diffusers' loaders are counted too, and the hub is offline unless a case says
    otherwise (``env.online(endpoint)`` points the hub at an endpoint that cannot answer)."""
    import diffusers
    import huggingface_hub.constants as hc

    e = Env(tmp_path)
    monkeypatch.chdir(os.getcwd())  # cases may chdir; restored afterwards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def online(endpoint):
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hc, "ENDPOINT", endpoint)

    e.online = online
    for cls in (diffusers.UNet2DModel, diffusers.StableDiffusionPipeline):
        real = cls.from_pretrained

        def counted(*a, _real=real, **k):
            e.calls["load"] += 1
            return _real(*a, **k)

        monkeypatch.setattr(cls, "from_pretrained", counted)
    return e


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.mark.parametrize("c", _params())
def test_bad_input(env, c):
    t0 = time.perf_counter()
    with pytest.raises(c.exc) as info:
        c.call(env)
    msg = str(info.value)
    for name in c.names:
        assert name in msg, f"{c.id}: message {msg!r} does not name {name!r}"
    if c.before_work:
        assert env.calls == {"prior": 0, "render": 0, "load": 0}, f"{c.id}: work was done before the error: {env.calls}"
    assert time.perf_counter() - t0 < 15.0, f"{c.id}: the error took {time.perf_counter() - t0:.1f} s"


def test_the_table_is_large_and_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 150


# ------------------------------------------------------------------------------------------------ the validators
def test_check_view_conditioning_names_view_conditioned(tmp_path):
    e = Env(tmp_path)
    with pytest.raises(ValueError, match="view_conditioned") as info:
        validation.check_view_conditioning(e.ccm, e.pano)
    assert "[0, 4, 8]" in str(info.value)
    with pytest.raises(ValueError, match="view_conditioned"):  # the digits model reads offsets as digits
        validation.check_view_conditioning(digits(e), SirenPanorama(16, 24, 16, stride=4))
    # allowed: no view conditions, a prior that takes them, a prior that decides itself
    validation.check_view_conditioning(e.ccm, SirenPanorama(8, 16, 8, stride=4, view_conditioned=False))
    validation.check_view_conditioning(e.ccm, e.siren)
    validation.check_view_conditioning(ClipDenoised(e.gmm), e.pano)
    with pytest.raises(ValueError, match="view_conditioned"):
        validation.check_view_conditioning(ClipDenoised(e.ccm), e.pano)
    objects = load_objects_prior()
    assert objects.view_cond_types == (int,) and digits(e).view_cond_types == ()
    validation.check_view_conditioning(objects, VoxelNeRF(cameras_on_sphere(4), 16, grid=4, view_conds=[0, 2, 4, 6]))
    assert e.calls == {"prior": 0, "render": 0, "load": 0}


def test_check_sampler_options():
    validation.check_sampler_options(None, None, seed=2**64 - 1, return_trace=False)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\), got 1180591620717411303424"):
        validation.check_sampler_options(None, None, seed=2**70)
    with pytest.raises(ValueError, match="seed"):
        validation.check_sampler_options(None, None, seed=-1)
    with pytest.raises(TypeError, match="return_trace must be True or False, got str 'no'"):
        validation.check_sampler_options(None, None, seed=0, return_trace="no")
    with pytest.raises(TypeError, match="paas"):
        validation.check_sampler_options(None, None, paas=1)


def test_check_real_bounds():
    assert validation.check_real(3, "k", low=0, low_open=True) == 3.0
    assert validation.check_real(None, "k", allow_none=True) is None
    for bad, exc in [(0.0, ValueError), (-1.0, ValueError), (INF, ValueError), (NAN, ValueError), ("1", TypeError),
                     (True, TypeError), (None, TypeError)]:
        with pytest.raises(exc, match="k must be a finite number > 0"):
            validation.check_real(bad, "k", low=0, low_open=True)
    with pytest.raises(ValueError, match="k must be a finite number >= 0 and <= 1"):
        validation.check_real(1.5, "k", low=0, high=1)


def test_hub_probe_is_fast_without_network(monkeypatch):
    """No network: the hub id fails within the probe's timeout (not after a minute of DNS retries)."""
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "ENDPOINT", "http://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="not available offline"):
        validation.resolve_model_source("someone/some-model", timeout=2.0)
    assert time.perf_counter() - t0 < 3.0
