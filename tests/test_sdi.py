"""SDI against closed forms on an analytic Gaussian prior (float64).

For ``N(mu, C)`` with eigenpairs ``(lam, u)`` the noise prediction is linear in the deviation
``d = x - mu``: along ``u`` it is ``eps_hat = sigma / (lam + sigma^2) * d``. So one DDIM inversion step
from ``sigma_k`` to ``sigma_{k+1}`` (network asked at ``e_k``) multiplies ``d`` by
``1 + (sigma_{k+1} - sigma_k) e_k / (lam + e_k^2)``, the PF-ODE itself gives ``d(sigma) = d(0) sqrt((lam +
sigma^2) / lam)``, and the denoiser shrinks by ``lam / (lam + sigma^2)``.
"""
from __future__ import annotations

import math

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite.samplers.sdi import ddim_invert, guided_eps, inversion_grid

MU = torch.tensor([1.0, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.5], [0.5, 0.5]], dtype=torch.float64)
LAM, U = torch.linalg.eigh(COV)


@pytest.fixture(scope="module")
def gauss():
    return dl.priors.Gaussian(MU, COV, dtype=torch.float64)


def _inversion_factor(sig, ev):
    r = torch.ones(2, dtype=torch.float64)
    for k in range(len(ev)):
        r = r * (1 + (sig[k + 1] - sig[k]) * ev[k] / (LAM + ev[k] ** 2))
    return r


X0 = torch.tensor([[2.0, 0.3], [-1.0, 0.0], [1.0, -1.0]], dtype=torch.float64)


def test_inversion_grid(gauss):
    sig, ev = inversion_grid(gauss.schedule, 600, 4)
    table = gauss.schedule.sigmas
    assert sig[0] == 0 and torch.equal(sig[1:], table[[150, 300, 450, 600]])
    assert ev[0] == table[0] and torch.equal(ev[1:], sig[1:-1])
    sig, ev = inversion_grid(gauss.schedule, 2, 10)  # fewer ticks than steps: duplicates dropped
    assert torch.equal(sig[1:], table[[0, 1, 2]]) and len(ev) == 3
    with pytest.raises(ValueError, match="tick"):
        inversion_grid(gauss.schedule, 1000, 3)


def test_ddim_inversion_matches_its_closed_form(gauss):
    sig, ev = inversion_grid(gauss.schedule, 600, 10)
    x = ddim_invert(gauss, X0, sig, eval_sigmas=ev)
    expected = MU + (((X0 - MU) @ U) * _inversion_factor(sig, ev)) @ U.T
    torch.testing.assert_close(x, expected, atol=1e-12, rtol=0)
    assert torch.equal(x[2], MU)  # the mean is a fixed point: eps_hat(mu) = 0 at every level


@pytest.mark.parametrize("steps", [20, 200])
def test_inversion_then_ddim_round_trip_returns_x(gauss, steps):
    """Fine inversion follows the PF-ODE (closed form); DDIM back down on the same grid returns x.
    Both are first-order schemes: errors shrink like 1/steps (measured: 0.05 and 0.006 relative to the
    ODE, 0.13 and 0.014 round trip at 20 and 200 steps), asserted with a 2x margin."""
    sig, ev = inversion_grid(gauss.schedule, 600, steps)
    x = ddim_invert(gauss, X0, sig, eval_sigmas=ev)
    ode = MU + (((X0 - MU) @ U) * torch.sqrt((LAM + sig[-1] ** 2) / LAM)) @ U.T
    scale = (ode - MU).abs().max()
    tol = 2.0 / steps
    assert (x - ode).abs().max() / scale < tol
    y = x
    for k in range(len(sig) - 1, 0, -1):  # DDIM: x_{k-1} = x_k + (sigma_{k-1} - sigma_k) eps_hat(x_k, sigma_k)
        y = y + (sig[k - 1] - sig[k]) * gauss.eps(y, float(sig[k]))
    assert (y - X0).abs().max() / (X0 - MU).abs().max() < 3 * tol


def test_sdi_steps_match_the_closed_form(gauss):
    """Identity diffrep + SGD(lr=1): one SDI step sets theta to the target x0_hat exactly, so after K steps
    the deviation is the product of (inversion factor) x (denoiser shrink lam / (lam + sigma^2))."""
    steps, inv = 4, 3
    out = dl.sample("sdi", gauss, dl.diffreps.Identity(2), params0={"x": X0.clone()}, steps=steps,
                    optimizer="sgd", lr=1.0, inversion_steps=inv, inversion_eta=0.0, tau=0.0,
                    t_range=(0.3, 0.9), progress=False)
    T = gauss.schedule.num_train_timesteps
    d = (X0 - MU) @ U
    for i in range(steps):
        t = 0.9 + (0.3 - 0.9) * i / (steps - 1)
        tick = round(t * (T - 1))
        sig, ev = inversion_grid(gauss.schedule, tick, max(1, int(inv * t)))
        d = d * _inversion_factor(sig, ev) * LAM / (LAM + sig[-1] ** 2)
    torch.testing.assert_close(out.params["x"], MU + d @ U.T, atol=1e-12, rtol=0)
    assert out.nfe == sum(max(1, int(inv * (0.9 - 0.2 * i))) + 1 for i in range(steps))
    # mode seeking: every step contracts towards the mean
    assert ((out.params["x"] - MU).norm(dim=1) < 0.5 * (X0 - MU).norm(dim=1) + 1e-12).all()


