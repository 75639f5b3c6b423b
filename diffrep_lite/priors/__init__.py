"""Diffusion priors (the model side). See :class:`~diffrep_lite.priors.base.Prior` for the protocol."""
from .analytic import Gaussian, GaussianMixture
from .base import Prior
from .scenes import ViewConditionedMixture, blob_scenes, geometric_schedule, psnr, scene_mixture

__all__ = ["Prior", "Gaussian", "GaussianMixture", "ViewConditionedMixture", "blob_scenes", "scene_mixture",
           "geometric_schedule", "psnr"]
