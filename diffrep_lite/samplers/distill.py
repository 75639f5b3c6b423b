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

import warnings

import torch

from ..schedule import sigma_to_alpha_bar
from .checkpoint import CheckpointPlan
from ..validation import check_real
from .common import (SampleResult, bcast, check_choice, check_finite, check_t_range, nfe_multiplier,
                     prior_eps, setup)
from .loop import State, Step, run

#: Optimiser name -> ``torch.optim`` class, for ``optimizer=`` of :func:`sjc` and :func:`sds`.
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamax": torch.optim.Adamax}
SJC_SIGMAS = ("anneal", "random")
SDS_WEIGHTINGS = ("sds", "uniform")

__all__ = ["sjc", "sds", "OPTIMIZERS", "OptimiserStep", "optimise"]


class OptimiserStep(Step):
    """One optimiser step of score distillation: ``theta`` moves along the covector ``J^T g`` of the image-space
    direction ``g, sigma, evals = direction(s, i, f)`` (the optimiser gets the gradient ``-J^T g``).

    One render per step: the render after step ``i`` carries the graph for step ``i + 1``'s ``J^T g``. The
    optimiser's state travels in ``State.extra`` (checkpoints keep it).
    """

    def __init__(self, name: str, direction, *, optimizer: str = "adam", lr: float = 0.01):
        self.name, self.direction = name, direction
        self.optimizer = check_choice(optimizer, "optimizer", OPTIMIZERS)
        self.lr = check_real(lr, "lr", low=0.0, low_open=True)
        self.hint = f"lr (the {optimizer} learning rate, now {lr:g}) is too large: lower it"
        self._opt = self._leaves = self._f = None

    def settings(self) -> dict:
        return {"optimizer": self.optimizer, "lr": self.lr}

    def _start(self, s, params: dict, opt_state=None) -> None:
        self._leaves = {k: t.detach().clone().requires_grad_(True) for k, t in params.items()}
        self._opt = OPTIMIZERS[self.optimizer](list(self._leaves.values()), lr=self.lr)
        if opt_state:
            self._opt.load_state_dict(opt_state)
        self._f = s.diffrep.render(self._leaves)

    def init(self, s) -> State:
        self.draw_noise(s)  # drawn and unused: the parameters come from the same random stream as DDR's
        self._start(s, self.initial_params(s))
        return State(x=self._f.detach(), params={k: t.detach() for k, t in self._leaves.items()})

    def __call__(self, s, state, i, sig, sig_next, repeat=0):
        if self._opt is None:  # resumed from a checkpoint
            self._start(s, state.params, state.extra.get("optimizer"))
        self._opt.zero_grad(set_to_none=True)
        f = self._f
        g, sigma, evals = self.direction(s, i, f.detach())
        check_finite(self.name, f"step {i}", sigma, "the prior returned a non-finite prediction for a finite "
                     f"render: check the prior and guidance_scale={s.guidance_scale!r}", direction=g)
        (-(f * g).sum()).backward()
        self._opt.step()
        self._f = s.diffrep.render(self._leaves)
        return State(x=self._f.detach(), params={k: t.detach() for k, t in self._leaves.items()},
                     extra={"optimizer": self._opt.state_dict()}), sigma, evals


def optimise(s, steps: int, name: str, direction, *, optimizer: str, lr: float, settings: dict, progress=True,
             callback=None, return_trace=False, checkpoint_path=None, checkpoint_every=1, resume_from=None,
             overwrite=False) -> SampleResult:
    """Run an :class:`OptimiserStep` with ``direction`` through the shared loop (SJC, SDS, SDI)."""
    step = OptimiserStep(name, direction, optimizer=optimizer, lr=lr)
    plan = CheckpointPlan(checkpoint_path, every=checkpoint_every, resume_from=resume_from, overwrite=overwrite,
                          settings={"method": name, **step.settings(), **settings})
    return run(s, step, steps, progress=progress, callback=callback, return_trace=return_trace, checkpoint=plan)


