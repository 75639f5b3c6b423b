"""Diffusion priors (the model side). See :class:`~diffrep_lite.priors.base.Prior` for the protocol."""
from .analytic import Gaussian, GaussianMixture
from .base import Prior
from .stable_diffusion import StableDiffusionPrior

__all__ = ["Prior", "Gaussian", "GaussianMixture", "StableDiffusionPrior"]
