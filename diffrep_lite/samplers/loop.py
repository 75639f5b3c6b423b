"""One run loop for every sampler; a sampler is a *step*, RePaint is a wrapper around a step.

The loop (:func:`run`) owns what every method shares: the order of the updates, the progress bar, the trace,
the callback, the divergence guard and checkpoints. A method only says how to start (``Step.init``) and
how to make one update (``Step.__call__``): DDR's step pulls one level of the PF-ODE back to the
parameters, the reference step is one DDIM step in image space, SJC's and SDS's steps are one optimiser step.

State. ``x`` is the current render ``f(theta)`` ``[n, V, *shape]`` (for the reference sampler the clean
estimate ``x0_hat``), ``eps`` the tracked per-view noise (DDR, reference; None for the optimiser methods),
so the noisy views at level ``sigma`` are ``x + sigma * eps``.

RePaint (Lugmayr et al. 2022) wraps any step that tracks ``eps``: the levels run in blocks of ``jump`` steps;
after a block the noise jumps back up to the block's first level with the non-Markovian forward update
``eps <- C eps + sqrt(1 - C^2) z`` (:func:`~diffrep_lite.samplers.ddr.jump_correlation`) and the block is redone,
``iters`` times in all (the book's forward-update chapter derives it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..schedule import renoise_coefficient
from ..validation import check_real
from .checkpoint import CheckpointPlan
from .common import (DivergenceError, SampleResult, Setup, _fmt_sigma, check_callback, check_choice, check_finite,
                     check_int, check_progress, progress_range)

__all__ = ["State", "StepInfo", "Step", "RePaint", "run", "VIEW_NOISE", "jump_correlation", "forward_update"]

#: How a step draws per-view noise (at the start, in RePaint jumps and for ``eta > 0``): independently per view
#: (the paper), or as one field seen through the views (:meth:`~diffrep_lite.diffreps.base.Diffrep.shared_noise`).
VIEW_NOISE = ("independent", "shared")


@dataclass
class State:
    """What a step carries from one update to the next (see the module docstring)."""

    x: torch.Tensor
    params: dict | None = None
    eps: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)  # a step's own state (an optimiser's moments), saved in checkpoints


@dataclass
class StepInfo(Mapping):
    """The callback payload of every method: ``callback(step, info)`` after each finished update.

    ``step`` is the update's index, ``sigma`` the noise level the state is now at (DDR, reference) or the level the
    update used (SJC, SDS, SDI), ``x`` the render, ``params`` the parameters (None for the reference sampler) and
    ``eps`` the tracked noise (None for the optimiser methods). ``info["x"]`` works as well as ``info.x``.
    """

    method: str
    step: int
    sigma: Any
    x: torch.Tensor
    params: dict | None
    eps: torch.Tensor | None

    def __getitem__(self, key):
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._keys())

    def __len__(self):
        return len(self._keys())

    @staticmethod
    def _keys():
        return ("method", "step", "sigma", "x", "params", "eps")


def jump_correlation(sigmas, eta: float) -> float:
    """Correlation ``C = prod_k c_k`` between the tracked noise and its re-noised value after a jump back up
    the decreasing levels ``sigmas`` (``j + 1`` entries for a jump of ``j``), ``c_k`` from
    :func:`~diffrep_lite.schedule.renoise_coefficient`: the noise is an AR(1) chain along the levels, so
    correlations multiply. ``C = 1`` for ``eta = 0``."""
    sig = [float(x) for x in sigmas]
    return math.prod(renoise_coefficient(lo, hi, eta) for hi, lo in zip(sig[:-1], sig[1:]))


def forward_update(eps: torch.Tensor, c: float, generator=None, z: torch.Tensor | None = None) -> torch.Tensor:
    """The non-Markovian forward update ``c eps + sqrt(1 - c^2) z`` of the tracked noise.

    With ``eps ~ N(0, I)`` the result is again ``N(0, I)`` with correlation ``c`` to ``eps``. ``c = 1`` returns
    ``eps`` and draws nothing. ``z`` is drawn from ``generator`` unless a standard normal ``z`` of ``eps``'s shape
    is given (a diffrep's shared noise field).
    """
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"c must lie in [0, 1], got {c!r}")
    if c == 1.0:
        return eps
    if z is None:
        z = torch.randn(eps.shape, generator=generator, dtype=eps.dtype, device=eps.device)
    elif z.shape != eps.shape:
        raise ValueError(f"z must have eps's shape {tuple(eps.shape)}, got {tuple(z.shape)}")
    return c * eps + (1 - c * c) ** 0.5 * z


class Step:
    """A sampler's single update. Subclasses set ``name`` and ``hint`` (the setting to change when the update
    diverges) and implement ``init`` and ``__call__``.

    ``tracks_noise``: the state carries ``eps`` (RePaint can wrap the step). ``restart_repeats``: a RePaint repeat
    restarts from the block's saved state instead of the current one (DDR's convention A, whose increments would
    stack). ``view_noise`` selects how per-view noise is drawn (:data:`VIEW_NOISE`).
    """

    name = "step"
    hint = ""
    tracks_noise = False
    restart_repeats = False
    view_noise = "independent"

    def sigmas(self, s: Setup, steps: int) -> torch.Tensor:
        """The ``steps + 1`` decreasing levels of the run (the optimiser methods draw their own per update)."""
        return s.prior.schedule.sigma_grid(steps)

    def check(self, s: Setup) -> None:
        """Check the step against the prior and diffrep of a run (before any work); default: nothing."""

    def init(self, s: Setup) -> State:
        """The run's first state (draw the noise first, then the parameters, from ``s.generator``)."""
        raise NotImplementedError

    def __call__(self, s: Setup, state: State, i: int, sigma: float, sigma_next: float,
                 repeat: int = 0) -> tuple[State, Any, int]:
        """Update ``i`` at level ``sigma`` (towards ``sigma_next``; ``repeat``: RePaint's pass over it); returns the
        new state, the level it is now at (or used) and the prior evaluations it made per view (x2 under
        classifier-free guidance included)."""
        raise NotImplementedError

    def initial_params(self, s: Setup) -> dict:
        """``params0`` (copied), or the diffrep's initial parameters drawn from ``s.generator``."""
        if s.params is not None:
            return {k: t.detach().clone() for k, t in s.params.items()}
        return s.diffrep.init_params(s.n, generator=s.generator, dtype=s.dtype, device=s.device)

    def observe(self, state: State, sigma) -> torch.Tensor:
        """What the trace, the callback and the result show of a state at level ``sigma``: the render."""
        return state.x

    def draw_noise(self, s: Setup) -> torch.Tensor:
        """Standard normal noise for every view ``[n, V, *shape]``, drawn as ``view_noise`` says."""
        if self.view_noise == "shared":
            return s.diffrep.shared_noise(s.n, generator=s.generator, dtype=s.dtype, device=s.device)
        return torch.randn(s.n, s.V, *s.prior.data_shape, generator=s.generator, dtype=s.dtype, device=s.device)

    def settings(self) -> dict:
        """The step's settings, stored in checkpoints and compared on resume (not its private state or hint)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "hint"}


class RePaint:
    """RePaint resampling around a step that tracks per-view noise.

    Args:
        step: the wrapped :class:`Step` (DDR's, the reference sampler's).
        iters: ``U``, how many times every level is denoised (>= 1; 1 = no resampling).
        jump: ``j``, levels per block (>= 1); the last block may be shorter.
        eta: stochasticity of the jump back, in ``[0, 1]`` (DDR's ``jump_eta``): 0 reuses the tracked noise
            (``C = 1``; under convention A a repeat then changes nothing), 1 draws the correlation of DDPM's forward
            process; every value keeps the noise standard normal. The default 0.5 measured closest to the weights
            of an exact 3-D scene mixture (``python -m benchmarks.scene_mixture_distribution --grid``; the book's
            forward-update chapter). On the learned NeRF prior ``objects16`` (``python -m
            benchmarks.objects_nerf_methods --jump-eta 0 0.5 1``) 1 scored better than 0.5, not significantly, and
            0 worst.
    """

    def __init__(self, step: Step, *, iters: int = 1, jump: int = 1, eta: float = 0.5):
        self.step, self.iters, self.jump = step, check_int(iters, "repaint_iters"), check_int(jump, "jump")
        self.eta = check_real(eta, "jump_eta", low=0.0, high=1.0)
        if iters > 1 and not step.tracks_noise:
            raise ValueError(f"RePaint (repaint_iters > 1) needs a step that tracks per-view noise; "
                             f"{step.name!r} does not")

    def check(self, steps: int) -> None:
        """``jump`` must fit the run (before any work)."""
        if self.jump > steps:
            raise ValueError(f"jump must be <= steps ({steps}), got {self.jump}")

    def blocks(self, steps: int, start: int = 0):
        return [range(b, min(b + self.jump, steps)) for b in range(start, steps, self.jump)]

    def jump_back(self, s: Setup, state: State, sigmas) -> State:
        """Re-noise the tracked noise from the block's last level back up to its first."""
        c = jump_correlation(sigmas, self.eta)
        z = self.step.draw_noise(s) if self.step.view_noise == "shared" and c < 1.0 else None
        return replace(state, eps=forward_update(state.eps, c, s.generator, z=z))

    def settings(self) -> dict:
        return {"repaint_iters": self.iters, "jump": self.jump, "jump_eta": self.eta}


def _bound(prior) -> float:
    """Renders beyond this magnitude are garbage: 100 x (the data's radius + the largest noise level)."""
    return 100.0 * (float(getattr(prior, "data_radius", 1.0)) + float(prior.schedule.sigmas.max()))


def guard(method: str, where: str, sigma, hint: str, state: State, bound: float) -> None:
    """Raise :class:`DivergenceError` if the state is non-finite or its render left ``[-bound, bound]``.

    One host synchronisation when all is well (``|x| <= bound`` is False for NaN too); the messages that name the
    first non-finite entry are built only on failure."""
    peak = state.x.detach().abs().amax()
    ok = [peak <= bound] + [torch.isfinite(t).all() for t in (state.params or {}).values()]
    if all(torch.stack(ok).tolist()):
        return
    check_finite(method, where, sigma, hint, render=state.x, params=state.params)
    peak = float(peak)
    if peak > bound:
        raise DivergenceError(f"{method}: the render reached |x| = {peak:.3g} at {where} (sigma = "
                              f"{_fmt_sigma(sigma)}), far outside the prior's data range (bound {bound:.3g}); the run "
                              f"diverged. Most likely cause: {hint}")


def run(s: Setup, sampler, steps: int, *, progress: bool = True, callback=None, return_trace: bool = False,
        checkpoint: CheckpointPlan | None = None) -> SampleResult:
    """Run ``sampler`` (a :class:`Step`, or a :class:`RePaint` around one) for ``steps`` updates.

    Returns a :class:`~diffrep_lite.samplers.common.SampleResult`; ``trace["sigmas"]`` holds the levels (the grid,
    or each update's level for the optimiser methods), ``trace["x"]`` the render after every update when
    ``return_trace``. A checkpoint (see :mod:`.checkpoint`) is written at block boundaries and after the last
    update; a resumed run ends bit-identical to an uninterrupted one.
    """
    check_callback(callback)
    check_progress(progress)
    rp = sampler if isinstance(sampler, RePaint) else RePaint(sampler)
    step = rp.step
    rp.check(steps)
    step.check(s)
    if checkpoint is not None and (checkpoint.path is not None or checkpoint.resume_from is not None):
        checkpoint.begin(s, steps)
    else:
        checkpoint = None
    sigmas = step.sigmas(s, steps)
    bound = _bound(s.prior)
    state, start = (checkpoint.resume(s) if checkpoint is not None and checkpoint.resume_from is not None
                    else (step.init(s), 0))
    if start == 0:
        guard(step.name, "the start", sigmas[0], "the initial render is not finite: check params0 and the "
              "diffrep's settings", state, bound)
    if start % rp.jump and start != steps:
        raise ValueError(f"resume_from: checkpoint step {start} is not a block boundary for jump={rp.jump}")
    trace = {"sigmas": sigmas if step.tracks_noise else []}
    if return_trace:
        trace["x"] = [step.observe(state, sigmas[start]).detach().cpu()]
    unit = "level" if step.tracks_noise else "step"
    bar = progress_range(steps, progress, step.name.upper())
    bar.update(start)
    evals, last_saved = 0, start
    try:
        for block in rp.blocks(steps, start):
            saved = state
            for u in range(rp.iters):
                if u and step.restart_repeats:  # the block's saved theta, with the noise the jump re-drew
                    state = replace(saved, eps=state.eps)
                for i in block:
                    where = f"{unit} {i}" + (f" (RePaint repeat {u + 1} of {rp.iters})" if rp.iters > 1 else "")
                    state, sig, ev = step(s, state, i, float(sigmas[i]), float(sigmas[i + 1]), repeat=u)
                    evals += ev
                    guard(step.name, where, sig, step.hint, state, bound)
                    if u == rp.iters - 1:
                        bar.update(1)
                        if not step.tracks_noise:
                            trace["sigmas"].append(sig)
                        x = step.observe(state, sig)
                        if return_trace:
                            trace["x"].append(x.detach().cpu())
                        if callback is not None:
                            callback(i, StepInfo(step.name, i, sig, x, state.params, state.eps))
                if u < rp.iters - 1:
                    state = rp.jump_back(s, state, sigmas[block.start:block.stop + 1])
            if checkpoint is not None and checkpoint.due(block.stop, last_saved, steps):
                checkpoint.save(s, state, block.stop)
                last_saved = block.stop
    except DivergenceError as e:
        if checkpoint is not None and last_saved > start:
            raise DivergenceError(f"{e}. The last checkpoint, written after {unit} {last_saved} with finite values, "
                                  f"is kept at {str(checkpoint.path)!r}") from None
        raise
    finally:
        bar.close()
    return SampleResult(x=step.observe(state, sigmas[-1]), params=state.params, nfe=evals, trace=trace, method=step.name)


def check_view_noise(view_noise: str, s: Setup) -> str:
    """Validate ``view_noise`` against the run's diffrep (a shared field needs :meth:`Diffrep.shared_noise`)."""
    check_choice(view_noise, "view_noise", VIEW_NOISE)
    if view_noise == "shared":
        probe = None if s.diffrep is None else s.diffrep.shared_noise(1, generator=torch.Generator().manual_seed(0))
        if probe is None:
            raise ValueError(f"view_noise='shared' needs a diffrep with a shared noise field (Diffrep.shared_noise, "
                             f"e.g. a Panorama); {type(s.diffrep).__name__} has none: use view_noise='independent'")
        if tuple(probe.shape) != (1, s.V, *s.prior.data_shape):
            raise ValueError(f"{type(s.diffrep).__name__}.shared_noise(1) must have shape "
                             f"{(1, s.V, *s.prior.data_shape)}, got {tuple(probe.shape)}")
    return view_noise
