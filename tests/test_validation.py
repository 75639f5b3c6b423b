"""Bad input raises ValueError/TypeError naming the argument, before any sampling work.

"Before any work" is checked with a prior and a diffrep that count their calls: a rejected call must
leave both counters at zero (no prior evaluation, no render).
"""
from __future__ import annotations

import math

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite.diffreps import Warp2D
from diffrep_lite.priors import Gaussian

DT = torch.float64


class CountingGaussian(Gaussian):
    calls = 0

    def _eps(self, x, sigma, cond, guidance_scale):
        type(self).calls += 1
        return super()._eps(x, sigma, cond, guidance_scale)


class CountingWarp(Warp2D):
    calls = 0

    def render(self, params, views=None):
        type(self).calls += 1
        return super().render(params, views)


@pytest.fixture
def toy():
    CountingGaussian.calls = 0
    CountingWarp.calls = 0
    prior = CountingGaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]], dtype=DT)
    yield prior, CountingWarp()
    # Every test using this fixture expects the call to be rejected before any work.
    assert CountingGaussian.calls == 0, "the prior was evaluated before the error"
    assert CountingWarp.calls == 0, "the diffrep rendered before the error"


def good_params(n=4, dtype=DT):
    return {"theta": torch.zeros(n, 2, dtype=dtype)}


ALL = ["reference", "ddr", "sjc", "sds"]
DIFFREP = ["ddr", "sjc", "sds"]


def raises(exc, name, method, prior, rep, **kw):
    """``sample`` must raise ``exc`` with a message that contains the argument's ``name``."""
    kw.setdefault("progress", False)
    with pytest.raises(exc) as info:
        dl.sample(method, prior, rep, **kw)
    assert name in str(info.value), f"message {str(info.value)!r} does not name {name!r}"
    return str(info.value)


# ------------------------------------------------------------------------------ shared arguments
@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("steps, exc", [(0, ValueError), (-5, ValueError), (2000, ValueError), (2.5, TypeError),
                                        ("10", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_steps(toy, method, steps, exc):
    raises(exc, "steps", method, *toy, steps=steps, n=4)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_bad_n(toy, method, n, exc):
    raises(exc, "n", method, *toy, steps=5, n=n)


def test_unknown_method_lists_the_choices(toy):
    msg = raises(ValueError, "method", "ddim", *toy, steps=5)
    assert all(m in msg for m in ALL)


@pytest.mark.parametrize("method", DIFFREP)
@pytest.mark.parametrize("params0, exc", [
    ({"theta": torch.zeros(4, 3, dtype=DT)}, ValueError),            # wrong per-sample shape
    ({"theta": torch.zeros(4, dtype=DT)}, ValueError),               # missing the batch dimension
    ({"phi": torch.zeros(4, 2, dtype=DT)}, ValueError),              # wrong key
    ({"theta": [[0.0, 0.0]]}, TypeError),                            # not a tensor
    (torch.zeros(4, 2, dtype=DT), TypeError),                        # not a dict
    ({"theta": torch.zeros(4, 2, dtype=torch.float32)}, TypeError),  # float32 params, float64 prior
    ({"theta": torch.tensor([[0.0, math.nan]] * 4, dtype=DT)}, ValueError),
    ({"theta": torch.tensor([[0.0, math.inf]] * 4, dtype=DT)}, ValueError),
], ids=["shape", "no-batch", "key", "list", "tensor", "dtype", "nan", "inf"])
def test_bad_params0(toy, method, params0, exc):
    raises(exc, "params0", method, *toy, steps=5, params0=params0)


@pytest.mark.parametrize("method", DIFFREP)
def test_params0_batch_must_match_n(toy, method):
    msg = raises(ValueError, "params0", method, *toy, steps=5, n=3, params0=good_params(4))
    assert "n=3" in msg


def test_reference_rejects_params0(toy):
    raises(ValueError, "params0", "reference", *toy, steps=5, params0=good_params(4))


@pytest.mark.parametrize("method", DIFFREP)
def test_device_mismatch(method):
    # A prior on another device (the "meta" device stands in for a GPU on CPU-only machines) and CPU params0.
    prior = Gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]], dtype=DT, device="meta")
    raises(TypeError, "params0", method, prior, Warp2D(), steps=5, params0=good_params(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a real device mismatch")
@pytest.mark.parametrize("method", DIFFREP)
def test_device_mismatch_cuda(method):
    prior = Gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]], dtype=DT, device="cuda")
    raises(TypeError, "params0", method, prior, Warp2D(), steps=5, params0=good_params(4))
    raises(TypeError, "generator", method, prior, Warp2D(), steps=5, n=4, generator=torch.Generator())


@pytest.mark.parametrize("method", ALL)
def test_diffrep_view_shape_must_match_prior_data_shape(method):
    prior = Gaussian([0.0, 0.0, 0.0], torch.eye(3), dtype=DT)
    raises(ValueError, "diffrep", method, prior, Warp2D(), steps=5, n=4)


