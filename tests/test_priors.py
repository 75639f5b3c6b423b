"""Exact priors: ``eps_hat`` must be the optimal denoiser, i.e. ``-eps_hat / sigma`` must equal the score
``grad_x log p_sigma(x)`` of the noisy marginal ``p_sigma = p0 * N(0, sigma^2 I)``, which for Gaussians
and Gaussian mixtures is known in closed form. The oracle is autograd of that exact log-density (float64).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from diffrep_lite.priors import Gaussian, GaussianMixture, Prior

DT = torch.float64
SIGMAS = [0.05, 0.5, 2.0, 30.0]


def autograd_score(logp, x):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(logp(x).sum(), x)
    return g


def random_spd(D, seed):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(D, D, generator=g, dtype=DT)
    return M @ M.T / D + 0.1 * torch.eye(D, dtype=DT)


def points(B, shape, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, *shape, generator=g, dtype=DT)


# ------------------------------------------------------------------------------ Gaussian
@pytest.mark.parametrize("D", [2, 5])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_gaussian_eps_is_exact_score(D, sigma):
    mean = torch.linspace(-1, 1, D, dtype=DT)
    cov = random_spd(D, seed=D)
    prior = Gaussian(mean, cov, dtype=DT)
    x = points(64, (D,), seed=1) + mean
    noisy = MultivariateNormal(mean, cov + sigma**2 * torch.eye(D, dtype=DT))
    score = autograd_score(noisy.log_prob, x)
    assert torch.allclose(prior.score(x, sigma), score, rtol=1e-10, atol=1e-12)
    assert torch.allclose(-prior.eps(x, sigma) / sigma, score, rtol=1e-10, atol=1e-12)
    # Tweedie: x0_hat = x + sigma^2 * score.
    assert torch.allclose(prior.x0(x, sigma), x + sigma**2 * score, rtol=1e-10, atol=1e-12)


def test_gaussian_singular_cov_and_per_sample_sigmas():
    # A rank-1 covariance (data on a line) is allowed; sigma may differ per input.
    u = torch.tensor([1.0, 2.0], dtype=DT)
    cov = torch.outer(u, u) / 5
    mean = torch.tensor([0.5, -0.5], dtype=DT)
    prior = Gaussian(mean, cov, dtype=DT)
    x = points(6, (2,), seed=2)
    sig = torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0, 0.02], dtype=DT)
    got = prior.score(x, sig)
    for i in range(6):
        noisy = MultivariateNormal(mean, cov + sig[i] ** 2 * torch.eye(2, dtype=DT))
        assert torch.allclose(got[i], autograd_score(noisy.log_prob, x[i]), rtol=1e-9, atol=1e-10)


def test_gaussian_over_image_shaped_data():
    shape = (1, 2, 2)
    mean = torch.arange(4, dtype=DT).reshape(shape) / 4
    cov = random_spd(4, seed=3)
    prior = Gaussian(mean, cov, dtype=DT)
    assert prior.data_shape == shape
    x = points(8, shape, seed=4)
    noisy = MultivariateNormal(mean.reshape(4), cov + 0.7**2 * torch.eye(4, dtype=DT))
    score = autograd_score(lambda z: noisy.log_prob(z.reshape(-1, 4)), x)
    got = prior.score(x, 0.7)
    assert got.shape == x.shape
    assert torch.allclose(got, score, rtol=1e-10, atol=1e-12)


def test_gaussian_float32_outputs_float32():
    prior = Gaussian([0.0, 1.0], [[1.0, 0.2], [0.2, 0.5]])
    x = torch.randn(4, 2)
    e = prior.eps(x, 1.0)
    assert e.dtype == torch.float32 and e.shape == (4, 2)


# ------------------------------------------------------------------------------ Gaussian mixture
def mixture_logp(weights, means, variances, sigma):
    """Exact log-density of sum_k w_k N(mu_k, diag(v_k + sigma^2)) for flattened inputs."""
    w = torch.as_tensor(weights, dtype=DT)
    w = w / w.sum()
    K = means.shape[0]
    mu = means.reshape(K, -1)
    var = variances.reshape(K, -1) + sigma**2

    def logp(x):
        xf = x.reshape(x.shape[0], -1)
        d = xf[:, None] - mu[None]
        comp = -0.5 * (d * d / var + var.log() + math.log(2 * math.pi)).sum(-1)
        return torch.logsumexp(comp + w.log(), dim=1)

    return logp


MIX_MEANS = torch.tensor([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]], dtype=DT)
MIX_W = [0.5, 0.3, 0.2]


@pytest.mark.parametrize("kind", ["shared", "per_component", "diagonal"])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_mixture_eps_is_exact_score(kind, sigma):
    variances = {"shared": torch.tensor(0.1, dtype=DT),
                 "per_component": torch.tensor([0.1, 0.05, 0.08], dtype=DT),
                 "diagonal": torch.tensor([[0.1, 0.02], [0.05, 0.3], [0.08, 0.08]], dtype=DT)}[kind]
    prior = GaussianMixture(MIX_W, MIX_MEANS, variances, dtype=DT)
    v_full = variances.expand(3, 2) if variances.ndim == 0 else (
        variances[:, None].expand(3, 2) if variances.ndim == 1 else variances)
    x = points(128, (2,), seed=5)
    score = autograd_score(mixture_logp(MIX_W, MIX_MEANS, v_full, sigma), x)
    assert torch.allclose(prior.score(x, sigma), score, rtol=1e-9, atol=1e-10)


def test_mixture_over_images_with_point_masses():
    # K = 3 "images" of shape [1, 2, 2]; zero variance (exact points) is allowed for sigma > 0.
    means = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(6), dtype=DT)
    prior = GaussianMixture([0.2, 0.3, 0.5], means, 0.0, dtype=DT)
    x = points(16, (1, 2, 2), seed=7, scale=1.0)
    for sigma in (0.3, 1.0):
        score = autograd_score(mixture_logp([0.2, 0.3, 0.5], means, torch.zeros(3, 4, dtype=DT), sigma), x)
        assert torch.allclose(prior.score(x, sigma), score, rtol=1e-9, atol=1e-10)


def test_mixture_responsibilities_are_bayes_posterior():
    var = torch.tensor([0.1, 0.05, 0.08], dtype=DT)
    prior = GaussianMixture(MIX_W, MIX_MEANS, var, dtype=DT)
    x = points(32, (2,), seed=8)
    sigma = 0.4
    r = prior.responsibilities(x, sigma)
    w = torch.tensor(MIX_W, dtype=DT)
    dens = torch.stack([MultivariateNormal(MIX_MEANS[k], (var[k] + sigma**2) * torch.eye(2, dtype=DT)).log_prob(x)
                        for k in range(3)], 1).exp() * w
    assert torch.allclose(r, dens / dens.sum(1, keepdim=True), rtol=1e-10, atol=1e-14)
    assert torch.equal(prior.nearest_component(MIX_MEANS + 0.01), torch.arange(3))


# ------------------------------------------------------------------------------ protocol checks
def test_prior_input_checks_name_the_argument():
    prior = Gaussian([0.0, 0.0], torch.eye(2), dtype=DT)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2\]"):
        prior.eps(torch.zeros(3, 3, dtype=DT), 1.0)
    with pytest.raises(TypeError, match="x has dtype"):
        prior.eps(torch.zeros(3, 2, dtype=torch.float32), 1.0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        prior.eps([[0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match="sigma"):
        prior.eps(torch.zeros(3, 2, dtype=DT), 0.0)
    with pytest.raises(ValueError, match="sigma"):
        prior.eps(torch.zeros(3, 2, dtype=DT), torch.ones(2, dtype=DT))
    with pytest.raises(ValueError, match="cond"):
        prior.eps(torch.zeros(3, 2, dtype=DT), 1.0, cond=[0, 1, 2])
    with pytest.raises(ValueError, match="guidance_scale"):
        prior.eps(torch.zeros(3, 2, dtype=DT), 1.0, guidance_scale=3.0)
    assert isinstance(prior, Prior) and prior.evals_per_call(None) == 1


def test_prior_constructor_checks():
    with pytest.raises(ValueError, match="cov"):
        Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])  # not symmetric
    with pytest.raises(ValueError, match="cov"):
        Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]])  # not PSD
    with pytest.raises(ValueError, match="cov"):
        Gaussian([0.0, 0.0], torch.eye(3))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([0.5, 0.5], MIX_MEANS, 0.1)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([0.5, -0.5, 1.0], MIX_MEANS, 0.1)
    with pytest.raises(ValueError, match="variances"):
        GaussianMixture(MIX_W, MIX_MEANS, torch.ones(2))
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(MIX_W, torch.zeros(3), 0.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_isotropic_mixture_fast_path_equals_the_general_formula(dtype):
    """Components with one variance each take the [B, K] path (no [B, K, D] arrays); it must give the general
    diagonal formula's eps and posterior, also near a mean at a small sigma, where distances cancel."""
    g = torch.Generator().manual_seed(11)
    means = torch.randn(40, 1, 8, 8, generator=g, dtype=torch.float64)
    var = torch.rand(40, generator=g, dtype=torch.float64) * 0.1 + 1e-3
    fast = GaussianMixture(torch.rand(40, generator=g, dtype=torch.float64) + 0.1, means, var, dtype=dtype)
    general = GaussianMixture(fast.weights.double(), means, var[:, None, None, None].expand(40, 1, 8, 8).clone(),
                              dtype=dtype)
    assert fast._iso_var is not None and general._iso_var is not None  # a constant diagonal is detected
    general._iso_var = None  # force the [B, K, D] formula
    x = torch.cat([means[:8] + 0.01 * torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64),
                   torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64)]).to(dtype)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for sigma in (0.01, 0.3, 5.0):
        torch.testing.assert_close(fast.responsibilities(x, sigma), general.responsibilities(x, sigma), **tol)
        torch.testing.assert_close(fast.eps(x, sigma), general.eps(x, sigma), **tol)


