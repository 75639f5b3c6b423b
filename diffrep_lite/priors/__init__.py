"""Diffusion priors (the model side). See :class:`~diffrep_lite.priors.base.Prior` for the protocol."""
from .analytic import Gaussian, GaussianMixture
from .base import Prior
from .clip import ClipDenoised
from .diffusers_unet import UNetPrior
from .multiview import ViewConditionedMixture, random_panoramas
from .shipped import load_digits_prior

__all__ = ["Prior", "ClipDenoised", "Gaussian", "GaussianMixture", "UNetPrior", "load_digits_prior", "ViewConditionedMixture",
           "random_panoramas"]
