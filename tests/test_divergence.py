"""Divergence guards: a sampler whose render, parameters or increment turn NaN/inf stops at once with an
error naming the method, the step or level, sigma and the setting most likely at fault.

The three diverging calls are the issue's: ``sjc`` with ``lr=1e8``, ``sds`` with ``lr=1e9`` and ``ddr`` with
``solver="gd", solver_lr=1e9``. On this small SIREN and mixture prior all three returned all-NaN samples
without a word before the guards (measured: finite fraction 0.0 for each, 20 steps, 4 samples).
"""
from __future__ import annotations

import re

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite.diffreps import SirenImage
from diffrep_lite.priors import GaussianMixture
from diffrep_lite.samplers.checkpoint import CheckpointPlan
from diffrep_lite.samplers.common import setup
from diffrep_lite.samplers.loop import State

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(0)
    prior = GaussianMixture(torch.ones(3), torch.randn(3, 1, 8, 8, generator=g), 0.01)
    return prior, SirenImage(8, 1, hidden=32, hidden_layers=2)


@pytest.mark.parametrize("method, kw, setting, when", [
    ("sjc", dict(lr=1e8), "lr (the adamax learning rate, now 1e+08)", "step"),
    ("sds", dict(lr=1e9), "lr (the adam learning rate, now 1e+09)", "step"),
    ("sdi", dict(lr=1e9), "lr (the adam learning rate, now 1e+09)", "step"),
    ("ddr", dict(solver="gd", solver_lr=1e9), "solver_lr (the 'gd' step size, now 1e+09)", "level"),
], ids=["sjc", "sds", "sdi", "ddr-gd"])
def test_diverging_run_raises_naming_method_step_sigma_and_setting(toy, method, kw, setting, when):
    prior, rep = toy
    with pytest.raises(dl.DivergenceError) as info:
        dl.sample(method, prior, rep, n=4, seed=0, steps=20, progress=False, **kw)
    msg = str(info.value)
    # non-finite values, or (caught earlier) a render far outside the prior's data range
    assert msg.startswith(f"{method}: non-finite ") or msg.startswith(f"{method}: the render reached |x| = ")
    m = re.search(rf"at {when} (\d+)\b.*\(sigma = ([0-9.e+-]+)", msg)
    assert m, msg
    step, sigma = int(m.group(1)), float(m.group(2))
    assert 0 <= step < 20 and sigma > 0
    assert setting in msg


def test_ddr_divergence_error_is_raised_where_it_happens(toy):
    # The error comes from the level where the increment first turned non-finite: no level runs on NaNs.
    prior, rep = toy
    seen = []
    with pytest.raises(dl.DivergenceError, match=r"at level (\d+)") as info:
        dl.sample("ddr", prior, rep, n=2, seed=0, steps=20, solver="gd", solver_lr=1e9, progress=False,
                  callback=lambda i, info: seen.append((i, all(torch.isfinite(t).all() for t in info["params"].values()))))
    level = int(re.search(r"at level (\d+)", str(info.value)).group(1))
    assert [i for i, _ in seen] == list(range(level))  # every finished level reported, then the error
    assert all(ok for _, ok in seen)


class NaNBelow(GaussianMixture):
    """The mixture's exact denoiser, but NaN below ``sigma_bad`` (a prior that breaks mid-run)."""

    sigma_bad = 1.0

    def _eps(self, x, sigma, cond, guidance_scale):
        e = super()._eps(x, sigma, cond, guidance_scale)
        return torch.where((sigma < self.sigma_bad).reshape(-1, *([1] * (e.ndim - 1))), torch.nan, e)


def test_checkpointed_ddr_keeps_its_last_finite_checkpoint(toy, tmp_path):
    prior, rep = toy
    bad = NaNBelow(prior.weights, prior.means.reshape(3, 1, 8, 8), prior.variances.reshape(3, 1, 8, 8))
    sig = bad.schedule.sigma_grid(10)
    first_bad = int((sig < bad.sigma_bad).nonzero()[0])  # the first level run at sigma < 1
    assert 2 <= first_bad < 10
    ck = tmp_path / "run.pt"
    with pytest.raises(dl.DivergenceError) as info:
        dl.sample("ddr", bad, rep, n=2, seed=0, steps=10, solver_iters=3, progress=False, checkpoint_path=ck)
    msg = str(info.value)
    assert f"at level {first_bad} " in msg and "eps_hat" in msg and "guidance_scale" in msg
    assert f"after level {first_bad}" in msg and str(ck) in msg
    state = torch.load(ck, weights_only=True)
    assert state["step"] == first_bad
    assert all(torch.isfinite(t).all() for t in state["params"].values()) and torch.isfinite(state["eps"]).all()
    # the finite checkpoint belongs to its run: resumed with the same prior it meets the same error at the same
    # level; with another prior (the healthy one) it is refused before any work, naming the prior
    kw = dict(n=2, seed=0, steps=10, solver_iters=3, progress=False)
    with pytest.raises(dl.DivergenceError, match=f"at level {first_bad} "):
        dl.sample("ddr", bad, rep, resume_from=ck, **kw)
    with pytest.raises(ValueError, match="other settings.*prior=NaNBelow"):
        dl.sample("ddr", prior, rep, resume_from=ck, **kw)


def test_reference_names_the_prior(toy):
    prior, _ = toy
    bad = NaNBelow(prior.weights, prior.means.reshape(3, 1, 8, 8), prior.variances.reshape(3, 1, 8, 8))
    with pytest.raises(dl.DivergenceError, match=r"reference: non-finite eps_hat at step \d+ \(sigma = 0\.\d+.*prior"):
        dl.sample("reference", bad, None, n=2, seed=0, steps=10, progress=False)


def test_save_checkpoint_refuses_non_finite_state(tmp_path, toy):
    ck = tmp_path / "c.pt"
    prior, rep = toy
    s = setup(prior, rep, steps=3, n=1, seed=0, generator=None, params0=None, cond=None, guidance_scale=None)
    plan = CheckpointPlan(ck)
    plan.begin(s, 3)
    params = rep.init_params(1)
    plan.save(s, State(x=rep.render(params), params=params), 1)
    bad = {k: t.clone() for k, t in params.items()}
    k0 = next(iter(bad))
    bad[k0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"params\['.*'\] holds NaN or inf"):
        plan.save(s, State(x=rep.render(params), params=bad), 2)
    assert torch.load(ck, weights_only=True)["step"] == 1
