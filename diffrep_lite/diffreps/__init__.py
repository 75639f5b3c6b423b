"""Differentiable representations (the representation side). See :class:`~diffrep_lite.diffreps.base.Diffrep`."""
from .base import Diffrep
from .nerf import Camera, VoxelNeRF, cameras_on_sphere, view_prompt
from .simple import Identity, Linear, Warp2D
from .siren import NeuralField, Siren, SirenImage

__all__ = ["Diffrep", "Identity", "Linear", "Warp2D", "NeuralField", "Siren", "SirenImage", "Camera", "VoxelNeRF",
           "cameras_on_sphere", "view_prompt"]
