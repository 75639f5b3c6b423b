"""DDR: the reverse-time PF-ODE pulled back to parameter space.

State: parameters ``theta`` and one noise field per view ``eps``; the noisy views are
``x = f(theta) + sigma * eps``. One step from ``sigma`` to ``sigma'``::

    eps_hat = prior(x, sigma)                 # where the image model wants the views to go
    convention "B" (default, "fit x0_hat, carry eps_hat"):
        x0_hat = x - sigma * eps_hat
        theta  = theta + J^+ (x0_hat - f(theta))     # repeated `fit_iters` times (Gauss-Newton)
        eps    = eps_hat        # or, with step_eta > 0: c eps_hat + sqrt(1 - c^2) z (DDIM's eta)
    convention "A" ("pull back the ODE increment, hold eps"):
        theta  = theta + (sigma' - sigma) J^+ (eps_hat - eps)

``J^+ v`` is the least-squares solve of :mod:`diffrep_lite.pullback` — the ``(J^T J)^{-1}`` that score
distillation leaves out. With ``f`` invertible both conventions are exactly DDIM in image space.

RePaint-style resampling (``repaint_iters = U > 1``, jump length ``jump = j``): the levels are run in
blocks of ``j`` consecutive steps; after a block the views are re-noised back up to the block's first
level with the non-Markovian forward update (:func:`forward_update`)
``eps <- C eps + sqrt(1 - C^2) z``, ``C = prod_k c_k`` over the block's ``j`` steps
(:func:`jump_correlation`; each ``c_k`` from :func:`~diffrep_lite.schedule.renoise_coefficient`, ``C = 1``
for ``eta = 0``), and the block is redone; every block runs ``U`` times, so each level is denoised ``U``
times and the renderable content and the noise harmonise. Convention A restarts each repeat from the
block's saved ``theta`` (stacking increments overshoots). The derivation is in the book
(``book/forward_update.md``).
"""
from __future__ import annotations

import torch

from ..pullback import PRECONDITIONERS, SOLVERS, preconditioner as make_preconditioner, solve
from ..schedule import renoise_coefficient
from .checkpoint import load_checkpoint, save_checkpoint
from .common import (DivergenceError, SampleResult, bcast, check_callback, check_choice, check_finite, check_positive,
                     check_progress,
                     nfe_multiplier, _check_int, draw_view_noise, init_state, prior_eps, progress_range, setup)

#: The two discretisations of the pulled-back ODE (see the module docstring and the book's pull-back chapter).
CONVENTIONS = ("A", "B")
#: How the per-view noise is drawn (at the start and in RePaint jumps): independently per view (the paper), or
#: as one field seen through the views (:meth:`~diffrep_lite.diffreps.base.Diffrep.shared_noise`).
VIEW_NOISE = ("independent", "shared")


def jump_correlation(sigmas, eta: float) -> float:
    """Correlation ``C`` between the tracked noise and its re-noised value for a jump back up a run of levels.

    Args:
        sigmas: the levels jumped over, decreasing: ``[sigma_a > ... > sigma_b]`` (``j + 1`` entries for a
            jump of length ``j``, from ``sigma_b`` back up to ``sigma_a``).
        eta: DDIM stochasticity in ``[0, 1]``.

    Returns:
        ``C = prod_k c_k`` with ``c_k = renoise_coefficient(sigmas[k + 1], sigmas[k], eta)``: the noise
        process is an AR(1) chain along the levels, so correlations multiply. ``C = 1`` for ``eta = 0``.
    """
    sig = [float(x) for x in sigmas]
    C = 1.0
    for hi, lo in zip(sig[:-1], sig[1:]):
        C *= renoise_coefficient(lo, hi, eta)
    return C


