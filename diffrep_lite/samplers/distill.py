"""Score distillation in the same interface: SJC (with PAAS) and SDS.

Both move ``theta`` along the *covector* ``J^T g`` of an image-space direction ``g`` with an optimiser —
steps 1 and 2 of the pull-back without step 3, the inverse metric ``(J^T J)^{-1}``. They are
mode-seeking: they climb a (smoothed) log-density instead of transporting noise to samples.

* SJC (Wang et al. 2023): at level ``sigma``, fresh noise ``n``, ``z = f(theta) + sigma n``,
  ``g = (D(z, sigma) - f(theta)) / sigma`` (PAAS, ``= sigma * grad log p_{sqrt 2 sigma}(f)`` in expectation)
  or ``g = (D(z, sigma) - z) / sigma`` without PAAS; ascend ``J^T g`` (Adamax, lr 0.05 in SJC).
* SDS (Poole et al. 2022): ``t ~ U(t_min, t_max)``, fresh ``eps``, ``z = f(theta) + sigma_t eps``,
  descend ``w(t) J^T (eps_hat(z) - eps)`` with ``w = 1 - abar_t`` (Adam).
"""
from __future__ import annotations

import torch

from ..schedule import sigma_to_alpha_bar
from .common import (check_t_range, SampleResult, check_callback, check_choice, check_finite, check_positive,
                     check_progress, init_state, nfe_multiplier, prior_eps, progress_range, setup, bcast)

#: Optimiser name -> ``torch.optim`` class, for ``optimizer=`` of :func:`sjc` and :func:`sds`.
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
SJC_SIGMAS = ("anneal", "random")
SDS_WEIGHTINGS = ("sds", "uniform")


def _check_optimiser_args(optimizer, lr, callback, progress):
    """Validate the loop's arguments (before any sampling work)."""
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_positive(lr, "lr")
    check_callback(callback)
    check_progress(progress)


def _optimise(s, diffrep, params, steps, optimizer, lr, direction, progress, callback, desc, return_trace):
    """Shared loop: ``direction(step, f)`` returns ``(g, sigma)``, the image-space ascent direction ``g``
    ``[n, V, ...]`` at the current render ``f`` and the noise level it used; the optimiser gets the gradient
    ``-J^T g``.

    One render per step: the render that gives the direction also carries the graph for ``J^T g``. The
    render after step ``i`` is the one step ``i + 1`` starts from, so ``callback(i, ...)``, the trace and the
    divergence check of step ``i`` run once it exists (the last step's after one final render).
    """
    _check_optimiser_args(optimizer, lr, callback, progress)
    method = desc.lower()
    leaves = {k: t.detach().clone().requires_grad_(True) for k, t in params.items()}
    opt = OPTIMIZERS[optimizer](list(leaves.values()), lr=lr)
    trace = {"x": []} if return_trace else {}
    hint = f"lr (the {optimizer} learning rate, now {lr:g}) is too large: lower it"
    sigma = float("nan")

    def after_step(i, f):
        check_finite(method, f"step {i}", sigma, hint, render=f, params=leaves)
        if return_trace:
            trace["x"].append(f.cpu())
        if callback is not None:
            callback(i, {"params": leaves, "x": f})

    for i in progress_range(steps, progress, desc):
        opt.zero_grad(set_to_none=True)
        f = diffrep.render(leaves)
        fd = f.detach()
        if i == 0:
            if return_trace:
                trace["x"].append(fd.cpu())
        else:
            after_step(i - 1, fd)
        g, sigma = direction(i, fd)
        check_finite(method, f"step {i}", sigma, "the prior returned a non-finite prediction for a finite render: "
                     f"check the prior and guidance_scale={s.guidance_scale!r}", direction=g)
        (-(f * g).sum()).backward()
        opt.step()
    params = {k: t.detach() for k, t in leaves.items()}
    with torch.no_grad():
        f = diffrep.render(params)
    after_step(steps - 1, f)
    return params, f, trace


