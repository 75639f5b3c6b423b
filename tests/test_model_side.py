"""The model side written once: classifier-free guidance, VE <-> VP and prediction-type conversions (diffusers'
DDIMScheduler as the oracle), and the helpers that moved (psnr -> metrics, geometric_schedule -> schedule)."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from diffrep_lite.metrics import psnr
from diffrep_lite.priors import ClassConditionalMixture
from diffrep_lite.priors.base import classifier_free_guidance, mix_guidance
from diffrep_lite.schedule import (PREDICTION_TYPES, Schedule, check_prediction_type, eps_from_prediction,
                                   geometric_schedule, ve_to_vp)

DT = torch.float64


# ------------------------------------------------------------------------------ guidance
@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, -2.5, 7.5])
def test_mix_guidance_is_the_classifier_free_formula(scale):
    g = torch.Generator().manual_seed(0)
    e_u, e_c = torch.randn(2, 3, 4, 4, generator=g)
    assert torch.equal(mix_guidance(e_u, e_c, scale), e_u + scale * (e_c - e_u))


@pytest.mark.parametrize("scale, calls", [(None, [("c",)]), (1.0, [("c",)]), (0.0, [("u",)]), (3.0, [("u", "c")])])
def test_classifier_free_guidance_spends_the_passes_the_scale_needs(scale, calls):
    e = {"u": torch.tensor([[1.0, -2.0]]), "c": torch.tensor([[4.0, 0.5]])}
    seen = []

    def eps_of(*conds):
        seen.append(conds)
        return torch.cat([e[c] for c in conds])

    out = classifier_free_guidance(eps_of, "c", "u", scale)
    want = {None: e["c"], 1.0: e["c"], 0.0: e["u"]}.get(scale, e["u"] + 3.0 * (e["c"] - e["u"]))
    assert seen == calls and torch.equal(out, want)


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.0, 5.0])
def test_exact_class_conditional_guidance_equals_the_old_formula(scale):
    g = torch.Generator().manual_seed(1)
    prior = ClassConditionalMixture(torch.randn(6, 1, 4, 4, generator=g), [0, 0, 1, 1, 2, 2], 0.05)
    x = 3.0 * torch.randn(5, 1, 4, 4, generator=g)
    sigma, cond = torch.tensor([0.3, 1.0, 2.0, 4.0, 9.0]), [0, 1, 2, 1, 0]
    e_u, e_c = prior.eps(x, sigma, cond, 0.0), prior.eps(x, sigma, cond, 1.0)
    # the old code: scale 0 the unconditional mixture, 1 the conditional one, else eps_u + s (eps_c - eps_u)
    want = {0.0: e_u, 1.0: e_c}.get(scale, e_u + scale * (e_c - e_u))
    assert torch.equal(prior.eps(x, sigma, cond, scale), want)
    assert torch.equal(e_u, prior.eps(x, sigma)) and torch.equal(e_c, prior.eps(x, sigma, cond))


# ------------------------------------------------------------------------------ VE <-> VP, prediction types
def ddim(prediction_type):
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False)


@pytest.mark.parametrize("t", [0, 10, 250, 600, 999])
def test_ve_to_vp_is_diffusers_add_noise(t):
    sched = ddim("epsilon")
    g = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g, dtype=DT), torch.randn(2, 3, 4, 4, generator=g, dtype=DT)
    sigma = float(Schedule.from_scheduler(sched).sigmas[t])
    ts = torch.full((2,), t)
    torch.testing.assert_close(ve_to_vp(x0 + sigma * eps, sigma), sched.add_noise(x0, eps, ts), rtol=1e-6, atol=1e-6)
    # per-input levels broadcast over the data dimensions
    sig = torch.tensor([sigma, 2 * sigma], dtype=DT)
    xt = ve_to_vp(x0 + sig.reshape(2, 1, 1, 1) * eps, sig)
    torch.testing.assert_close(xt[1], ((x0 + 2 * sigma * eps) / math.sqrt(1 + 4 * sigma**2))[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("t", [5, 300, 900])
def test_eps_from_prediction_roundtrips_against_ddim(prediction_type, t):
    sched = ddim(prediction_type)
    sched.set_timesteps(50)
    g = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g, dtype=DT), torch.randn(2, 3, 4, 4, generator=g, dtype=DT)
    ts = torch.full((2,), t)
    sigma = float(Schedule.from_scheduler(sched).sigmas[t])
    xt = sched.add_noise(x0, eps, ts)
    out = {"epsilon": eps, "sample": x0, "v_prediction": sched.get_velocity(x0, eps, ts)}[prediction_type]
    got = eps_from_prediction(out, xt, sigma, prediction_type)
    torch.testing.assert_close(got, eps, rtol=1e-5, atol=1e-5)  # the network output stands for this noise
    # and diffusers' DDIM step reads the same clean image from the output as x_t = a x0 + b eps_hat gives
    a = 1 / math.sqrt(1 + sigma**2)
    want_x0 = sched.step(out, t, xt).pred_original_sample
    torch.testing.assert_close((xt - sigma * a * got) / a, want_x0, rtol=1e-5, atol=1e-5)


def test_eps_from_prediction_keeps_float16_finite_at_large_sigma():
    x = torch.randn(2, 4, dtype=torch.float16)
    got = eps_from_prediction(torch.ones(2, 4, dtype=torch.float16), x, torch.tensor([300.0, 1e4]), "v_prediction")
    want = (torch.ones(2, 4) + torch.tensor([[300.0], [1e4]]) * x.float()) / torch.tensor([[300.0], [1e4]]).hypot(
        torch.tensor(1.0))
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, rtol=2e-3, atol=2e-3)


def test_check_prediction_type_names_the_parameter_and_the_choices():
    assert check_prediction_type("sample") == "sample"
    with pytest.raises(ValueError, match=r"scheduler prediction_type must be one of \('epsilon', 'sample', "
                                         r"'v_prediction'\), got 'x0'"):
        check_prediction_type("x0", "scheduler prediction_type")


# ------------------------------------------------------------------------------ moved helpers
def test_geometric_schedule_levels_are_geometric():
    s = geometric_schedule(0.01, 200.0, 1000).sigmas
    assert s.shape == (1000,)
    # the end points' log10 are taken in float32 (as when the 3-D toy's results were recorded): relative 2e-7
    torch.testing.assert_close(s, torch.logspace(math.log10(0.01), math.log10(200.0), 1000, dtype=DT), rtol=3e-7,
                               atol=0)
    ratio = s[1:] / s[:-1]
    assert float(ratio.max() - ratio.min()) < 1e-10  # one constant ratio: the same log-sigma step everywhere
    with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max"):
        geometric_schedule(1.0, 0.5)


def test_psnr_is_ten_log10_of_range_squared_over_mse():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.5)])
    torch.testing.assert_close(psnr(x, y), torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.25)]))
    torch.testing.assert_close(psnr(x, y, data_range=1.0)[0], torch.tensor(20.0))
