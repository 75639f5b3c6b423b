"""The models that ship inside the package: a class-conditional pixel DDPM on scikit-learn's digits, and a
view-conditioned pixel DDPM on procedural 3-D objects (``objects16``, see :func:`load_objects_prior`).

``diffrep_lite/models/digits16/`` holds a diffusers ``UNet2DModel`` (1.1 M parameters, 16x16, one
channel in ``[-1, 1]``; EMA weights as safetensors), its ``DDPMScheduler`` config (Stable Diffusion's
schedule: 1000 ``scaled_linear`` ticks, beta 0.00085 -> 0.012, so ``sigma_max = 14.6``; epsilon prediction)
and a model card (``README.md``) with its measured sample quality. Labels ``0..9`` are the digits, label
``10`` is the null label of classifier-free guidance. It was trained by ``scripts/train_digits_ddpm.py`` on
the training split of :func:`diffrep_lite.data.digits_split`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .diffusers_unet import UNetPrior

__all__ = ["load_digits_prior", "load_objects_prior", "shipped_model_path", "DIGITS_NULL_LABEL",
           "OBJECTS_NULL_LABEL"]

#: Class label the shipped digits model uses as the null condition for classifier-free guidance.
DIGITS_NULL_LABEL = 10
#: Class label the shipped objects model uses as the null condition (labels 0..7 are the azimuth bins).
OBJECTS_NULL_LABEL = 8


def shipped_model_path(name: str = "digits16") -> Path:
    """Directory of a model shipped with the package (``"digits16"``, ``"digits_features"``).

    Raises:
        ValueError: unknown ``name`` (the message lists the shipped ones).
    """
    root = Path(__file__).resolve().parent.parent / "models"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if name not in names:
        raise ValueError(f"name must be one of the shipped models {names}, got {name!r}")
    return root / name


def load_digits_prior(device="cpu", dtype=torch.float32, *, resolution: int | None = None,
                      batch_size: int | None = None) -> UNetPrior:
    """The shipped digits DDPM as a :class:`~diffrep_lite.priors.UNetPrior`.

    Args:
        device, dtype: where it runs (CPU float32 by default).
        resolution: 16 (the training resolution, default) or another multiple of 4 (the UNet is
            convolutional, but it has only seen 16x16 digits).
        batch_size: largest UNet batch per call (None: no limit).

    Returns:
        A prior with ``data_shape = (1, res, res)``, ``cond`` = int labels 0..9 (10 = null label) and
        classifier-free guidance.
    """
    return UNetPrior.from_pretrained(shipped_model_path("digits16"), device=device, dtype=dtype,
                                     null_label=DIGITS_NULL_LABEL, resolution=resolution, batch_size=batch_size)


def load_objects_prior(device="cpu", dtype=torch.float32, *, batch_size: int | None = None,
                       path=None) -> UNetPrior:
    """The shipped view-conditioned DDPM on the toy 3-D objects (:func:`diffrep_lite.data.toy_objects`).

    ``diffrep_lite/models/objects16/`` holds a diffusers ``UNet2DModel`` (16x16 RGB in ``[-1, 1]``,
    ``num_class_embeds = 9``), its ``DDPMScheduler`` config (Stable Diffusion's ``scaled_linear`` schedule,
    beta 0.00085 -> 0.012, 1000 ticks, epsilon prediction) and a model card. It was trained by
    ``scripts/train_objects_ddpm.py``.

    Args:
        device, dtype: where it runs (CPU float32 by default).
        batch_size: largest UNet batch per call (None: no limit).
        path: another checkpoint directory of the same layout (e.g. a training checkpoint); default the shipped one.

    Returns:
        A prior with ``data_shape = (3, 16, 16)``; ``cond`` = the azimuth bin ``0..7`` of each view (bin ``b`` is
        azimuth ``45 b`` degrees, bin 0 sees the face), ``8`` = the null label for classifier-free guidance.
    """
    path = shipped_model_path("objects16") if path is None else path
    return UNetPrior.from_pretrained(path, device=device, dtype=dtype, null_label=OBJECTS_NULL_LABEL,
                                     batch_size=batch_size)
