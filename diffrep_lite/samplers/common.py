"""What every sampler shares: input validation, the random generator, the per-view prior call,
the progress bar and the result type. Nothing here is method-specific."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..diffreps.base import Diffrep, check_params
from ..priors.base import Prior, check_guidance
from ..schedule import _check_steps
from ..validation import check_int, check_sampler_options, check_seed

__all__ = ["SampleResult", "Setup", "setup", "prior_eps", "progress_range", "check_progress", "DivergenceError",
           "check_finite"]


class DivergenceError(FloatingPointError):
    """A sampler's render, parameters or increment became NaN or infinite.

    Raised as soon as it happens (not at the end of a long run); the message names the method, the step
    or level, the noise level ``sigma`` and the setting most likely at fault. A checkpointed run keeps its
    last (finite) checkpoint."""


def _fmt_sigma(sigma) -> str:
    if isinstance(sigma, torch.Tensor):
        sig = sigma.detach().flatten().double().cpu()
        if sig.numel() == 1 or float(sig.min()) == float(sig.max()):
            return f"{float(sig.flatten()[0]):.4g}"
        return f"{float(sig.min()):.4g} .. {float(sig.max()):.4g} (one per sample)"
    return f"{float(sigma):.4g}"


def check_finite(method: str, where: str, sigma, hint: str, **tensors) -> None:
    """Raise :class:`DivergenceError` if any of ``tensors`` (tensors or dicts of tensors) holds NaN or inf.

    One host synchronisation for all of them. ``where`` says when (``"step 12"``, ``"level 3, fit 2"``),
    ``hint`` what to change; the message names the first non-finite entry (``render``, ``params['w']`` ...).
    """
    names, flags = [], []
    for name, t in tensors.items():
        if isinstance(t, dict):
            for k, v in t.items():
                names.append(f"{name}[{k!r}]")
                flags.append(torch.isfinite(v).all())
        elif t is not None:
            names.append(name)
            flags.append(torch.isfinite(t).all())
    ok = torch.stack(flags).tolist()
    if all(ok):
        return
    bad = [n for n, f in zip(names, ok) if not f]
    what = ", ".join(bad[:3]) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
    raise DivergenceError(f"{method}: non-finite {what} at {where} (sigma = {_fmt_sigma(sigma)}); "
                          f"the run diverged. Most likely cause: {hint}")


@dataclass
class SampleResult:
    """What a sampler returns.

    Attributes:
        x: final renders ``[n, V, *data_shape]`` (for ``reference``: the image-space samples).
        params: final diffrep parameters (dict of ``[n, ...]`` tensors), or None for ``reference``.
        nfe: prior evaluations per view and sample (x2 under classifier-free guidance for network priors).
        trace: ``{"sigmas": [...], "x": [steps + 1, n, V, ...]}`` when ``return_trace=True``, else ``{"sigmas"}``.
        method: the sampler's name.
    """

    x: torch.Tensor
    params: dict | None
    nfe: int
    trace: dict = field(default_factory=dict)
    method: str = ""

    @property
    def nfe_total(self) -> int:
        """Prior evaluations per sample over all its views: ``nfe * V`` (``V = x.shape[1]``)."""
        return self.nfe * self.x.shape[1]

    def decoded(self, prior: Prior) -> torch.Tensor:
        """``prior.decode`` of the final renders, ``[n * V, ...]``."""
        return prior.decode(self.x.flatten(0, 1))


@dataclass
class Setup:
    """Validated inputs of a sampler run."""

    prior: Prior
    diffrep: Diffrep | None
    n: int
    V: int
    generator: torch.Generator
    params: dict | None
    item_conds: list | None
    guidance_scale: float | None
    dtype: torch.dtype
    device: torch.device


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def make_generator(seed, generator, device) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        if generator.device.type != torch.device(device).type:
            raise TypeError(f"generator is on {generator.device}, the prior on {device}")
        return generator
    if seed is None:
        seed = 0
    return torch.Generator(device=device).manual_seed(check_seed(seed))


def _broadcast_cond(cond, n):
    """A single condition for all samples, or one per sample (list/tuple/tensor of length n)."""
    if cond is None:
        return None
    if isinstance(cond, (list, tuple)) or (isinstance(cond, torch.Tensor) and cond.ndim > 0):
        if len(cond) != n:
            raise ValueError(f"cond must be a single condition or have one entry per sample (n={n}), got {len(cond)}")
        return list(cond)
    return [cond] * n


def setup(prior, diffrep, *, steps, n, seed, generator, params0, cond, guidance_scale, need_diffrep=True,
          flags=None) -> Setup:
    """Validate the arguments shared by all samplers (before any sampling work) and draw nothing yet; ``flags``
    are the run's booleans by name (``return_trace``, ``progress``)."""
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a diffrep_lite Prior, got {type(prior).__name__}")
    if diffrep is None and need_diffrep:
        raise TypeError("diffrep is required for this method (a diffrep_lite Diffrep)")
    if diffrep is not None and not isinstance(diffrep, Diffrep):
        raise TypeError(f"diffrep must be a diffrep_lite Diffrep, got {type(diffrep).__name__}")
    check_sampler_options(prior, diffrep, **(flags or {}))
    _check_steps(steps, prior.schedule.num_train_timesteps)
    dtype, device = prior.dtype, torch.device(prior.device)
    V = 1
    if diffrep is not None:
        if tuple(diffrep.view_shape) != tuple(prior.data_shape):
            raise ValueError(
                f"diffrep renders views of shape {tuple(diffrep.view_shape)}, but the prior's data shape is "
                f"{tuple(prior.data_shape)}"
            )
        V = check_int(diffrep.n_views, "diffrep.n_views")
    if params0 is not None:
        if diffrep is None:
            raise ValueError("params0 was given but there is no diffrep")
        n0 = check_params(diffrep, params0, "params0")
        for k, t in params0.items():
            if t.dtype != dtype or t.device.type != device.type:
                raise TypeError(
                    f"params0[{k!r}] has dtype/device {t.dtype}/{t.device}, the prior uses {dtype}/{device}"
                )
        if n is not None and n != n0:
            raise ValueError(f"n={n} does not match params0's batch size {n0}")
        n = n0
    n = check_int(1 if n is None else n, "n")
    check_guidance(prior, guidance_scale)
    view_conds = diffrep.view_conds() if diffrep is not None else None
    conds = _broadcast_cond(cond, n)
    if conds is not None:
        prior.check_cond(conds, n)
    if conds is None and view_conds is None:
        items = None
    elif view_conds is None:
        items = [c for c in conds for _ in range(V)]
    elif conds is None:
        items = [vc for _ in range(n) for vc in view_conds]
    else:
        items = [prior.combine_cond(c, vc) for c in conds for vc in view_conds]
    prior.check_cond(items, n * V)  # also for items=None: a prior that needs a condition says so here
    gen = make_generator(seed, generator, device)
    return Setup(prior, diffrep, n, V, gen, params0, items, guidance_scale, dtype, device)


