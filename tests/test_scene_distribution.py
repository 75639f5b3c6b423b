"""The 3-D distribution experiment's pieces against exact answers: the scene mixture's noise prediction is the
score of its noised density (autograd), a turned scene renders as the scene seen from the opposite side, the
nearest-scene assignment, and the histogram statistics against scipy / closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from diffrep_lite.diffreps import VoxelNeRF, cameras_on_sphere
from diffrep_lite.priors import SceneMixture, blob_scenes, nearest_scene, turn_scene
from diffrep_lite.stats import fisher_exact, mode_histogram, wilson_interval


def test_scene_mixture_eps_is_minus_sigma_times_the_score_of_the_noised_density():
    """VE: x = x0 + sigma z, so p_sigma(x | v) = sum_k w_k N(x; m_vk, (s^2 + sigma^2) I) and
    eps_hat = -sigma grad_x log p_sigma(x | v), exactly (float64)."""
    g = torch.Generator().manual_seed(0)
    V, K, D, s2 = 3, 3, 6, 0.02
    means = torch.randn(V, K, D, generator=g, dtype=torch.float64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    prior = SceneMixture(means, w, s2, dtype=torch.float64)
    cond = [0, 1, 2, 2, 1, 0]
    for sigma in (0.05, 0.7, 3.0):
        x = (means[cond, 0] + 0.6 * torch.randn(len(cond), D, generator=g, dtype=torch.float64)).requires_grad_(True)
        var = s2 + sigma**2
        d2 = (x[:, None] - means[cond]).pow(2).sum(-1)  # [B, K]
        logp = torch.logsumexp(w.log() - 0.5 * d2 / var - 0.5 * D * math.log(2 * math.pi * var), dim=1)
        (grad,) = torch.autograd.grad(logp.sum(), x)
        eps = prior.eps(x.detach(), sigma, cond)
        torch.testing.assert_close(eps, -sigma * grad, atol=1e-12, rtol=1e-10)


def _nerf(cams, grid=6, res=8):
    return VoxelNeRF(cams, res, grid=grid, channels=3, background=1.0, init_features=0.0, n_samples=2 * grid)


def test_turned_scene_renders_as_the_scene_seen_from_the_opposite_side():
    cams = cameras_on_sphere(4, [10.0, 35.0], radius=2.5, fov=40.0, azimuth_offset=20.0)
    opposite = cameras_on_sphere(4, [10.0, 35.0], radius=2.5, fov=40.0, azimuth_offset=200.0)
    nerf = _nerf(cams)
    scene = blob_scenes(2, 6, n_blobs=3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    turned = turn_scene(scene)
    with torch.no_grad():
        a, b = nerf.render(turned, cams), nerf.render(scene, opposite)
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    twice = turn_scene(turned)
    assert all(torch.equal(twice[k], scene[k]) for k in scene)
    assert turn_scene(scene, 2)["density"] is scene["density"]
    assert float((a - nerf.render(scene, cams)).abs().max()) > 0.1  # a blob scene is not symmetric
    with pytest.raises(ValueError, match="half_turns"):
        turn_scene(scene, 0.5)


def test_nearest_scene_assigns_true_scenes_and_flags_blends():
    cams = cameras_on_sphere(6, [15.0], radius=2.5, fov=40.0)
    nerf = _nerf(cams)
    scenes = blob_scenes(3, 6, n_blobs=2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    blend = {k: 0.5 * (scenes[k][:1] + scenes[k][1:2]) for k in scenes}
    params = {k: torch.cat([scenes[k][[2, 0, 2]], blend[k]]) for k in scenes}
    a = nearest_scene(nerf, params, scenes, cams)
    assert a["scene"][:3].tolist() == [2, 0, 2]
    assert torch.isinf(a["best"][:3]).all()  # renders equal to a true scene: zero error
    assert a["blend"].tolist() == [False, False, False, True] and a["blends"] == 1
    assert a["counts"] == [1, 0, 2]
    assert float(a["best"][3]) < 20.0


def test_mode_histogram_against_scipy_and_the_wilson_formula():
    h = mode_histogram([50, 40, 30], [0.5, 0.3, 0.2], blends=8)
    ref = chisquare([50, 40, 30], [60.0, 36.0, 24.0])
    assert h["n"] == 128 and h["blends"] == 8 and h["blend_share"] == 8 / 128
    assert h["chi2"] == pytest.approx(ref.statistic, rel=1e-12) and h["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    # chi2 = 100/60 + 16/36 + 36/24 = 3.6111..., p = exp(-chi2 / 2) for 2 degrees of freedom
    assert h["chi2"] == pytest.approx(100 / 60 + 16 / 36 + 36 / 24, rel=1e-12)
    assert h["p"] == pytest.approx(math.exp(-h["chi2"] / 2), rel=1e-12)
    assert h["fractions"] == [50 / 128, 40 / 128, 30 / 128]
    assert h["assigned_fractions"] == [50 / 120, 40 / 120, 30 / 120]
    # Wilson: (k + z^2/2 +- z sqrt(k (n - k) / n + z^2 / 4)) / (n + z^2)
    z = 1.959963984540054
    for (lo, hi), k in zip(h["ci"], [50, 40, 30]):
        c, r = k + z * z / 2, z * math.sqrt(k * (128 - k) / 128 + z * z / 4)
        assert lo == pytest.approx((c - r) / (128 + z * z), rel=1e-9)
        assert hi == pytest.approx((c + r) / (128 + z * z), rel=1e-9)
    assert wilson_interval(0, 16)[0] == 0.0
    assert wilson_interval(0, 16)[1] == pytest.approx(z * z / (16 + z * z), rel=1e-9)
    nothing = mode_histogram([0, 0], [1, 1], blends=5)
    assert math.isnan(nothing["p"]) and nothing["blend_share"] == 1.0
    with pytest.raises(ValueError, match="weights must be 3"):
        mode_histogram([1, 2, 3], [0.5, 0.5])
    with pytest.raises(ValueError, match="counts"):
        mode_histogram([1.5, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="blends"):
        mode_histogram([1, 2], [0.5, 0.5], blends=-1)


def test_fisher_exact_against_the_hypergeometric_sum():
    """Two-sided Fisher p = sum of the hypergeometric probabilities of tables no more likely than the one seen."""
    k1, n1, k2, n2 = 12, 16, 2, 16
    K, N = k1 + k2, n1 + n2
    prob = [math.comb(n1, a) * math.comb(n2, K - a) / math.comb(N, K) for a in range(0, min(K, n1) + 1)]
    expected = sum(q for q in prob if q <= prob[k1] * (1 + 1e-7))
    assert fisher_exact(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9)
    assert fisher_exact(3, 16, 3, 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        fisher_exact(17, 16, 0, 16)


def test_distribution_toys_are_the_documented_mixtures():
    from diffrep_lite.priors import distribution_toy

    nerf, prior, scenes, weights, held = distribution_toy("turned", grid=4, resolution=6)
    assert weights == [0.5, 0.5] and nerf.n_views == 8 and len(held) == 12
    turned = turn_scene({k: v[:1] for k, v in scenes.items()})
    assert all(torch.equal(turned[k][0], scenes[k][1]) for k in scenes)
    # training camera v sees the turned scene as camera v + 2 (azimuth + 180, same elevation) sees the scene
    torch.testing.assert_close(prior.means[0, 1], prior.means[2, 0], atol=1e-5, rtol=0)
    nerf, prior, scenes, weights, _ = distribution_toy("three", grid=4, resolution=6)
    assert weights == [0.5, 0.3, 0.2] and prior.means.shape == (8, 3, 3, 6, 6)
    torch.testing.assert_close(prior.view_prior(0).weights, torch.tensor(weights))
    with pytest.raises(ValueError, match="toy must be one of"):
        distribution_toy("four")


def test_sdi_steps_for_nfe_is_the_largest_fitting_budget():
    from diffrep_lite.samplers.sdi import steps_for_nfe

    def cost(steps, inv=10, lo=0.2, hi=0.98):
        return sum(max(1, int(inv * (hi + (lo - hi) * i / max(steps - 1, 1)))) + 1 for i in range(steps))

    for nfe in (1, 10, 60, 200):
        s = steps_for_nfe(nfe)
        assert s == 1 or cost(s) <= nfe
        assert all(cost(m) > nfe for m in range(s + 1, nfe + 2))
    assert steps_for_nfe(60) == 9 and cost(9) == 54  # 10 + 9 + ... evaluations: 9 steps fit in 60
    assert steps_for_nfe(6, inversion_steps=1) == 3
    with pytest.raises(ValueError, match="nfe"):
        steps_for_nfe(0)
