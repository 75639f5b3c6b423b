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
from .checkpoint import CheckpointPlan
from ..validation import check_real
from .common import SampleResult, check_finite, nfe_multiplier, prior_eps, setup
from .loop import RePaint, State, Step, forward_update, run

__all__ = ["reference", "DDIMStep"]


class DDIMStep(Step):
    """One DDIM step in the prior's data space, held as ``(x0_hat, eps)`` with ``x_t = x0_hat + sigma eps``:
    ``eps_hat = prior(x_t)``, ``x0_hat = x_t - sigma eps_hat``, ``eps = c eps_hat + sqrt(1 - c^2) z`` (``c = 1``
    for ``eta = 0``). It tracks the noise, so RePaint wraps it as it wraps DDR's step."""

    name, tracks_noise = "reference", True

    def __init__(self, eta: float = 0.0):
        self.eta = check_real(eta, "eta", low=0.0, high=1.0)
        self.hint = "the prior returned a non-finite eps_hat"

    def init(self, s) -> State:
        eps = self.draw_noise(s)
        return State(x=torch.zeros_like(eps), eps=eps)

    def observe(self, state: State, sigma) -> torch.Tensor:
        return state.x + float(sigma) * state.eps  # the noisy sample x_t

    def __call__(self, s, state, i, sig, sig_next, repeat=0):
        xt = state.x + sig * state.eps
        eh = prior_eps(s, xt, sig)
        check_finite("reference", f"step {i}", sig, "the prior returned a non-finite eps_hat for finite inputs: "
                     f"check the prior and guidance_scale={s.guidance_scale!r}", eps_hat=eh)
        x0 = xt - sig * eh
        eps = forward_update(eh, renoise_coefficient(sig_next, sig, self.eta), s.generator)
        return State(x=x0, eps=eps), sig_next, nfe_multiplier(s)


def reference(prior, diffrep=None, *, steps: int = 50, n: int | None = None, seed: int | None = None,
              generator=None, cond=None, guidance_scale=None, eta: float = 0.0, repaint_iters: int = 1,
              jump: int = 1, jump_eta: float = 0.5, progress: bool = True, callback=None, return_trace: bool = False,
              params0=None, checkpoint_path=None, checkpoint_every: int = 1, resume_from=None,
              overwrite: bool = False) -> SampleResult:
    """DDIM samples of the prior in its own data space (:class:`DDIMStep` run by the shared loop).

    Args:
        prior: the diffusion prior.
        diffrep: optional; only its number of views (and view conditions) is used, so the output has the
            same ``[n, V, *shape]`` layout as the diffrep samplers. The same seed gives the same initial
            noise as :func:`~diffrep_lite.samplers.ddr.ddr`.
        steps: number of DDIM steps (>= 1). n, seed / generator, cond, guidance_scale, progress, callback,
            return_trace, checkpoint_path, checkpoint_every, resume_from, overwrite: as for every sampler.
        eta: DDIM stochasticity in [0, 1] (0 = deterministic).
        repaint_iters, jump, jump_eta: RePaint around the DDIM step (:class:`~.loop.RePaint`).

    ``result.x`` and ``trace["x"]`` hold the noisy samples ``x_t`` (the clean samples at the end).
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale, need_diffrep=False,
              flags=dict(progress=progress, return_trace=return_trace))
    if params0 is not None:
        raise ValueError("reference does not use params0")
    sampler = RePaint(DDIMStep(eta), iters=repaint_iters, jump=jump, eta=jump_eta)
    plan = CheckpointPlan(checkpoint_path, every=checkpoint_every, resume_from=resume_from, overwrite=overwrite,
                          settings={"method": "reference", "eta": eta, **sampler.settings()})
    return run(s, sampler, steps, progress=progress, callback=callback, return_trace=return_trace, checkpoint=plan)