def test_sdi_fixed_point_is_the_mean(gauss):
    """At f = mu the inverted noise is 0 and the target is mu: zero gradient, Adam does not move
    (with random overshoots tau, deterministic inversion)."""
    x = MU.repeat(3, 1)
    out = dl.sample("sdi", gauss, dl.diffreps.Identity(2), params0={"x": x.clone()}, steps=5, inversion_eta=0.0,
                    tau=0.1, seed=3, progress=False)
    assert torch.equal(out.params["x"], x)


def test_sdi_is_reproducible_and_linear_diffrep_runs(gauss):
    rep = dl.diffreps.Linear(torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64))
    a = dl.sample("sdi", gauss, rep, n=4, steps=6, seed=7, progress=False)
    b = dl.sample("sdi", gauss, rep, n=4, steps=6, seed=7, progress=False)
    c = dl.sample("sdi", gauss, rep, n=4, steps=6, seed=8, progress=False)
    assert torch.equal(a.params["theta"], b.params["theta"]) and not torch.equal(a.params["theta"], c.params["theta"])
    assert a.x.shape == (4, 1, 2) and a.method == "sdi"


def test_guided_eps_with_negative_scale_is_the_cfg_line():
    """A toy guided prior whose eps is affine in the scale: negative scales extrapolate the same line."""

    class Toy(dl.priors.Gaussian):
        conditional = True
        supports_guidance = True

        def _eps(self, x, sigma, cond, g):
            e_u = super()._eps(x, sigma, None, None)
            e_c = e_u + torch.tensor([float(c) for c in cond], dtype=x.dtype)[:, None]
            return e_u + (1.0 if g is None else g) * (e_c - e_u)

    toy = Toy(MU, COV, dtype=torch.float64)
    e_u = toy.eps(X0, 0.7, [1, 2, 3], 0.0)
    e_c = toy.eps(X0, 0.7, [1, 2, 3], 1.0)
    torch.testing.assert_close(guided_eps(toy, X0, 0.7, [1, 2, 3], -7.5), e_u - 7.5 * (e_c - e_u))
    torch.testing.assert_close(guided_eps(toy, X0, 0.7, [1, 2, 3], 3.0), e_u + 3.0 * (e_c - e_u))
    sig, ev = inversion_grid(toy.schedule, 300, 2)
    x = ddim_invert(toy, X0, sig, eval_sigmas=ev, cond=[1, 2, 3], guidance_scale=-2.0)
    y = X0
    for k in range(2):
        y = y + (sig[k + 1] - sig[k]) * guided_eps(toy, y, float(ev[k]), [1, 2, 3], -2.0)
    torch.testing.assert_close(x, y)
    # "mirror": inversion at -guidance_scale, counted as two passes per inversion step
    out = dl.sample("sdi", toy, dl.diffreps.Identity(2), n=1, steps=2, cond=1, guidance_scale=4.0,
                    inversion_steps=2, tau=0.0, progress=False)
    assert out.nfe == sum(2 * max(1, int(2 * t)) + 1 for t in (0.98, 0.2))


def test_sdi_validates_before_sampling(gauss):
    rep = dl.diffreps.Identity(2)
    bad = [dict(t_range=(0.9, 0.1)), dict(t_range=3), dict(inversion_steps=0), dict(inversion_eta=1.5),
           dict(tau=1.0), dict(inversion_guidance_scale="flip"), dict(guidance_scale=-1.0)]
    for kw in bad:
        with pytest.raises(ValueError):
            dl.sample("sdi", gauss, rep, steps=2, progress=False, **kw)
    with pytest.raises(ValueError, match="does not support classifier-free guidance"):
        dl.sample("sdi", gauss, rep, steps=2, inversion_guidance_scale=-7.5, progress=False)
    with pytest.raises(ValueError, match="eta"):
        ddim_invert(gauss, X0, [0.0, 1.0], eval_sigmas=[0.5], eta=2.0)
    with pytest.raises(ValueError, match="sigmas must increase"):
        ddim_invert(gauss, X0, [1.0, 0.5])
    assert "sdi" in dl.METHODS and math.isfinite(dl.sample("sdi", gauss, rep, steps=2, progress=False).x.sum())