def sjc(prior, diffrep, *, steps: int = 200, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, lr: float = 0.05, optimizer: str = "adamax",
        paas: bool = True, sigma_schedule: str = "anneal", progress: bool = True, callback=None,
        return_trace: bool = False, checkpoint_path=None, checkpoint_every: int = 1, resume_from=None,
        overwrite: bool = False, sigmas=None) -> SampleResult:
    """Score Jacobian Chaining: ascend ``J^T g`` with ``g`` the (PAAS) score scaled by ``sigma``.

    Arguments not listed here are as in :func:`~diffrep_lite.samplers.ddr.ddr`.

    Args:
        steps: optimiser steps, one prior evaluation per view each (the levels of the schedule's grid under
            ``sigma_schedule="anneal"``).
        lr, optimizer: step size and optimiser (``adamax`` as in SJC, ``adam`` or ``sgd``).
        paas: use Perturb-and-Average Scoring, ``g = (D(f + sigma n) - f) / sigma`` (SJC eq. 16).
        sigma_schedule: ``"anneal"`` walks the schedule's ``steps`` levels from high to low noise;
            ``"random"`` draws a tick uniformly per step (SJC's code, without the 30 largest / 10 smallest).
        sigmas: deprecated name of ``sigma_schedule``.
    """
    if sigmas is not None:
        warnings.warn("sjc's sigmas= is now sigma_schedule=", DeprecationWarning, stacklevel=2)
        sigma_schedule = sigmas
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale, flags=dict(progress=progress, return_trace=return_trace))
    check_choice(sigma_schedule, "sigma_schedule" if sigmas is None else "sigmas (now sigma_schedule)", SJC_SIGMAS)
    if not isinstance(paas, bool):
        raise TypeError(f"paas must be True or False, got {paas!r}")
    grid = prior.schedule.sigma_grid(steps)[:-1]
    table = prior.schedule.sigmas
    T = table.numel()
    lo, hi = (10, T - 30) if T > 80 else (0, T)

    def direction(s, i, f):
        if sigma_schedule == "anneal":
            sig = torch.full((s.n,), float(grid[i]), dtype=f.dtype, device=f.device)
        else:
            idx = torch.randint(lo, hi, (s.n,), generator=s.generator, device=s.device)
            sig = table.to(s.device)[idx].to(f.dtype)
        noise = torch.randn(f.shape, generator=s.generator, dtype=f.dtype, device=f.device)
        z = f + bcast(sig, f) * noise
        D = z - bcast(sig, f) * prior_eps(s, z, sig)
        return (D - (f if paas else z)) / bcast(sig, f), sig, nfe_multiplier(s)

    return optimise(s, steps, "sjc", direction, optimizer=optimizer, lr=lr,
                    settings={"paas": paas, "sigma_schedule": sigma_schedule}, progress=progress, callback=callback,
                    return_trace=return_trace, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                    resume_from=resume_from, overwrite=overwrite)


def sds(prior, diffrep, *, steps: int = 200, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, lr: float = 0.01, optimizer: str = "adam",
        t_range=(0.02, 0.98), weighting: str = "sds", progress: bool = True, callback=None,
        return_trace: bool = False, checkpoint_path=None, checkpoint_every: int = 1, resume_from=None,
        overwrite: bool = False) -> SampleResult:
    """Score Distillation Sampling: descend ``w(t) J^T (eps_hat(f + sigma_t eps) - eps)``.

    Arguments not listed here are as in :func:`~diffrep_lite.samplers.ddr.ddr`.

    Args:
        steps: optimiser steps, one prior evaluation per view each. lr, optimizer: as in DreamFusion/threestudio.
        t_range: ``(t_min, t_max)`` fractions of the training ticks to draw ``t`` from, ``0 <= t_min < t_max <= 1``.
        weighting: ``"sds"`` (``w = 1 - abar_t``) or ``"uniform"`` (``w = 1``).
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale, flags=dict(progress=progress, return_trace=return_trace))
    check_choice(weighting, "weighting", SDS_WEIGHTINGS)
    t_min, t_max = check_t_range(t_range)
    table = prior.schedule.sigmas.to(s.device)
    T = table.numel()
    lo, hi = int(t_min * (T - 1)), max(int(t_max * (T - 1)), int(t_min * (T - 1)) + 1)

    def direction(s, i, f):
        idx = torch.randint(lo, hi + 1, (s.n,), generator=s.generator, device=s.device)
        sig = table[idx].to(f.dtype)
        noise = torch.randn(f.shape, generator=s.generator, dtype=f.dtype, device=f.device)
        eh = prior_eps(s, f + bcast(sig, f) * noise, sig)
        w = (1 - sigma_to_alpha_bar(sig).to(f.dtype)) if weighting == "sds" else torch.ones_like(sig)
        return -bcast(w, f) * (eh - noise), sig, nfe_multiplier(s)

    return optimise(s, steps, "sds", direction, optimizer=optimizer, lr=lr,
                    settings={"t_range": repr((t_min, t_max)), "weighting": weighting}, progress=progress,
                    callback=callback, return_trace=return_trace, checkpoint_path=checkpoint_path,
                    checkpoint_every=checkpoint_every, resume_from=resume_from, overwrite=overwrite)
