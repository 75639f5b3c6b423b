"""DDR: the reverse-time PF-ODE pulled back to parameter space.

State: parameters ``theta`` and one noise field per view ``eps``; the noisy views are
``x = f(theta) + sigma * eps``. One step from ``sigma`` to ``sigma'``::

    eps_hat = prior(x, sigma)                 # where the image model wants the views to go
    convention "B" (default, "fit x0_hat, carry eps_hat"):
        x0_hat = x - sigma * eps_hat
        theta  = theta + J^+ (x0_hat - f(theta))     # repeated `fit_iters` times (Gauss-Newton)
        eps    = eps_hat
    convention "A" ("pull back the ODE increment, hold eps"):
        theta  = theta + (sigma' - sigma) J^+ (eps_hat - eps)

``J^+ v`` is the least-squares solve of :mod:`diffrep_lite.pullback` — the ``(J^T J)^{-1}`` that score
distillation leaves out. With ``f`` invertible both conventions are exactly DDIM in image space.

RePaint-style resampling (``repaint_iters = U > 1``): after a step down to ``sigma'`` the views are
re-noised back up to ``sigma`` with the non-Markovian forward update
``eps <- c eps + sqrt(1 - c^2) z`` (``c`` from :func:`~diffrep_lite.schedule.renoise_coefficient`,
``c = 1`` for ``eta = 0``) and the step is redone, so the renderable content and the noise harmonise.
Convention A restarts each repeat from the level's saved ``theta`` (stacking increments overshoots).
"""
from __future__ import annotations

import torch

from ..pullback import SOLVERS, solve
from ..schedule import renoise_coefficient
from .checkpoint import load_checkpoint, save_checkpoint
from .common import (SampleResult, bcast, check_callback, check_choice, check_positive, check_progress,
                     nfe_multiplier, _check_int, init_state, prior_eps, progress_range, setup)

#: The two discretisations of the pulled-back ODE (see the module docstring and the book's pull-back chapter).
CONVENTIONS = ("A", "B")


