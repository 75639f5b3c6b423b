"""The non-Markovian forward (re-noising) update used by DDR's RePaint jumps (book/forward_update.md).

Monte-Carlo checks use N = 400,000 standard-normal draws in float64. Standard errors: sample mean
1/sqrt(N) = 0.0016, sample variance sqrt(2/N) = 0.0022, sample correlation <= (1 - c^2)/sqrt(N) <= 0.0016.
Tolerances are about 6 standard errors (mean 0.01, variance 0.015, correlation 0.01), so a correct
implementation fails with probability < 1e-8 while a wrong coefficient (e.g. fresh noise, c = 0, or
variance c^2 + 1) is far outside them.
"""
from __future__ import annotations

import math

import pytest
import torch

from diffrep_lite import Schedule, sample
from diffrep_lite.diffreps import Identity, Linear
from diffrep_lite.priors import Gaussian
from diffrep_lite.samplers.ddr import forward_update, jump_correlation
from diffrep_lite.schedule import renoise_coefficient

N = 400_000
TOL_MEAN, TOL_VAR, TOL_CORR = 0.01, 0.015, 0.01
SCHED = Schedule.named("scaled_linear")  # Stable Diffusion's schedule


def _moments(prev, new):
    return float(new.mean()), float(new.var()), float(((prev - prev.mean()) * (new - new.mean())).mean() / (prev.std() * new.std()))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_one_step_variance_one_and_correlation_c(eta):
    sig = SCHED.sigma_grid(25)
    hi, lo = float(sig[10]), float(sig[11])  # jump back up from lo to hi
    c = renoise_coefficient(lo, hi, eta)
    g = torch.Generator().manual_seed(1)
    e = torch.randn(N, generator=g, dtype=torch.float64)
    e2 = forward_update(e, c, g)
    if eta == 0.0:
        assert c == 1.0 and e2 is e  # deterministic DDIM: the noise is reused, nothing is drawn
        return
    assert 0.0 < c < 1.0
    m, v, r = _moments(e, e2)
    assert abs(m) < TOL_MEAN and abs(v - 1) < TOL_VAR and abs(r - c) < TOL_CORR


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_jump_of_j_levels_has_correlation_product_of_c(eta):
    sig = SCHED.sigma_grid(25)
    j, i0 = 4, 12
    run = sig[i0:i0 + j + 1]  # decreasing levels; jump from run[-1] back up to run[0]
    cs = [renoise_coefficient(float(run[k + 1]), float(run[k]), eta) for k in range(j)]
    C = jump_correlation(run, eta)
    assert C == pytest.approx(math.prod(cs), rel=1e-12)
    g = torch.Generator().manual_seed(2)
    e0 = torch.randn(N, generator=g, dtype=torch.float64)
    e = e0
    for k in reversed(range(j)):  # j neighbouring forward updates, one level at a time ...
        e = forward_update(e, cs[k], g)
    jumped = forward_update(e0, C, g)  # ... against one jump with the combined C
    for out in (e, jumped):
        m, v, r = _moments(e0, out)
        assert abs(m) < TOL_MEAN and abs(v - 1) < TOL_VAR and abs(r - C) < TOL_CORR
    if eta == 0.0:
        assert C == 1.0 and jumped is e0
    else:
        assert C < 0.99  # the check above is not vacuous


@pytest.mark.parametrize("t", [1, 10, 250, 500, 999])
def test_eta_one_neighbouring_ticks_is_repaint_ddpm_step(t):
    """eta = 1 between ticks t-1 and t: c^2 = (alpha_t - abar_t) / (1 - abar_t), and the VP form of the
    update is exactly RePaint's q(x_t | x_{t-1}) = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z (same z)."""
    ab = SCHED.alphas_cumprod
    a_t, a_p = float(ab[t]), float(ab[t - 1])
    alpha = a_t / a_p
    s_t, s_p = math.sqrt((1 - a_t) / a_t), math.sqrt((1 - a_p) / a_p)
    c = renoise_coefficient(s_p, s_t, 1.0)
    assert c * c == pytest.approx((alpha - a_t) / (1 - a_t), rel=1e-10)
    g = torch.Generator().manual_seed(t)
    x0, e_prev, z = (torch.randn(1000, generator=g, dtype=torch.float64) for _ in range(3))
    x_prev = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p) * e_prev
    ve = x0 + s_t * (c * e_prev + math.sqrt(1 - c * c) * z)  # our forward update, VE form
    vp = ve / math.sqrt(1 + s_t**2)  # back to VP: x_t = x~ * sqrt(abar_t)
    repaint = math.sqrt(alpha) * x_prev + math.sqrt(1 - alpha) * z
    torch.testing.assert_close(vp, repaint, rtol=0, atol=1e-12)


def test_eta_one_respaced_levels_is_ddpm_over_the_respaced_step():
    sig = SCHED.sigma_grid(10)
    hi, lo = float(sig[3]), float(sig[4])
    a_t, a_p = 1 / (1 + hi**2), 1 / (1 + lo**2)
    assert renoise_coefficient(lo, hi, 1.0) ** 2 == pytest.approx((a_t / a_p - a_t) / (1 - a_t), rel=1e-10)


class _Recording(Gaussian):
    """A Gaussian prior that records the noise level of every evaluation."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def _eps(self, x, sigma, cond, guidance_scale):
        self.calls.append(float(sigma[0]))
        return super()._eps(x, sigma, cond, guidance_scale)


def test_ddr_repaint_schedule_blocks_and_nfe():
    """steps=5, jump=2, U=3: blocks {0,1}, {2,3}, {4}; each block runs 3 times -> 15 evaluations."""
    prior = _Recording(torch.zeros(2), torch.eye(2))
    rep = Linear(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).T)  # 3 params -> 2 outputs
    out = sample("ddr", prior, rep, steps=5, n=3, seed=0, repaint_iters=3, jump=2, jump_eta=0.5, progress=False,
                 return_trace=True)
    sig = [float(s) for s in prior.schedule.sigma_grid(5)]
    expect = [sig[0], sig[1]] * 3 + [sig[2], sig[3]] * 3 + [sig[4]] * 3
    assert prior.calls == pytest.approx(expect, rel=1e-6)
    assert out.nfe == 15 and out.nfe_total == 15 and len(out.trace["x"]) == 6


def test_ddr_jump_one_eta_zero_invertible_is_a_no_op():
    """f = identity, convention B, eta = 0, jump 1: the jump back gives x0_hat + sigma eps_hat = x exactly,
    so U repeats reproduce the U = 1 (DDIM) result; only the NFE count grows."""
    prior = Gaussian(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 0.5]]), dtype=torch.float64)
    kw = dict(steps=8, n=64, seed=3, solver="dense", progress=False)
    a = sample("ddr", prior, Identity(2), **kw)
    b = sample("ddr", prior, Identity(2), repaint_iters=4, jump=1, jump_eta=0.0, **kw)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-9)  # float64 rounding only
    assert (a.nfe, b.nfe) == (8, 32)


@pytest.mark.parametrize("jump, err", [(0, ValueError), (9, ValueError), (True, TypeError), (1.5, TypeError)])
def test_ddr_rejects_bad_jump(jump, err):
    prior = Gaussian(torch.zeros(2), torch.eye(2))
    with pytest.raises(err, match="jump"):
        sample("ddr", prior, Identity(2), steps=8, jump=jump, progress=False)


def test_forward_update_rejects_bad_c():
    with pytest.raises(ValueError, match="c must"):
        forward_update(torch.zeros(3), 1.5)
