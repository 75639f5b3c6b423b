"""Noise schedules in the variance-exploding (VE) view.

A VP diffusion model is trained on ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
Dividing by ``sqrt(abar_t)`` gives the VE form ``x~ = x0 + sigma_t eps`` with
``sigma_t = sqrt((1 - abar_t) / abar_t)``. Every sampler in diffrep-lite works in the
VE form; priors convert back (``x_t = x~ / sqrt(1 + sigma^2)``) when they call a network.

The ``alphas_cumprod`` come from a diffusers scheduler config, so a schedule is exactly the
one a checkpoint was trained with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Schedule", "sigma_to_alpha_bar", "alpha_bar_to_sigma", "renoise_coefficient", "geometric_schedule",
           "PREDICTION_TYPES", "check_prediction_type", "ve_to_vp", "eps_from_prediction"]

#: What a diffusers network may predict (the ``prediction_type`` of its scheduler config); each converts to
#: the noise ``eps`` exactly (:func:`eps_from_prediction`).
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")

_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def alpha_bar_to_sigma(alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """VP -> VE: ``sigma = sqrt((1 - abar) / abar)``."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return torch.sqrt((1.0 - a) / a)


def sigma_to_alpha_bar(sigma: torch.Tensor | float) -> torch.Tensor:
    """VE -> VP: ``abar = 1 / (1 + sigma^2)``."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    return 1.0 / (1.0 + s * s)


def _per_input(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` (a scalar or one level per input ``[B]``) shaped to broadcast over ``x`` ``[B, ...]``, in ``x``'s
    dtype or float32 if that is wider (``sigma^2`` overflows float16 above 256)."""
    sigma = torch.as_tensor(sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))) if sigma.ndim else sigma


def ve_to_vp(x: torch.Tensor, sigma) -> torch.Tensor:
    """VE input ``x = x0 + sigma eps`` -> the VP network input ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``.

    With ``abar = 1 / (1 + sigma^2)`` this is ``x_t = x / sqrt(1 + sigma^2)`` (the noise ``eps`` is the same
    in both forms). ``sigma``: a scalar or ``[B]`` (one level per input of ``x`` ``[B, ...]``)."""
    s = _per_input(sigma, x)
    return (x / torch.sqrt(1.0 + s * s)).to(x.dtype)


def check_prediction_type(prediction_type, name: str = "prediction_type") -> str:
    """``prediction_type`` if it is one of :data:`PREDICTION_TYPES`, else a ``ValueError`` naming ``name``."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{name} must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return prediction_type


def eps_from_prediction(out: torch.Tensor, x_t: torch.Tensor, sigma, prediction_type: str) -> torch.Tensor:
    """The noise ``eps`` a VP network's output ``out`` stands for, at VP input ``x_t`` and VE level ``sigma``.

    With ``a = sqrt(abar) = 1 / sqrt(1 + sigma^2)`` and ``b = sqrt(1 - abar) = sigma a`` (so ``x_t = a x0 + b eps``
    and ``a^2 + b^2 = 1``):

    * ``"epsilon"``: ``eps = out``;
    * ``"sample"`` (``out`` is ``x0``): ``eps = (x_t - a out) / b``;
    * ``"v_prediction"`` (``out = v = a eps - b x0``, Salimans & Ho 2022): ``eps = a v + b x_t``.

    These are the conversions of diffusers' ``DDIMScheduler.step``. ``sigma``: a scalar or ``[B]``.
    """
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return out
    s = _per_input(sigma, x_t)
    a = 1.0 / torch.sqrt(1.0 + s * s)
    b = s * a
    eps = a * out + b * x_t if prediction_type == "v_prediction" else (x_t - a * out) / b
    return eps.to(out.dtype)


def renoise_coefficient(sigma_from: float, sigma_to: float, eta: float) -> float:
    """Correlation ``c`` of the non-Markovian forward (re-noising) update from ``sigma_from`` up to ``sigma_to``.

    The DDIM family with stochasticity ``eta`` couples the noise of two levels as
    ``e_to = c * e_from + sqrt(1 - c^2) * z`` with ``z ~ N(0, I)``, where (``abar`` at ``sigma_to`` is
    ``a_t``, at ``sigma_from`` is ``a_p``)::

        c^2 = 1 - eta^2 * (1 - a_t / a_p) / (1 - a_t)

    ``eta = 0`` (deterministic DDIM) gives ``c = 1``: the tracked noise is reused. ``eta = 1`` between
    neighbouring ticks gives ``c^2 = (alpha_t - abar_t) / (1 - abar_t)``, RePaint's Markovian DDPM update.
    The result keeps the re-noised sample's noise marginally ``N(0, I)`` (see the book's derivation).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    if not sigma_to >= sigma_from >= 0.0:
        raise ValueError(
            f"renoise_coefficient goes up in noise: need sigma_to >= sigma_from >= 0, got "
            f"sigma_from={sigma_from!r}, sigma_to={sigma_to!r}"
        )
    if sigma_to == 0.0:
        return 1.0
    a_t = 1.0 / (1.0 + sigma_to**2)
    a_p = 1.0 / (1.0 + sigma_from**2)
    c2 = 1.0 - eta**2 * (1.0 - a_t / a_p) / (1.0 - a_t)
    return math.sqrt(max(c2, 0.0))