def forward_update(eps: torch.Tensor, c: float, generator=None, z: torch.Tensor | None = None) -> torch.Tensor:
    """The non-Markovian forward (re-noising) update of the tracked noise: ``c eps + sqrt(1 - c^2) z``.

    With ``eps ~ N(0, I)`` the result is again ``N(0, I)`` and has correlation ``c`` with ``eps``; the
    re-noised views are ``f(theta) + sigma * eps'``. ``c = 1`` returns ``eps`` itself and draws nothing
    (deterministic DDIM reuses the noise). ``z`` is drawn from ``generator`` with ``eps``'s shape, dtype
    and device, unless a standard normal ``z`` of ``eps``'s shape is given (DDR passes the diffrep's
    shared noise field under ``view_noise="shared"``).
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


def ddr(prior, diffrep, *, steps: int = 50, n: int | None = None, seed: int | None = None, generator=None,
        params0=None, cond=None, guidance_scale=None, convention: str = "B", solver: str = "cg",
        solver_iters: int = 20, damping: float = 0.0, solver_lr: float = 1e-3, preconditioner: str | None = None,
        fit_iters: int = 1,
        repaint_iters: int = 1, jump: int = 1, eta: float = 0.0, view_noise: str = "independent",
        step_eta: float = 0.0, progress: bool = True, callback=None,
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
        solver: pull-back solver, one of ``dense``, ``kernel``, ``cg``, ``adam``, ``gd`` (``gd`` drops the metric).
            ``kernel`` (coordinate networks, :class:`~diffrep_lite.diffreps.NeuralField`) solves exactly through
            ``J J^T`` with one vjp (:func:`~diffrep_lite.pullback.kernel_solve`); ``solver_iters`` is then unused.
        solver_iters: CG / Adam iterations per solve; damping: Levenberg-Marquardt ``lambda``;
        solver_lr: Adam / GD learning rate.
        preconditioner: None (default) or, for ``solver="cg"``, ``"jacobi"`` (``diag(J^T J)`` from 16 Hutchinson
            vjps) or ``"kfac"`` (Kronecker-factored, coordinate networks such as SIRENs), rebuilt before every
            solve (:func:`~diffrep_lite.pullback.preconditioner`). They cut the *linear* residual per CG
            iteration, but with more parameters than outputs preconditioned CG tends to the solution of least
            norm in the preconditioner's metric, not ``J^+ v``: on SIRENs K-FAC's long steps leave the region where
            ``f`` is linear and stall the Gauss-Newton fit, where the exact minimum-norm step of
            ``solver="kernel"`` does not (``benchmarks/bench_pullback.py``); hence the default None.
        fit_iters: Gauss-Newton repeats of the convention-B fit per step (>= 1). One fit is exact for a linear
            diffrep. A neural field needs several fits of a few CG iterations: on notebook 03's digits SIRENs
            (30 levels, CFG 3) the defaults, one fit of 20, score KID 0.44 against 0.018 for 6 fits of 4
            (``benchmarks/results/siren_cg_fits.json``; see the practical guide).
        repaint_iters: RePaint resamplings ``U``: every level is denoised ``U`` times (>= 1; 1 = none).
        jump: RePaint jump length ``j`` (>= 1, <= steps): after each block of ``j`` levels jump back up ``j``
            levels (the last block may be shorter). ``j = 1`` resamples each level on its own.
        eta: stochasticity of the RePaint jump back, in [0, 1] (0 reuses the tracked noise).
        step_eta: stochasticity of every level's own step, in [0, 1]: DDIM's ``eta``, the ``eta`` of the reference
            sampler. 0 (default, the paper) carries ``eps_hat`` to the next level, the deterministic PF-ODE; with
            ``step_eta > 0`` the carried noise is ``c eps_hat + sqrt(1 - c^2) z`` with ``c`` from
            :func:`~diffrep_lite.schedule.renoise_coefficient` and fresh ``z`` (shared across the views under
            ``view_noise="shared"``); 1 is the DDPM-like ancestral step. With the identity diffrep DDR then equals
            the reference sampler with the same ``eta``. Fresh noise corrects errors of the prior's ``eps_hat``
            that the deterministic flow carries to the end: the shipped ``objects16`` model leaves visible pixel
            noise in about 40 % of its deterministic samples and in none with ``eta = 1``
            (``benchmarks/objects_model_quality.py``). Convention B only.
        view_noise: ``"independent"`` (default, as in the paper): every view draws its own noise, at the
            start and in RePaint jumps. ``"shared"``: the noise is one field seen through the views
            (:meth:`~diffrep_lite.diffreps.base.Diffrep.shared_noise`, e.g. crops of one canvas-sized field
            for a :class:`~diffrep_lite.diffreps.Panorama`), so overlapping views start with the same noise on
            their shared pixels. Independent noises average out on shared pixels, so the views decide on
            a mode with less noise than one view would. The heavy modes are then chosen more often than their
            weights. Shared noise removes most of that bias (see ``notebooks/04_panoramas``). For a
            :class:`~diffrep_lite.diffreps.VoxelNeRF` the views share the per-channel mean of their noise
            (:meth:`~diffrep_lite.diffreps.nerf.VoxelNeRF.shared_noise`), which a model trained on Stable Diffusion's
            schedule reads as the image's mean colour (see ``notebooks/05_nerf``).
        progress: tqdm progress bar on/off. callback: ``callback(step, info)`` after each level.
        return_trace: keep the renders after every level in ``result.trace["x"]`` (after a resume: the
            levels run in this call only).
        checkpoint_path: if given, save ``(theta, eps, generator state, step)`` there with ``torch.save``
            at the end of every RePaint block once ``checkpoint_every`` levels have passed since the last save,
            and after the last level (see :mod:`.checkpoint`).
        resume_from: a checkpoint file of an interrupted run with the same settings and seed; the run goes
            on from its step and ends identical to an uninterrupted run. ``nfe`` then counts this call only.

    Returns:
        :class:`~diffrep_lite.samplers.common.SampleResult` with ``params``, renders ``x`` and ``nfe``, the
        prior evaluations counted per view and sample (``steps * repaint_iters`` for any ``jump``, x2 under
        CFG for network priors); ``nfe_total`` multiplies by the number of views ``V``.
    """
    s = setup(prior, diffrep, steps=steps, n=n, seed=seed, generator=generator, params0=params0, cond=cond,
              guidance_scale=guidance_scale)
    check_choice(convention, "convention", CONVENTIONS)
    check_choice(solver, "solver", SOLVERS)
    _check_int(solver_iters, "solver_iters")
    _check_int(fit_iters, "fit_iters")
    _check_int(repaint_iters, "repaint_iters")
    _check_int(jump, "jump")
    if jump > steps:
        raise ValueError(f"jump must be <= steps ({steps}), got {jump}")
    if isinstance(damping, bool) or not isinstance(damping, (int, float)):
        raise TypeError(f"damping must be a float >= 0, got {damping!r}")
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0, got {damping!r}")
    renoise_coefficient(0.0, 1.0, eta)  # validates eta
    if isinstance(step_eta, bool) or not isinstance(step_eta, (int, float)) or not 0.0 <= step_eta <= 1.0:
        raise ValueError(f"step_eta must be a float in [0, 1], got {step_eta!r}")
    if step_eta and convention != "B":
        raise ValueError(f"step_eta > 0 needs convention='B' (convention A holds eps fixed), got "
                         f"convention={convention!r}")
    check_choice(view_noise, "view_noise", VIEW_NOISE)
    shared = view_noise == "shared"
    if shared:
        probe = diffrep.shared_noise(1, generator=torch.Generator().manual_seed(0))  # shape probe only
        if probe is None:
            raise ValueError(f"view_noise='shared' needs a diffrep with a shared noise field "
                             f"(Diffrep.shared_noise, e.g. a Panorama); {type(diffrep).__name__} has none: "
                             f"use view_noise='independent'")
        if tuple(probe.shape) != (1, s.V, *prior.data_shape):
            raise ValueError(f"{type(diffrep).__name__}.shared_noise(1) must have shape "
                             f"{(1, s.V, *prior.data_shape)}, got {tuple(probe.shape)}")
    check_positive(solver_lr, "solver_lr")
    # K-FAC and the kernel solve both need the per-pixel layer factors of a NeuralField of nn.Linear layers
    linear_field = getattr(diffrep, "_linear_layers", lambda: None)() is not None
    if preconditioner is not None:
        check_choice(preconditioner, "preconditioner", PRECONDITIONERS)
        if solver != "cg":
            raise ValueError(f"preconditioner={preconditioner!r} needs solver='cg', got solver={solver!r}")
        if preconditioner == "kfac" and not linear_field:
            raise ValueError(f"preconditioner='kfac' needs a NeuralField of nn.Linear layers; "
                             f"{type(diffrep).__name__} has no K-FAC preconditioner: use 'jacobi' or None")
    check_callback(callback)
    check_progress(progress)
    _check_int(checkpoint_every, "checkpoint_every")
    if solver == "kernel" and not linear_field:
        raise ValueError(f"solver='kernel' needs a NeuralField of nn.Linear layers (it builds J J^T from per-pixel "
                         f"factors); {type(diffrep).__name__} has none: use solver='cg'")
    solver_kw = dict(solver=solver, iters=solver_iters, damping=damping, lr=solver_lr)
    if solver == "kernel":
        solver_kw["kernel"] = diffrep.pixel_kernel

    def pull_back(v, i, u, fit):
        """``J^+ v`` at the current ``params`` with the configured solver (and preconditioner)."""
        pre = None
        if preconditioner is not None:  # its own seeded probes: the sampler's random stream is untouched
            g = torch.Generator(device=s.device).manual_seed(1_000_003 * i + 1009 * u + fit)
            pre = make_preconditioner(preconditioner, diffrep, params, generator=g)
        return solve(render, params, v, precond=pre, **solver_kw)

    sigmas = prior.schedule.sigma_grid(steps)
    eps, params = init_state(s, shared_noise=shared)
    start = 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, method="ddr", steps=steps, n=s.n, eps_shape=eps.shape,
                                param_shapes=diffrep.param_shapes())
        start, eps = state["step"], state["eps"].to(device=s.device, dtype=s.dtype)
        if start % jump and start != steps:
            raise ValueError(f"resume_from: checkpoint step {start} is not a block boundary for jump={jump}")
        params = {k: t.to(device=s.device, dtype=s.dtype) for k, t in state["params"].items()}
        s.generator.set_state(state["generator"])
    render = diffrep.render
    with torch.no_grad():
        f = render(params)
    trace = {"sigmas": sigmas, **({"x": [f.detach().cpu()]} if return_trace else {})}

    solver_hint = {
        "gd": f"solver_lr (the 'gd' step size, now {solver_lr:g}) is too large: lower it, or use solver='cg', "
              "which needs no step size",
        "adam": f"solver_lr (the inner Adam learning rate, now {solver_lr:g}) is too large: lower it",
        "cg": f"an ill-conditioned pull-back: raise damping (now {damping:g}) or lower solver_iters (now {solver_iters})",
        "dense": f"an ill-conditioned pull-back: raise damping (now {damping:g})",
        "kernel": f"an ill-conditioned pull-back: raise damping (now {damping:g})",
    }[solver]
    prior_hint = ("the prior returned a non-finite eps_hat for finite views: check the prior and "
                  f"guidance_scale={guidance_scale!r}")

    def guard(where, sig, hint, **tensors):
        try:
            check_finite("ddr", where, sig, hint, **tensors)
        except DivergenceError as e:
            if checkpoint_path is not None and last_saved > start:
                raise DivergenceError(f"{e}. The last checkpoint, written after level {last_saved} with finite "
                                      f"values, is kept at {str(checkpoint_path)!r}") from None
            raise

    def renoise(eps, c):
        """The forward update with correlation ``c``; fresh noise drawn per view, or shared under ``view_noise``."""
        return forward_update(eps, c, s.generator, z=draw_view_noise(s, shared) if shared and c < 1.0 else None)

    levels = progress_range(steps, progress, "DDR")  # the bar counts finished levels
    levels.update(start)
    evals, last_saved = 0, start
    for b0 in range(start, steps, jump):
        block = range(b0, min(b0 + jump, steps))
        saved = params
        for u in range(repaint_iters):
            if convention == "A" and u > 0:
                params = saved  # restart each repeat from the block's theta
                with torch.no_grad():
                    f = render(params)
            for i in block:
                sig, sig_next = float(sigmas[i]), float(sigmas[i + 1])
                where = f"level {i}" + (f" (RePaint repeat {u + 1} of {repaint_iters})" if repaint_iters > 1 else "")
                eh = prior_eps(s, f + sig * eps, sig)
                guard(where, sig, prior_hint, eps_hat=eh)
                evals += 1
                if convention == "B":
                    x0 = f + sig * (eps - eh)
                    for fit in range(fit_iters):
                        d = pull_back(x0 - f, i, u, fit)
                        params = {k: params[k] + d[k] for k in params}
                        with torch.no_grad():
                            f = render(params)
                        guard(where + (f", fit {fit + 1} of {fit_iters}" if fit_iters > 1 else ""), sig, solver_hint,
                              increment=d, params=params, render=f)
                    eps = eh
                    if step_eta:  # DDIM's eta: part fresh noise, as the reference sampler draws it
                        eps = renoise(eps, renoise_coefficient(sig_next, sig, step_eta))
                else:
                    d = pull_back((sig_next - sig) * (eh - eps), i, u, 0)
                    params = {k: params[k] + d[k] for k in params}
                    with torch.no_grad():
                        f = render(params)
                    guard(where, sig, solver_hint, increment=d, params=params, render=f)
                if u == repaint_iters - 1:
                    levels.update(1)
                    if return_trace:
                        trace["x"].append(f.detach().cpu())
                    if callback is not None:
                        callback(i, {"params": params, "x": f, "eps": eps, "sigma": sig_next})
            if u < repaint_iters - 1:  # jump back up the block: the non-Markovian forward update
                eps = renoise(eps, jump_correlation(sigmas[block.start:block.stop + 1], eta))
        if checkpoint_path is not None and (block.stop - last_saved >= checkpoint_every or block.stop == steps):
            save_checkpoint(checkpoint_path, method="ddr", step=block.stop, steps=steps, params=params, eps=eps,
                            generator=s.generator)
            last_saved = block.stop
    levels.close()
    return SampleResult(x=f, params=params, nfe=evals * nfe_multiplier(s), trace=trace,
                        method="ddr")


__all__ = ["ddr", "CONVENTIONS", "VIEW_NOISE", "bcast", "jump_correlation", "forward_update"]
