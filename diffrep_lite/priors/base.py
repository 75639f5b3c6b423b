"""The model side: one small protocol every diffusion prior implements.

A prior answers one question: given noisy views ``x`` in the VE form ``x = x0 + sigma * eps``
(shape ``[B, *data_shape]``) at noise level ``sigma``, what is the noise ``eps_hat``? From it follow
the denoiser ``x0_hat = x - sigma * eps_hat``, the score ``-eps_hat / sigma`` and the PF-ODE
``dx/dsigma = eps_hat``. A prior carries its own :class:`~diffrep_lite.schedule.Schedule` and knows its
data space (``data_shape``; ``decode`` maps it to displayable images, e.g. a VAE for SD latents).
"""
from __future__ import annotations

import torch

from ..schedule import Schedule
from ..validation import check_finite_tensor, check_real

__all__ = ["Prior", "check_guidance", "mix_guidance", "classifier_free_guidance"]


class Prior:
    """Base class of all priors.

    Subclasses set ``schedule``, ``data_shape``, ``dtype``, ``device`` and implement
    :meth:`_eps`. ``conditional`` says whether a condition (class label, prompt, view) is accepted;
    ``supports_guidance`` whether classifier-free guidance is.
    """

    schedule: Schedule
    data_shape: tuple
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    conditional: bool = False
    supports_guidance: bool = False
    #: Why :meth:`eps` refuses ``guidance_scale`` (a clause for the error message), when ``supports_guidance`` is False
    #: for a reason the user can fix; "" for none.
    guidance_refusal: str = ""
    #: Network passes per input under classifier-free guidance (a scale other than None, 0 and 1): 2 for a prior
    #: that evaluates the conditional and the unconditional branch separately, 1 (the default) otherwise.
    cfg_passes: int = 1
    #: Types of the per-view conditions (a diffrep's ``view_conds()``) this prior takes: None (its ``check_cond``
    #: decides), ``()`` (none: a class-label or unconditional prior), ``(str,)`` (prompt suffixes), ``(int,)``.
    view_cond_types: tuple | None = None
    #: A bound on ``|x0|`` of the data (1 for images and latents in about ``[-1, 1]``); the samplers' divergence
    #: guard stops a run whose renders reach ``100 (data_radius + sigma_max)``. Analytic priors compute theirs.
    data_radius: float = 1.0

    # -------------------------------------------------------------- public API
    def eps(self, x: torch.Tensor, sigma, cond=None, guidance_scale: float | None = None) -> torch.Tensor:
        """Noise prediction ``eps_hat(x, sigma)`` for VE-form inputs.

        Args:
            x: ``[B, *data_shape]`` noisy inputs ``x0 + sigma * eps``.
            sigma: a float, a 0-d tensor or a ``[B]`` tensor of noise levels (> 0).
            cond: the condition for each of the ``B`` inputs (a list/tensor of length ``B``), or None.
            guidance_scale: classifier-free guidance scale (``>= 0``), only for priors that support it.

        Returns:
            ``[B, *data_shape]`` tensor, same dtype and device as ``x``.
        """
        self.check_input(x, "x")
        sig = self._sigma_vector(sigma, x.shape[0], x)
        self.check_cond(cond, x.shape[0])
        check_guidance(self, guidance_scale)
        return self._eps(x, sig, cond, guidance_scale)

    def x0(self, x: torch.Tensor, sigma, cond=None, guidance_scale: float | None = None) -> torch.Tensor:
        """Denoiser ``x0_hat = x - sigma * eps_hat`` (Tweedie's estimate of the clean sample)."""
        self.check_input(x, "x")
        sig = self._sigma_vector(sigma, x.shape[0], x)
        e = self.eps(x, sig, cond, guidance_scale)
        return x - _bcast(sig, x) * e

    def score(self, x: torch.Tensor, sigma, cond=None, guidance_scale: float | None = None) -> torch.Tensor:
        """``grad log p_sigma(x) = -eps_hat / sigma``."""
        self.check_input(x, "x")
        sig = self._sigma_vector(sigma, x.shape[0], x)
        return -self.eps(x, sig, cond, guidance_scale) / _bcast(sig, x)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Map samples in the data space to displayable images (identity by default)."""
        return x

    def combine_cond(self, cond, view_cond):
        """Join a sample's condition with a view's condition (e.g. a prompt and a view suffix)."""
        return (cond, view_cond)

    def evals_per_call(self, guidance_scale) -> int:
        """Network evaluations per input in one :meth:`eps` call: :attr:`cfg_passes` under classifier-free
        guidance (``guidance_scale`` not None, 0 or 1), else 1."""
        if self.cfg_passes == 1 or guidance_scale is None or float(guidance_scale) in (0.0, 1.0):
            return 1
        return self.cfg_passes

    # -------------------------------------------------------------- to implement
    def _eps(self, x, sigma, cond, guidance_scale):  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------- checks
    def check_input(self, x, name="x"):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != tuple(self.data_shape):
            raise ValueError(
                f"{name} must have shape [B, {', '.join(map(str, self.data_shape))}] for this prior, "
                f"got {list(x.shape)}"
            )
        if x.dtype != self.dtype or x.device.type != torch.device(self.device).type:
            raise TypeError(
                f"{name} has dtype/device {x.dtype}/{x.device}, the prior expects {self.dtype}/{self.device}"
            )
        check_finite_tensor(x, name)

    def check_cond(self, cond, batch: int | None = None):
        """Validate a condition: None for unconditional priors; otherwise a sequence or tensor of
        length ``batch`` (subclasses may check its values)."""
        if cond is None:
            return
        if not self.conditional:
            raise ValueError(f"cond was given, but {type(self).__name__} is unconditional; pass cond=None")
        if batch is not None and len(cond) != batch:
            raise ValueError(f"cond must have one entry per input ({batch}), got {len(cond)}")

    def _sigma_vector(self, sigma, batch: int, like: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
        if s.ndim == 0:
            s = s.expand(batch)
        if s.shape != (batch,):
            raise ValueError(f"sigma must be a scalar or have shape [{batch}], got {list(s.shape)}")
        if not torch.all(s > 0):
            raise ValueError("sigma must be > 0 (the prior is only defined on noisy inputs)")
        check_finite_tensor(s, "sigma")
        return s


def check_guidance(prior: Prior, guidance_scale):
    """Validate a classifier-free guidance scale for ``prior`` (None, or a float >= 0)."""
    if guidance_scale is None:
        return
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise TypeError(f"guidance_scale must be a float >= 0 or None, got {guidance_scale!r}")
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale!r}")
    check_real(guidance_scale, "guidance_scale", low=0)  # and finite
    if not prior.supports_guidance:
        why = f": {prior.guidance_refusal}" if prior.guidance_refusal else ""
        raise ValueError(
            f"guidance_scale was given, but {type(prior).__name__} does not support classifier-free guidance{why}; "
            "pass guidance_scale=None"
        )


def mix_guidance(eps_u: torch.Tensor, eps_c: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``eps_u + scale (eps_c - eps_u)``.

    ``eps_u`` is the unconditional (null-condition) noise prediction, ``eps_c`` the conditional one; ``scale = 0``
    gives the unconditional model, ``1`` the conditional one, ``> 1`` over-weights the condition, ``< 0`` mirrors
    it (SDI's inversion). In score terms: ``(1 - s) grad log p(x) + s grad log p(x | c)``."""
    return eps_u + scale * (eps_c - eps_u)


def classifier_free_guidance(eps_of, cond, null, scale: float | None) -> torch.Tensor:
    """Guided noise prediction from a network call ``eps_of(*conditions)``, with as few passes as the scale needs.

    ``eps_of(c)`` evaluates the network on the inputs under condition(s) ``c``; ``eps_of(null, cond)`` on the
    inputs repeated twice along the batch (the first copy under ``null``, the second under ``cond``), so the two
    branches of guidance run as one batch. ``scale`` None or 1: ``eps_of(cond)`` (one pass); 0: ``eps_of(null)``
    (one pass); otherwise :func:`mix_guidance` of the two halves of ``eps_of(null, cond)``."""
    if scale is None or scale == 1.0:
        return eps_of(cond)
    if scale == 0.0:
        return eps_of(null)
    e_u, e_c = eps_of(null, cond).chunk(2)
    return mix_guidance(e_u, e_c, scale)


def _bcast(sig: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sig.reshape(-1, *([1] * (x.ndim - 1)))
