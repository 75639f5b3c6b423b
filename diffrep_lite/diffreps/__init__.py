"""Differentiable representations (the representation side). See :class:`~diffrep_lite.diffreps.base.Diffrep`."""
from .base import Diffrep
from .nerf import Camera, VoxelNeRF, cameras_on_sphere, view_prompt
from .panorama import Crops, MultiView, Panorama, SirenPanorama
from .simple import Identity, Linear, Warp2D
from .siren import NeuralField, Siren, SirenImage

__all__ = ["Diffrep", "Identity", "Linear", "Warp2D", "NeuralField", "Siren", "SirenImage", "MultiView", "Crops",
           "Panorama", "SirenPanorama", "Camera", "VoxelNeRF", "cameras_on_sphere", "view_prompt"]
