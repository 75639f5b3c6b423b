"""Diffusion priors (the model side). See :class:`~diffrep_lite.priors.base.Prior` for the protocol."""
from .analytic import Gaussian, GaussianMixture
from .base import Prior

__all__ = ["Prior", "Gaussian", "GaussianMixture"]
