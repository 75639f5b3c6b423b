"""The reference sampler: plain DDIM in image space (no diffrep), one trajectory per view.

In the VE form one DDIM step from ``sigma`` to ``sigma'`` keeps the predicted clean image and rescales
the predicted noise: ``x' = x0_hat + sigma' (c eps_hat + sqrt(1 - c^2) z)`` with ``c = 1`` for
``eta = 0`` (deterministic DDIM, the Euler step of the PF-ODE ``dx/dsigma = eps_hat``).

**Equivalence with diffusers.** For a :class:`~diffrep_lite.priors.UNetPrior` this is exactly diffusers'
``DDIMScheduler`` loop (``timestep_spacing="trailing"``, ``set_alpha_to_one=True``) run with
``scheduler.step(..., use_clipped_model_output=True)``: the steps are the same VP update written in VE
units. With ``clip_sample`` on, the prior returns the noise consistent with the *clipped* ``x0_hat``
(``eps = (x - clamp(x0_hat)) / sigma``), which is what ``use_clipped_model_output=True`` does. diffusers'
default ``use_clipped_model_output=False`` instead combines the clipped ``x0_hat`` with the *unclipped*
``eps_hat``, a different (inconsistent) sampler. Tests: ``tests/test_unet_prior.py`` (a tiny UNet and the
shipped digits model).
"""
from __future__ import annotations

import torch

from ..schedule import renoise_coefficient
from .common import (SampleResult, check_callback, check_finite, check_progress, nfe_multiplier, prior_eps,
                     progress_range, setup)

__all__ = ["reference"]


def reference(prior, diffrep=None, *, steps: int = 50, n: int | None = None, seed: int | None = None,
              generator=None, cond=None, guidance_scale=None, eta: float = 0.0, progress: bool = True,
              callback=None, return_trace: bool = False, params0=None) -> SampleResult:
    """DDIM samples of the prior in its own data space.

    Args:
        prior: the diffusion prior.
        diffrep: optional; only its number of views (and view conditions) is used, so the output has the
            same ``[n, V, *shape]`` layout as the diffrep samplers. The same seed gives the same initial
            noise as :func:`~diffrep_lite.samplers.ddr.ddr`.
        steps: number of DDIM steps (>= 1).
        n: number of samples.
        seed / generator: randomness (one of them; default seed 0).
        cond, guidance_scale: condition and classifier-free guidance scale, passed to the prior.
        eta: DDIM stochasticity in [0, 1] (0 = deterministic).
        progress: show a tqdm progress bar.
        callback: ``callback(step, info)`` after each step.
        return_trace: keep every intermediate ``x``.
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale, need_diffrep=False)
    if params0 is not None:
        raise ValueError("reference does not use params0")
    renoise_coefficient(0.0, 1.0, eta)  # validates eta before any work
    check_callback(callback)
    check_progress(progress)
    sigmas = prior.schedule.sigma_grid(steps)
    eps = torch.randn(s.n, s.V, *prior.data_shape, generator=s.generator, dtype=s.dtype, device=s.device)
    x = float(sigmas[0]) * eps
    trace = {"sigmas": sigmas, **({"x": [x.detach().cpu()]} if return_trace else {})}
    for i in progress_range(steps, progress, "reference DDIM"):
        sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
        eh = prior_eps(s, x, sig)
        check_finite("reference", f"step {i}", sig, "the prior returned a non-finite eps_hat for finite inputs: "
                     f"check the prior and guidance_scale={guidance_scale!r}", eps_hat=eh)
        x0 = x - sig * eh
        c = renoise_coefficient(sig_next, sig, eta)
        noise = eh if c == 1.0 else c * eh + (1 - c * c) ** 0.5 * torch.randn(
            x.shape, generator=s.generator, dtype=x.dtype, device=x.device)
        x = x0 + sig_next * noise
        if return_trace:
            trace["x"].append(x.detach().cpu())
        if callback is not None:
            callback(i, {"x": x, "x0": x0, "sigma": sig_next})
    return SampleResult(x=x, params=None, nfe=steps * nfe_multiplier(s), trace=trace, method="reference")