@pytest.mark.parametrize("method", ALL)
def test_wrong_prior_and_diffrep_types(toy, method):
    prior, rep = toy
    raises(TypeError, "prior", method, "gaussian", rep, steps=5)
    raises(TypeError, "diffrep", method, prior, torch.nn.Linear(2, 2), steps=5)


@pytest.mark.parametrize("method", DIFFREP)
def test_missing_diffrep(toy, method):
    raises(TypeError, "diffrep", method, toy[0], None, steps=5)


@pytest.mark.parametrize("method", ALL)
def test_guidance_for_analytic_prior(toy, method):
    raises(ValueError, "guidance_scale", method, *toy, steps=5, guidance_scale=7.5)
    raises(ValueError, "guidance_scale", method, *toy, steps=5, guidance_scale=-1.0)
    raises(TypeError, "guidance_scale", method, *toy, steps=5, guidance_scale="high")


@pytest.mark.parametrize("method", ALL)
def test_cond_for_unconditional_prior(toy, method):
    raises(ValueError, "cond", method, *toy, steps=5, n=2, cond=3)
    raises(ValueError, "cond", method, *toy, steps=5, n=2, cond=[0, 1, 2])


@pytest.mark.parametrize("method", ALL)
def test_bad_seed_generator_progress_callback(toy, method):
    raises(TypeError, "seed", method, *toy, steps=5, seed=1.5)
    raises(ValueError, "generator", method, *toy, steps=5, seed=1, generator=torch.Generator())
    raises(TypeError, "generator", method, *toy, steps=5, generator=123)
    raises(TypeError, "progress", method, *toy, steps=5, progress="yes")
    raises(TypeError, "callback", method, *toy, steps=5, callback="print")


# ------------------------------------------------------------------------------ method-specific
@pytest.mark.parametrize("kw, exc, name", [
    (dict(solver="qr"), ValueError, "solver"),
    (dict(convention="C"), ValueError, "convention"),
    (dict(eta=-0.1), ValueError, "eta"),
    (dict(eta=1.5), ValueError, "eta"),
    (dict(step_eta=-0.1), ValueError, "step_eta"),
    (dict(step_eta=1.5), ValueError, "step_eta"),
    (dict(step_eta="ddpm"), ValueError, "step_eta"),
    (dict(step_eta=0.5, convention="A"), ValueError, "step_eta"),
    (dict(solver_iters=0), ValueError, "solver_iters"),
    (dict(fit_iters=0), ValueError, "fit_iters"),
    (dict(fit_iters=1.0), TypeError, "fit_iters"),
    (dict(repaint_iters=0), ValueError, "repaint_iters"),
    (dict(damping=-1.0), ValueError, "damping"),
    (dict(damping="none"), TypeError, "damping"),
    (dict(solver_lr=0.0), ValueError, "solver_lr"),
    (dict(view_noise="canvas"), ValueError, "view_noise"),
    (dict(view_noise="shared"), ValueError, "view_noise"),  # the toy diffrep has no shared noise field
    (dict(preconditioner="ilu"), ValueError, "preconditioner"),
    (dict(preconditioner="jacobi", solver="adam"), ValueError, "preconditioner"),
    (dict(preconditioner="kfac"), ValueError, "preconditioner"),  # Warp2D is not a network of nn.Linear layers
])
def test_ddr_options(toy, kw, exc, name):
    msg = raises(exc, name, "ddr", *toy, steps=5, **kw)
    if name in ("solver", "convention") or kw.get("view_noise") == "canvas" or kw.get("preconditioner") == "ilu":
        assert "one of" in msg  # lists the allowed values


@pytest.mark.parametrize("eta", [-0.5, 2.0])
def test_reference_eta(toy, eta):
    raises(ValueError, "eta", "reference", *toy, steps=5, eta=eta)


@pytest.mark.parametrize("method, kw, exc, name", [
    ("sjc", dict(optimizer="lbfgs"), ValueError, "optimizer"),
    ("sjc", dict(lr=0.0), ValueError, "lr"),
    ("sjc", dict(sigmas="linear"), ValueError, "sigmas"),
    ("sjc", dict(paas=1), TypeError, "paas"),
    ("sds", dict(optimizer="lbfgs"), ValueError, "optimizer"),
    ("sds", dict(lr=-1.0), ValueError, "lr"),
    ("sds", dict(weighting="snr"), ValueError, "weighting"),
    ("sds", dict(t_range=(0.5, 0.2)), ValueError, "t_range"),
    ("sds", dict(t_range=0.5), ValueError, "t_range"),
])
def test_distillation_options(toy, method, kw, exc, name):
    raises(exc, name, method, *toy, steps=5, **kw)


def test_valid_call_does_work():
    # The counters do move on a valid call (so the zero counts above mean something).
    CountingGaussian.calls = 0
    CountingWarp.calls = 0
    prior = CountingGaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 0.5]], dtype=DT)
    dl.sample("ddr", prior, CountingWarp(), steps=3, n=2, progress=False)
    assert CountingGaussian.calls == 3 and CountingWarp.calls > 0
