"""Diffusion priors (the model side). See :class:`~diffrep_lite.priors.base.Prior` for the protocol."""
from .analytic import ClassConditionalMixture, Gaussian, GaussianMixture
from .base import Prior
from .clip import ClipDenoised
from .diffusers_unet import UNetPrior
from .multiview import ViewConditionedMixture, ViewMixture, random_panoramas
from .scenes import (BLEND_PSNR, DISTRIBUTION_TOYS, SceneMixture, blob_scenes, distribution_toy, nearest_scene,
                     scene_mixture, turn_scene)
from .shipped import load_digits_prior, load_objects_prior
from .stable_diffusion import StableDiffusionPrior

__all__ = ["Prior", "Gaussian", "GaussianMixture", "ClassConditionalMixture", "ClipDenoised", "UNetPrior", "load_digits_prior", "load_objects_prior",
           "StableDiffusionPrior", "ViewMixture", "ViewConditionedMixture", "random_panoramas", "SceneMixture", "blob_scenes",
           "scene_mixture", "turn_scene", "nearest_scene", "BLEND_PSNR", "distribution_toy", "DISTRIBUTION_TOYS"]