def prior_eps(s: Setup, x: torch.Tensor, sigma) -> torch.Tensor:
    """Evaluate the prior on every view: ``x`` ``[n, V, *shape]`` -> ``eps_hat`` of the same shape.
    ``sigma`` is a float or a ``[n]`` tensor (one level per sample, shared by its views)."""
    n, V = x.shape[:2]
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sig.ndim == 1:
        sig = sig.repeat_interleave(V)
    with torch.no_grad():
        e = s.prior.eps(x.flatten(0, 1), sig, s.item_conds, s.guidance_scale)
    return e.reshape(x.shape)


def check_progress(progress) -> bool:
    """Validate the ``progress`` flag (call it before any sampling work)."""
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    return progress


def progress_range(steps: int, progress: bool, desc: str):
    """``range(steps)`` wrapped in a ``tqdm.auto`` bar labelled ``desc``; no bar when ``progress`` is False.

    Raises:
        TypeError: ``progress`` is not a bool.
    """
    check_progress(progress)
    return tqdm(range(steps), disable=not progress, desc=desc, leave=False)


def check_callback(callback: Callable | None):
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(step, info) or None, got {type(callback).__name__}")


def nfe_multiplier(s: Setup) -> int:
    """2 when classifier-free guidance runs a conditional and an unconditional pass, else 1."""
    return getattr(s.prior, "evals_per_call", lambda g: 1)(s.guidance_scale)


def bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``[n]`` vector to broadcast against ``like`` ``[n, ...]``."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def check_t_range(t_range) -> tuple[float, float]:
    """Validate a ``(t_min, t_max)`` pair of training-tick fractions, ``0 <= t_min < t_max <= 1``."""
    try:
        t_min, t_max = (float(v) for v in t_range)
    except (TypeError, ValueError):
        raise ValueError(f"t_range must be a pair (t_min, t_max) with 0 <= t_min < t_max <= 1, got {t_range!r}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"t_range must be a pair (t_min, t_max) with 0 <= t_min < t_max <= 1, got {t_range!r}")
    return t_min, t_max