def sjc(prior, diffrep, *, steps: int = 200, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, lr: float = 0.05, optimizer: str = "adamax",
        paas: bool = True, sigmas: str = "anneal", progress: bool = True, callback=None,
        return_trace: bool = False) -> SampleResult:
    """Score Jacobian Chaining: ascend ``J^T g`` with ``g`` the (PAAS) score scaled by ``sigma``.

    Arguments not listed here are as in :func:`~diffrep_lite.samplers.ddr.ddr`.

    Args:
        steps: optimiser steps (the step budget; one prior evaluation per view each).
        lr, optimizer: step size and optimiser (``adamax`` as in SJC, ``adam`` or ``sgd``).
        paas: use Perturb-and-Average Scoring, ``g = (D(f + sigma n) - f) / sigma`` (SJC eq. 16).
        sigmas: ``"anneal"`` walks the schedule's ``steps`` levels from high to low noise;
            ``"random"`` draws a tick uniformly per step (SJC's code, without the 30 largest / 10 smallest).
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale)
    check_choice(sigmas, "sigmas", SJC_SIGMAS)
    if not isinstance(paas, bool):
        raise TypeError(f"paas must be True or False, got {paas!r}")
    _check_optimiser_args(optimizer, lr, callback, progress)
    _, params = init_state(s)
    grid = prior.schedule.sigma_grid(steps)[:-1]
    table = prior.schedule.sigmas
    T = table.numel()
    lo, hi = (10, T - 30) if T > 80 else (0, T)

    def direction(i, f):
        if sigmas == "anneal":
            sig = torch.full((s.n,), float(grid[i]), dtype=f.dtype, device=f.device)
        else:
            idx = torch.randint(lo, hi, (s.n,), generator=s.generator, device=s.device)
            sig = table.to(s.device)[idx].to(f.dtype)
        noise = torch.randn(f.shape, generator=s.generator, dtype=f.dtype, device=f.device)
        z = f + bcast(sig, f) * noise
        D = z - bcast(sig, f) * prior_eps(s, z, sig)
        return (D - (f if paas else z)) / bcast(sig, f), sig

    params, f, trace = _optimise(s, diffrep, params, steps, optimizer, lr, direction, progress, callback,
                                 "SJC", return_trace)
    return SampleResult(x=f, params=params, nfe=steps * nfe_multiplier(s), trace=trace, method="sjc")


def sds(prior, diffrep, *, steps: int = 200, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, lr: float = 0.01, optimizer: str = "adam",
        t_range=(0.02, 0.98), weighting: str = "sds", progress: bool = True, callback=None,
        return_trace: bool = False) -> SampleResult:
    """Score Distillation Sampling: descend ``w(t) J^T (eps_hat(f + sigma_t eps) - eps)``.

    Arguments not listed here are as in :func:`~diffrep_lite.samplers.ddr.ddr`.

    Args:
        steps: optimiser steps. lr, optimizer: as in DreamFusion/threestudio (Adam).
        t_range: ``(t_min, t_max)`` fractions of the training ticks to draw ``t`` from, ``0 <= t_min < t_max <= 1``.
        weighting: ``"sds"`` (``w = 1 - abar_t``) or ``"uniform"`` (``w = 1``).
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale)
    check_choice(weighting, "weighting", SDS_WEIGHTINGS)
    t_min, t_max = check_t_range(t_range)
    _check_optimiser_args(optimizer, lr, callback, progress)
    _, params = init_state(s)
    table = prior.schedule.sigmas.to(s.device)
    T = table.numel()
    lo, hi = int(t_min * (T - 1)), max(int(t_max * (T - 1)), int(t_min * (T - 1)) + 1)

    def direction(i, f):
        idx = torch.randint(lo, hi + 1, (s.n,), generator=s.generator, device=s.device)
        sig = table[idx].to(f.dtype)
        noise = torch.randn(f.shape, generator=s.generator, dtype=f.dtype, device=f.device)
        eh = prior_eps(s, f + bcast(sig, f) * noise, sig)
        w = (1 - sigma_to_alpha_bar(sig).to(f.dtype)) if weighting == "sds" else torch.ones_like(sig)
        return -bcast(w, f) * (eh - noise), sig

    params, f, trace = _optimise(s, diffrep, params, steps, optimizer, lr, direction, progress, callback,
                                 "SDS", return_trace)
    return SampleResult(x=f, params=params, nfe=steps * nfe_multiplier(s), trace=trace, method="sds")


__all__ = ["sjc", "sds", "OPTIMIZERS"]
