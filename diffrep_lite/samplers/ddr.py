"""DDR (Savani, Finzi, Kolter, NeurIPS 2024): the reverse-time PF-ODE pulled back to parameter space.

State: parameters ``theta`` and one noise field per view ``eps``; the noisy views are
``x = f(theta) + sigma * eps``. One step from ``sigma`` to ``sigma'``::

    eps_hat = prior(x, sigma)                 # where the image model wants the views to go
    convention "B" (default, "fit x0_hat, carry eps_hat"):   DDRStep
        x0_hat = x - sigma * eps_hat
        theta  = theta + J^+ (x0_hat - f(theta))     # repeated `fits` times (Gauss-Newton)
        eps    = eps_hat        # or, with eta > 0: c eps_hat + sqrt(1 - c^2) z (DDIM's eta)
    convention "A" ("pull back the ODE increment, hold eps"):   DDRStepA
        theta  = theta + (sigma' - sigma) J^+ (eps_hat - eps)

``J^+ v`` is the least-squares solve of :mod:`diffrep_lite.pullback`, the ``(J^T J)^{-1}`` that score
distillation leaves out. With ``f`` invertible both conventions are exactly DDIM in image space. RePaint
resampling is the :class:`~diffrep_lite.samplers.loop.RePaint` wrapper around the step, and
:func:`~diffrep_lite.samplers.loop.run` is the loop every sampler shares; :func:`ddr` composes them from flat
keywords. Derivations: the book's pull-back and forward-update chapters.
"""
from __future__ import annotations

import warnings

import torch

from ..presets import ddr_preset
from ..pullback import Solver, make_solver
from ..schedule import renoise_coefficient
from .checkpoint import CheckpointPlan
from ..validation import check_real
from .common import SampleResult, check_choice, check_finite, check_int, nfe_multiplier, prior_eps, setup
from .loop import (VIEW_NOISE, RePaint, State, Step, check_view_noise, forward_update, jump_correlation,
                   run)

#: The two discretisations of the pulled-back ODE (see the module docstring).
CONVENTIONS = ("A", "B")

__all__ = ["ddr", "DDRStep", "DDRStepA", "CONVENTIONS", "VIEW_NOISE", "jump_correlation", "forward_update"]


class DDRStep(Step):
    """One level of DDR, convention B: fit ``f(theta)`` to ``x0_hat`` with ``fits`` Gauss-Newton solves, carry
    ``eps_hat`` (part fresh noise with DDIM's ``eta > 0``: then DDR on the identity diffrep is the reference
    sampler with the same ``eta``).

    Args:
        solver: a :class:`~diffrep_lite.pullback.Solver` (e.g. ``CG(iters=4)``).
        fits: Gauss-Newton fits per level (>= 1); one is exact for a linear diffrep.
        eta: DDIM stochasticity of every level's own step, in ``[0, 1]`` (0: the deterministic PF-ODE).
        view_noise: ``"independent"`` or ``"shared"`` per-view noise (:data:`~.loop.VIEW_NOISE`).
    """

    name, tracks_noise = "ddr", True

    def __init__(self, solver: Solver, *, fits: int = 1, eta: float = 0.0, view_noise: str = "independent"):
        if not isinstance(solver, Solver):
            raise TypeError(f"solver must be a pullback.Solver (e.g. pullback.CG(iters=4)), got {solver!r}")
        self.solver, self.fits = solver, check_int(fits, "fit_iters")
        self.eta = check_real(eta, "eta", low=0.0, high=1.0)
        self.view_noise = check_choice(view_noise, "view_noise", VIEW_NOISE)
        self.hint = solver.hint()

    def check(self, s) -> None:
        self.solver.check(s.diffrep)
        check_view_noise(self.view_noise, s)

    def init(self, s) -> State:
        eps = self.draw_noise(s)  # noise first, then parameters: the reference sampler draws the same noise
        params = self.initial_params(s)
        with torch.no_grad():
            return State(x=s.diffrep.render(params), params=params, eps=eps)

    def eps_hat(self, s, state: State, i: int, sig: float) -> torch.Tensor:
        eh = prior_eps(s, state.x + sig * state.eps, sig)
        check_finite(self.name, f"level {i}", sig, "the prior returned a non-finite eps_hat for finite views: "
                     f"check the prior and guidance_scale={s.guidance_scale!r}", eps_hat=eh)
        return eh

    def pull_back(self, s, params: dict, v: torch.Tensor, key: int):
        """``params + J^+ v`` and its render."""
        d = self.solver(s.diffrep.render, params, v, diffrep=s.diffrep, key=key)
        params = {k: params[k] + d[k] for k in params}
        with torch.no_grad():
            return params, s.diffrep.render(params)

    def __call__(self, s, state, i, sig, sig_next, repeat=0):
        eh = self.eps_hat(s, state, i, sig)
        params, f = state.params, state.x
        x0 = f + sig * (state.eps - eh)
        for fit in range(self.fits):
            params, f = self.pull_back(s, params, x0 - f, key=1_000_003 * i + 1009 * repeat + fit)
        eps = eh
        if self.eta:
            c = renoise_coefficient(sig_next, sig, self.eta)
            eps = forward_update(eh, c, s.generator, z=self.draw_noise(s) if self.view_noise == "shared" else None)
        return State(x=f, params=params, eps=eps), sig_next, nfe_multiplier(s)