# ------------------------------------------------------------------------------ class-conditional mixture
CC_MEANS = torch.tensor([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0], [0.0, 2.5]], dtype=DT)
CC_LABELS = torch.tensor([0, 1, 0, 2])
CC_W = torch.tensor([0.4, 0.1, 0.2, 0.3], dtype=DT)
CC_VAR = torch.tensor([0.1, 0.05, 0.0, 0.2], dtype=DT)


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("scale", [None, 0.0, 1.0, 3.0, 7.5])
def test_class_conditional_mixture_guided_score_is_exact(sigma, scale):
    """eps_u + s (eps_c - eps_u) is exactly the guided score (1 - s) grad log p_sigma(x) + s grad log p_sigma(x | c),
    each term autograd of the closed-form mixture density (class c: its own components, weights renormalised)."""
    from diffrep_lite.priors import ClassConditionalMixture

    prior = ClassConditionalMixture(CC_MEANS, CC_LABELS, CC_VAR, weights=CC_W, dtype=DT)
    x = points(96, (2,), seed=11)
    cond = torch.arange(96) % 3
    v_full = CC_VAR[:, None].expand(4, 2)
    uncond = autograd_score(mixture_logp(CC_W, CC_MEANS, v_full, sigma), x)
    cls = torch.empty_like(x)
    for c in range(3):
        m, k = cond == c, CC_LABELS == c
        cls[m] = autograd_score(mixture_logp(CC_W[k], CC_MEANS[k], v_full[k], sigma), x[m])
    s = 1.0 if scale is None else scale
    want = (1 - s) * uncond + s * cls
    assert torch.allclose(prior.score(x, sigma, cond, scale), want, rtol=1e-9, atol=1e-10)
    # no condition: the unconditional mixture, whose class shares are the weights' (0.6, 0.1, 0.3)
    assert torch.allclose(prior.score(x, sigma), uncond, rtol=1e-9, atol=1e-10)
    assert torch.allclose(prior.class_weights, torch.tensor([0.6, 0.1, 0.3], dtype=DT))
    assert prior.evals_per_call(scale) == (1 if scale in (None, 0.0, 1.0) else 2)