@dataclass
class Schedule:
    """A discrete diffusion noise schedule (``alphas_cumprod`` over the training ticks).

    Build it from a diffusers scheduler config (``Schedule.from_config``), a diffusers scheduler
    (``Schedule.from_scheduler``) or by name (``Schedule.named("squaredcos_cap_v2")``).

    Attributes:
        alphas_cumprod: float64 tensor ``[T]``, decreasing, the training schedule.
    """

    alphas_cumprod: torch.Tensor

    def __post_init__(self):
        a = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64).flatten()
        if a.numel() < 2 or not torch.all((a > 0) & (a <= 1)):
            raise ValueError("alphas_cumprod must have >= 2 entries, all in (0, 1]")
        if not torch.all(a[1:] <= a[:-1]):
            raise ValueError("alphas_cumprod must be non-increasing")
        self.alphas_cumprod = a

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_config(cls, config) -> "Schedule":
        """From a diffusers scheduler config (a dict or a ``FrozenDict``)."""
        from diffusers import DDPMScheduler

        cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
        sched = DDPMScheduler.from_config(cfg)
        return cls(sched.alphas_cumprod.clone())

    @classmethod
    def from_scheduler(cls, scheduler) -> "Schedule":
        """From any diffusers scheduler instance (uses its ``alphas_cumprod``)."""
        if not hasattr(scheduler, "alphas_cumprod"):
            raise TypeError("scheduler must be a diffusers scheduler with `alphas_cumprod`")
        return cls(torch.as_tensor(scheduler.alphas_cumprod).clone())

    @classmethod
    def named(cls, beta_schedule: str = "squaredcos_cap_v2", num_train_timesteps: int = 1000, **kw) -> "Schedule":
        """A standard schedule by name: one of ``linear``, ``scaled_linear`` (Stable Diffusion) or
        ``squaredcos_cap_v2`` (cosine). Extra keywords go to the diffusers config (``beta_start``...)."""
        if beta_schedule not in _BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {_BETA_SCHEDULES}, got {beta_schedule!r}")
        if int(num_train_timesteps) < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps!r}")
        cfg = dict(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule, **kw)
        if beta_schedule == "scaled_linear":
            cfg.setdefault("beta_start", 0.00085)
            cfg.setdefault("beta_end", 0.012)
        return cls.from_config(cfg)

    # ---------------------------------------------------------------- queries
    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    @property
    def sigmas(self) -> torch.Tensor:
        """VE noise level of every training tick, float64 ``[T]`` (increasing)."""
        return alpha_bar_to_sigma(self.alphas_cumprod)

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    def timestep_of(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Nearest training tick (in log-sigma) for each noise level; long tensor of ``sigma``'s shape."""
        s = torch.as_tensor(sigma, dtype=torch.float64).clamp_min(1e-12)
        logs = self.sigmas.log().to(s.device)
        return (s.log()[..., None] - logs).abs().argmin(-1)

    def timesteps(self, steps: int) -> torch.Tensor:
        """``steps`` training ticks, descending, from the last tick (``trailing`` spacing of diffusers'
        DDIM scheduler, so the first level is the schedule's ``sigma_max``)."""
        from diffusers import DDIMScheduler

        steps = _check_steps(steps, self.num_train_timesteps)
        ddim = DDIMScheduler(num_train_timesteps=self.num_train_timesteps, timestep_spacing="trailing")
        ddim.set_timesteps(steps)
        return ddim.timesteps.clone().long()

    def sigma_grid(self, steps: int) -> torch.Tensor:
        """Decreasing VE noise levels ``[steps + 1]`` (float64): the ``steps`` ticks of
        :meth:`timesteps`, then ``0`` (the clean end point)."""
        t = self.timesteps(steps)
        return torch.cat([self.sigmas[t], torch.zeros(1, dtype=torch.float64)])


def geometric_schedule(sigma_min: float = 0.01, sigma_max: float = 200.0,
                       num_train_timesteps: int = 1000) -> Schedule:
    """A :class:`Schedule` whose VE noise levels are geometric from ``sigma_min`` to ``sigma_max``
    (``abar = 1 / (1 + sigma^2)``), so every sampler step covers the same log-sigma range.

    Exact mixtures decide between their modes at ``sigma`` of the order of the distance between modes; this
    schedule spends steps there (a cosine schedule jumps from ``sigma ~ 2e4`` straight to ``~6`` in 10 steps).
    """
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min!r}, {sigma_max!r}")
    s = torch.logspace(torch.log10(torch.tensor(float(sigma_min))), torch.log10(torch.tensor(float(sigma_max))),
                       num_train_timesteps, dtype=torch.float64)
    return Schedule(sigma_to_alpha_bar(s))


def _check_steps(steps, limit: int | None = None) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be a positive int, got {type(steps).__name__} {steps!r}")
    if steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if limit is not None and steps > limit:
        raise ValueError(f"steps must be <= the schedule's {limit} training timesteps, got {steps}")
    return steps