class DDRStepA(DDRStep):
    """One level of DDR, convention A: ``theta += (sigma' - sigma) J^+ (eps_hat - eps)`` with ``eps`` held.
    RePaint repeats restart from the block's saved ``theta`` (stacked increments would overshoot)."""

    restart_repeats = True

    def __init__(self, solver: Solver, *, view_noise: str = "independent"):
        super().__init__(solver, view_noise=view_noise)

    def __call__(self, s, state, i, sig, sig_next, repeat=0):
        eh = self.eps_hat(s, state, i, sig)
        params, f = self.pull_back(s, state.params, (sig_next - sig) * (eh - state.eps),
                                   key=1_000_003 * i + 1009 * repeat)
        return State(x=f, params=params, eps=state.eps), sig_next, nfe_multiplier(s)


def ddr(prior, diffrep, *, steps: int = 50, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, convention: str = "B", solver=None, solver_iters=None,
        damping=None, solver_lr=None, preconditioner=None, fit_iters=None, repaint_iters: int = 1, jump: int = 1,
        jump_eta: float = 0.5, eta: float = 0.0, view_noise: str = "independent", progress: bool = True,
        callback=None, return_trace: bool = False, checkpoint_path=None, checkpoint_every: int = 1,
        resume_from=None, overwrite: bool = False, step_eta=None) -> SampleResult:
    """Sample diffrep parameters with DDR: :class:`DDRStep` (or :class:`DDRStepA`) in a RePaint wrapper, run by the
    shared loop. Unset ``fit_iters`` / ``solver`` / ``solver_iters`` take the diffrep's preset
    (:mod:`diffrep_lite.presets`: six fits of four CG iterations for neural fields).

    Args:
        steps: noise levels (>= 1), ``prior.schedule.sigma_grid(steps)``. n, seed / generator, params0, cond,
            guidance_scale, progress, callback, return_trace: as for every sampler (:func:`~diffrep_lite.sample`).
        convention: ``"B"`` (fit ``x0_hat``, carry ``eps_hat``) or ``"A"`` (pull back the increment).
        solver: a name (``dense``, ``kernel``, ``cg``, ``adam``, ``gd``) or a :class:`~diffrep_lite.pullback.Solver`;
            with a name, ``solver_iters``, ``damping``, ``solver_lr`` and ``preconditioner`` set its options.
        fit_iters: Gauss-Newton fits per level (convention B).
        repaint_iters, jump, jump_eta: RePaint's ``U``, jump length and jump stochasticity (:class:`~.loop.RePaint`;
            ``jump_eta`` was called ``eta`` before, which now means DDIM's stochasticity as in the reference sampler).
        eta: DDIM's stochasticity of every level's own step (convention B), as in the reference sampler.
        view_noise: ``"independent"`` (the paper) or ``"shared"``: one noise field seen through the views
            (:meth:`~diffrep_lite.diffreps.base.Diffrep.shared_noise`), so overlapping views start alike.
        checkpoint_path, checkpoint_every, resume_from, overwrite: see :class:`~.checkpoint.CheckpointPlan`.
        step_eta: deprecated name of ``eta``.

    Returns:
        :class:`~diffrep_lite.samplers.common.SampleResult`; ``nfe`` counts prior evaluations per view and sample
        in this call (``steps * repaint_iters``, x2 under classifier-free guidance for network priors).
    """
    if step_eta is not None:
        warnings.warn("ddr's step_eta is now eta (DDIM's stochasticity, as in the reference sampler); the RePaint "
                      "jump's is jump_eta", DeprecationWarning, stacklevel=2)
        if isinstance(step_eta, bool) or not isinstance(step_eta, (int, float)) or not 0.0 <= step_eta <= 1.0:
            raise ValueError(f"step_eta (now eta) must be a float in [0, 1], got {step_eta!r}")
        if step_eta and convention != "B":
            raise ValueError(f"step_eta > 0 needs convention='B' (convention A holds eps), got {convention!r}")
        eta = step_eta
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale, flags=dict(progress=progress, return_trace=return_trace))
    check_choice(convention, "convention", CONVENTIONS)
    preset = ddr_preset(diffrep)
    solver = preset["solver"] if solver is None else solver
    if solver == preset["solver"] and solver_iters is None:
        solver_iters = preset["solver_iters"]
    solver = make_solver(solver, iters=solver_iters, damping=damping, lr=solver_lr, preconditioner=preconditioner)
    if convention == "A":
        if eta or (fit_iters or 1) != 1:
            raise ValueError(f"eta > 0 and fit_iters > 1 need convention='B', got convention='A' with eta={eta!r}, "
                             f"fit_iters={fit_iters!r}")
        step = DDRStepA(solver, view_noise=view_noise)
    else:
        step = DDRStep(solver, fits=preset["fit_iters"] if fit_iters is None else fit_iters, eta=eta,
                       view_noise=view_noise)
    sampler = RePaint(step, iters=repaint_iters, jump=jump, eta=jump_eta)
    plan = CheckpointPlan(checkpoint_path, every=checkpoint_every, resume_from=resume_from, overwrite=overwrite,
                          settings={"method": "ddr", "convention": convention, **step.settings(),
                                    **sampler.settings()})
    return run(s, sampler, steps, progress=progress, callback=callback, return_trace=return_trace,
               checkpoint=plan)
