"""Noise schedules: VP <-> VE conversions, diffusers configs, sigma grids, the RePaint jump-back coefficient."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffrep_lite.schedule import Schedule, alpha_bar_to_sigma, renoise_coefficient, sigma_to_alpha_bar

DT = torch.float64


# ------------------------------------------------------------------------------ conversions
def test_sigma_alpha_bar_known_values_and_roundtrip():
    # abar = 1 / (1 + sigma^2): abar 0.5 <-> sigma 1, abar 0.2 <-> sigma 2, abar 1 <-> sigma 0.
    assert alpha_bar_to_sigma(0.5).item() == pytest.approx(1.0, abs=1e-15)
    assert alpha_bar_to_sigma(0.2).item() == pytest.approx(2.0, abs=1e-15)
    assert alpha_bar_to_sigma(1.0).item() == 0.0
    assert sigma_to_alpha_bar(3.0).item() == pytest.approx(0.1, abs=1e-15)
    a = torch.linspace(1e-4, 1.0, 101, dtype=DT)
    assert torch.allclose(sigma_to_alpha_bar(alpha_bar_to_sigma(a)), a, atol=1e-14, rtol=0)
    assert alpha_bar_to_sigma(a).dtype == DT


def test_ve_form_is_vp_divided_by_sqrt_alpha_bar():
    # x_t = sqrt(abar) x0 + sqrt(1 - abar) eps  ==>  x_t / sqrt(abar) = x0 + sigma eps.
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 5, generator=g, dtype=DT)
    for abar in (0.9, 0.3, 0.01):
        xt = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
        assert torch.allclose(xt / math.sqrt(abar), x0 + alpha_bar_to_sigma(abar) * eps, atol=1e-12)


# ------------------------------------------------------------------------------ from configs
LINEAR_CFG = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def test_from_config_equals_diffusers_and_closed_form_linear():
    sch = Schedule.from_config(LINEAR_CFG)
    ref = DDPMScheduler(**LINEAR_CFG).alphas_cumprod.to(DT)
    assert sch.alphas_cumprod.dtype == DT and sch.num_train_timesteps == 1000
    assert torch.equal(sch.alphas_cumprod, ref)
    closed = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=DT), 0)
    assert torch.allclose(sch.alphas_cumprod, closed, rtol=1e-5, atol=0)  # diffusers works in float32


def test_from_config_ignores_private_keys_and_from_scheduler():
    cfg = dict(DDIMScheduler(**LINEAR_CFG).config)  # a FrozenDict with "_class_name" etc.
    assert any(k.startswith("_") for k in cfg)
    a = Schedule.from_config(cfg).alphas_cumprod
    b = Schedule.from_scheduler(DDIMScheduler(**LINEAR_CFG)).alphas_cumprod
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="scheduler"):
        Schedule.from_scheduler(object())


def test_named_scaled_linear_is_stable_diffusion_schedule():
    sch = Schedule.named("scaled_linear")
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=DT) ** 2
    assert torch.allclose(sch.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=1e-5, atol=0)
    assert sch.alphas_cumprod[-1].item() == pytest.approx(0.0047, abs=1e-4)  # the "trap": abar_T is not 0


def test_named_cosine_matches_the_improved_ddpm_formula():
    sch = Schedule.named("squaredcos_cap_v2", num_train_timesteps=500)

    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - abar((i + 1) / 500) / abar(i / 500), 0.999) for i in range(500)], dtype=DT)
    assert torch.allclose(sch.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=1e-5, atol=1e-12)
    assert sch.sigma_max > 1e3  # abar_T ~ 0: starting from N(0, sigma_max^2 I) is exact for O(1) data


def test_schedule_rejects_bad_inputs():
    with pytest.raises(ValueError, match="beta_schedule"):
        Schedule.named("quadratic")
    with pytest.raises(ValueError, match="num_train_timesteps"):
        Schedule.named("linear", num_train_timesteps=1)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        Schedule(torch.tensor([0.5, 0.9]))  # increasing
    with pytest.raises(ValueError, match="alphas_cumprod"):
        Schedule(torch.tensor([1.0, 0.0]))  # abar = 0 has sigma = inf


# ------------------------------------------------------------------------------ grids
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
def test_sigma_grid_shape_monotone_and_ends(steps):
    sch = Schedule.named("squaredcos_cap_v2")
    grid = sch.sigma_grid(steps)
    assert grid.shape == (steps + 1,) and grid.dtype == DT
    assert torch.all(grid[1:] < grid[:-1])  # strictly decreasing
    assert grid[-1].item() == 0.0
    assert grid[0].item() == sch.sigma_max  # trailing spacing starts at the last training tick
    t = sch.timesteps(steps)
    ddim = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    ddim.set_timesteps(steps)
    assert torch.equal(t, ddim.timesteps.long())
    assert torch.equal(grid[:-1], sch.sigmas[t])


def test_sigmas_increase_and_timestep_of_inverts_them():
    sch = Schedule.from_config(LINEAR_CFG)
    assert torch.all(sch.sigmas[1:] > sch.sigmas[:-1])
    # diffusers stores abar_0 = 1 - 1e-4 in float32 (ulp 6e-8), so 1 - abar_0 is good to ~1e-3 relative.
    assert sch.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-3)
    ticks = torch.tensor([0, 1, 10, 500, 999])
    assert torch.equal(sch.timestep_of(sch.sigmas[ticks]), ticks)


@pytest.mark.parametrize("steps, exc", [(0, ValueError), (-3, ValueError), (1001, ValueError),
                                        (2.0, TypeError), (True, TypeError), ("10", TypeError)])
def test_timesteps_reject_bad_steps(steps, exc):
    with pytest.raises(exc, match="steps"):
        Schedule.named("linear").sigma_grid(steps)


# ------------------------------------------------------------------------------ jump back up
def test_renoise_eta0_reuses_the_noise():
    sch = Schedule.named("squaredcos_cap_v2")
    grid = sch.sigma_grid(20)
    for hi, lo in zip(grid[:-1].tolist(), grid[1:].tolist()):
        assert renoise_coefficient(lo, hi, 0.0) == 1.0
    assert renoise_coefficient(0.0, 0.0, 1.0) == 1.0


@pytest.mark.parametrize("t", [1, 10, 200, 700, 999])
def test_renoise_eta1_between_neighbouring_ticks_is_repaint_ddpm(t):
    sch = Schedule.from_config(LINEAR_CFG)
    abar_t, abar_p = sch.alphas_cumprod[t].item(), sch.alphas_cumprod[t - 1].item()
    alpha_t = abar_t / abar_p
    sig_t, sig_p = sch.sigmas[t].item(), sch.sigmas[t - 1].item()
    c = renoise_coefficient(sig_p, sig_t, 1.0)
    assert c**2 == pytest.approx((alpha_t - abar_t) / (1 - abar_t), rel=1e-9)
    # The same jump is the DDPM forward step q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, (1 - alpha_t) I):
    # with x_{t-1} = sqrt(abar_p) (x0 + sig_p e), x_t = sqrt(abar_t) (x0 + sig_t (c e + sqrt(1 - c^2) z))
    # has mean sqrt(alpha_t) x_{t-1}  <=>  sig_t c = sig_p, and variance abar_t sig_t^2 (1 - c^2) = 1 - alpha_t.
    assert sig_t * c == pytest.approx(sig_p, rel=1e-9)
    assert abar_t * sig_t**2 * (1 - c**2) == pytest.approx(1 - alpha_t, rel=1e-9)


def test_renoise_decreases_with_eta_and_keeps_unit_variance():
    g = torch.Generator().manual_seed(0)
    cs = [renoise_coefficient(0.5, 2.0, eta) for eta in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a > b for a, b in zip(cs, cs[1:])) and 0 < cs[-1] < 1
    # e_to = c e + sqrt(1 - c^2) z stays N(0, 1): variance within 4 standard errors (n = 200000,
    # SE of a sample variance = sqrt(2 / n) = 0.0032).
    e, z = torch.randn(2, 200_000, generator=g, dtype=DT)
    c = cs[2]
    out = c * e + math.sqrt(1 - c * c) * z
    assert abs(out.var().item() - 1) < 4 * math.sqrt(2 / 200_000)


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_renoise_rejects_bad_eta(eta):
    with pytest.raises(ValueError, match="eta"):
        renoise_coefficient(0.5, 1.0, eta)


def test_renoise_rejects_going_down():
    with pytest.raises(ValueError, match="sigma_to"):
        renoise_coefficient(2.0, 1.0, 0.5)