def ddr(prior, diffrep, *, steps: int = 50, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, convention: str = "B", solver: str = "cg",
        solver_iters: int = 20, damping: float = 0.0, solver_lr: float = 1e-3, fit_iters: int = 1,
        repaint_iters: int = 1, eta: float = 0.0, progress: bool = True, callback=None,
        return_trace: bool = False, checkpoint_path=None, checkpoint_every: int = 1,
        resume_from=None) -> SampleResult:
    """Sample diffrep parameters with DDR.

    Args:
        prior: the diffusion prior (its schedule sets the noise levels).
        diffrep: the differentiable representation; its views are what the prior sees.
        steps: number of noise levels (>= 1); ``sigma`` runs over ``prior.schedule.sigma_grid(steps)``.
        n: number of independent samples (vectorised); defaults to 1 or ``params0``'s batch size.
        seed / generator: randomness (one of them; default seed 0). Same seed, same samples.
        params0: optional initial parameters (dict of ``[n, ...]`` tensors); default ``diffrep.init_params``.
        cond, guidance_scale: condition and CFG scale passed to the prior for every view.
        convention: ``"B"`` (fit ``x0_hat``, carry ``eps_hat``) or ``"A"`` (pull back the increment).
        solver: pull-back solver, one of ``dense``, ``cg``, ``adam``, ``gd`` (``gd`` drops the metric).
        solver_iters: CG / Adam iterations per solve; damping: Levenberg-Marquardt ``lambda``;
        solver_lr: Adam / GD learning rate.
        fit_iters: Gauss-Newton repeats of the convention-B fit per step (>= 1).
        repaint_iters: RePaint resamplings ``U`` per level (>= 1; 1 = none).
        eta: stochasticity of the RePaint jump back, in [0, 1] (0 reuses the tracked noise).
        progress: tqdm progress bar on/off. callback: ``callback(step, info)`` after each level.
        return_trace: keep the renders after every level in ``result.trace["x"]`` (after a resume: the
            levels run in this call only).
        checkpoint_path: if given, save ``(theta, eps, generator state, step)`` there with ``torch.save``
            every ``checkpoint_every`` levels and after the last (see :mod:`.checkpoint`).
        resume_from: a checkpoint file of an interrupted run with the same settings and seed; the run goes
            on from its step and ends identical to an uninterrupted run.

    Returns:
        :class:`~diffrep_lite.samplers.common.SampleResult` with ``params``, renders ``x`` and ``nfe``
        (``steps * repaint_iters`` prior evaluations per view, x2 under CFG for network priors).
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale)
    check_choice(convention, "convention", CONVENTIONS)
    check_choice(solver, "solver", SOLVERS)
    _check_int(solver_iters, "solver_iters")
    _check_int(fit_iters, "fit_iters")
    _check_int(repaint_iters, "repaint_iters")
    if isinstance(damping, bool) or not isinstance(damping, (int, float)):
        raise TypeError(f"damping must be a float >= 0, got {damping!r}")
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0, got {damping!r}")
    check_positive(solver_lr, "solver_lr")
    renoise_coefficient(0.0, 1.0, eta)  # validates eta
    check_callback(callback)
    check_progress(progress)
    _check_int(checkpoint_every, "checkpoint_every")
    solver_kw = dict(solver=solver, iters=solver_iters, damping=damping, lr=solver_lr)

    sigmas = prior.schedule.sigma_grid(steps)
    eps, params = init_state(s)
    start = 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, method="ddr", steps=steps, n=s.n, eps_shape=eps.shape,
                                param_shapes=diffrep.param_shapes())
        start, eps = state["step"], state["eps"].to(device=s.device, dtype=s.dtype)
        params = {k: t.to(device=s.device, dtype=s.dtype) for k, t in state["params"].items()}
        s.generator.set_state(state["generator"])
    render = diffrep.render
    with torch.no_grad():
        f = render(params)
    trace = {"sigmas": sigmas, **({"x": [f.detach().cpu()]} if return_trace else {})}

    for i in progress_range(steps, progress, "DDR"):
        if i < start:  # done before the checkpoint we resumed from
            continue
        sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
        saved = params
        for u in range(repaint_iters):
            if convention == "A" and u > 0:
                params = saved  # restart each repeat from the level's theta
                with torch.no_grad():
                    f = render(params)
            eh = prior_eps(s, f + sig * eps, sig)
            if convention == "B":
                x0 = f + sig * (eps - eh)
                for _ in range(fit_iters):
                    d = solve(render, params, x0 - f, **solver_kw)
                    params = {k: params[k] + d[k] for k in params}
                    with torch.no_grad():
                        f = render(params)
                eps = eh
            else:
                d = solve(render, saved, (sig_next - sig) * (eh - eps), **solver_kw)
                params = {k: saved[k] + d[k] for k in saved}
                with torch.no_grad():
                    f = render(params)
            if u < repaint_iters - 1:  # jump back up from sig_next to sig: the non-Markovian forward update
                c = renoise_coefficient(sig_next, sig, eta)
                if c != 1.0:
                    z = torch.randn(eps.shape, generator=s.generator, dtype=eps.dtype, device=eps.device)
                    eps = c * eps + (1 - c * c) ** 0.5 * z
        if return_trace:
            trace["x"].append(f.detach().cpu())
        if callback is not None:
            callback(i, {"params": params, "x": f, "eps": eps, "sigma": sig_next})
        if checkpoint_path is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == steps):
            save_checkpoint(checkpoint_path, method="ddr", step=i + 1, steps=steps, params=params, eps=eps,
                            generator=s.generator)
    return SampleResult(x=f, params=params, nfe=steps * repaint_iters * nfe_multiplier(s), trace=trace,
                        method="ddr")


__all__ = ["ddr", "CONVENTIONS", "bcast"]