def test_class_conditional_mixture_rejects_bad_input_by_name():
    from diffrep_lite.priors import ClassConditionalMixture

    prior = ClassConditionalMixture(CC_MEANS, CC_LABELS, 0.1, dtype=DT)
    x = points(2, (2,), seed=12)
    for bad in ([0, 3], [-1, 0], [0.5, 1.0], ["a", "b"]):
        with pytest.raises(ValueError, match=r"cond must be one class index in \[0, 3\)"):
            prior.eps(x, 1.0, bad)
    with pytest.raises(ValueError, match="one entry per input"):
        prior.eps(x, 1.0, [0])
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        prior.eps(x, 1.0, [0, 1], -1.0)
    with pytest.raises(ValueError, match=r"labels must be K=4 integers"):
        ClassConditionalMixture(CC_MEANS, [0.0, 1.0, 0.0, 2.0], 0.1)
    with pytest.raises(ValueError, match=r"labels must be >= 0"):
        ClassConditionalMixture(CC_MEANS, [0, -1, 0, 2], 0.1)
    with pytest.raises(ValueError, match=r"every class in \[0, 4\) needs a component; none for class\(es\) \[3\]"):
        ClassConditionalMixture(CC_MEANS, CC_LABELS, 0.1, n_classes=4)
    with pytest.raises(ValueError, match=r"n_classes must be an int >= max\(labels\) \+ 1 = 3"):
        ClassConditionalMixture(CC_MEANS, CC_LABELS, 0.1, n_classes=2)
    with pytest.raises(ValueError, match="weights must have K=4 entries"):
        ClassConditionalMixture(CC_MEANS, CC_LABELS, 0.1, weights=[1.0, 2.0])