def test_sdi_time_label_inverted_is_the_published_step(gauss):
    """SDI's code hands the network the inverted latent at t + tau_i with the time label t (VP scaling): in VE
    form the input is r x_inv, r = sqrt(abar(t + tau_i) / abar(t)), at sigma_t, and the target is its denoised
    value; Identity + SGD(lr=1) sets theta to that target: mu + lam / (lam + sigma_t^2) (r x_inv - mu)."""
    from diffrep_lite.schedule import sigma_to_alpha_bar

    inv, tau, seed = 3, 0.2, 5
    out = dl.sample("sdi", gauss, dl.diffreps.Identity(2), params0={"x": X0.clone()}, steps=1, optimizer="sgd",
                    lr=1.0, inversion_steps=inv, inversion_eta=0.0, tau=tau, t_range=(0.3, 0.6),
                    time_label="inverted", seed=seed, progress=False)
    g = torch.Generator().manual_seed(seed)
    torch.randn(3, 1, 2, generator=g, dtype=torch.float64)  # the initial view noise every sampler draws first
    extra = float(torch.rand((), generator=g, dtype=torch.float64)) * tau
    T = gauss.schedule.num_train_timesteps
    tick, tick_inv = round(0.6 * (T - 1)), min(round((0.6 + extra) * (T - 1)), T - 1)
    sig_t = float(gauss.schedule.sigmas[tick])
    grid, ev = inversion_grid(gauss.schedule, tick_inv, max(1, int(inv * 0.6)))
    x_inv = MU + (((X0 - MU) @ U) * _inversion_factor(grid, ev)) @ U.T
    r = math.sqrt(float(sigma_to_alpha_bar(grid[-1])) / float(sigma_to_alpha_bar(sig_t)))
    expected = MU + (((r * x_inv - MU) @ U) * (LAM / (LAM + sig_t**2))) @ U.T
    assert tick_inv > tick  # the overshoot happened, so r < 1 and the two labels differ
    torch.testing.assert_close(out.params["x"], expected, atol=1e-12, rtol=0)
    renoise = dl.sample("sdi", gauss, dl.diffreps.Identity(2), params0={"x": X0.clone()}, steps=1, optimizer="sgd",
                        lr=1.0, inversion_steps=inv, inversion_eta=0.0, tau=tau, t_range=(0.3, 0.6), seed=seed,
                        progress=False)
    assert (renoise.params["x"] - expected).abs().max() > 1e-3
    # without an overshoot the two labels are the same step
    a, b = (dl.sample("sdi", gauss, dl.diffreps.Identity(2), params0={"x": X0.clone()}, steps=3, inversion_eta=0.0,
                      tau=0.0, time_label=lab, seed=1, progress=False).params["x"] for lab in ("renoise", "inverted"))
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="time_label"):
        dl.sample("sdi", gauss, dl.diffreps.Identity(2), steps=2, time_label="t", progress=False)


def test_inversion_noise_on_every_step_including_the_first(gauss):
    """eta > 0 adds eta * s_k * z on every step; the first (from the clean start) uses abar of eval_sigmas[0]."""
    from diffrep_lite.schedule import sigma_to_alpha_bar

    sig, ev = inversion_grid(gauss.schedule, 500, 3)
    x = ddim_invert(gauss, X0, sig, eval_sigmas=ev, eta=0.5, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    y = X0
    for k in range(3):
        y = y + (sig[k + 1] - sig[k]) * gauss.eps(y, float(ev[k]))
        a_lo, a_hi = float(sigma_to_alpha_bar(ev[k] if k == 0 else sig[k])), float(sigma_to_alpha_bar(sig[k + 1]))
        std = math.sqrt((1 - a_lo) / (1 - a_hi) * (1 - a_hi / a_lo) / a_hi)
        assert std > 0
        y = y + 0.5 * std * torch.randn(y.shape, generator=g, dtype=y.dtype)
    torch.testing.assert_close(x, y, atol=1e-12, rtol=0)


def test_sdi_published_options_are_their_formulas():
    """tau='published' is 1 / inversion_steps; inversion_guidance_scale='published' is 2 - guidance_scale (SDI's
    w_inv = -w with g = w + 1). One inversion step: 'published' overshoots up to the whole schedule (capped)."""

    class Toy(dl.priors.Gaussian):
        conditional = True
        supports_guidance = True

        def _eps(self, x, sigma, cond, g):
            e_u = super()._eps(x, sigma, None, None)
            return e_u + (1.0 if g is None else g) * torch.tensor([float(c) for c in cond], dtype=x.dtype)[:, None]

    toy = Toy(MU, COV, dtype=torch.float64)
    kw = dict(n=2, steps=3, cond=1, guidance_scale=8.5, inversion_steps=4, seed=4, progress=False)
    ref = dl.sample("sdi", toy, dl.diffreps.Identity(2), tau=0.25, inversion_guidance_scale=-6.5, **kw)
    pub = dl.sample("sdi", toy, dl.diffreps.Identity(2), tau="published", inversion_guidance_scale="published", **kw)
    assert torch.equal(ref.params["x"], pub.params["x"])
    mir = dl.sample("sdi", toy, dl.diffreps.Identity(2), tau="published", **kw)
    assert not torch.equal(mir.params["x"], pub.params["x"])
    one = dl.sample("sdi", toy, dl.diffreps.Identity(2), tau="published", **{**kw, "inversion_steps": 1})
    assert torch.isfinite(one.params["x"]).all()
