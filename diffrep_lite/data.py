"""Small image data sets that ship inside PyPI packages (no download).

``load_digits16`` gives scikit-learn's bundled handwritten digits (1797 images of 8x8, values 0..16,
ten classes) upsampled to 16x16 and scaled to ``[-1, 1]``: the training data of the shipped model
(:func:`diffrep_lite.priors.load_digits_prior`). scikit-learn is imported lazily (it is in the
``notebooks`` extra, not a hard dependency).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["load_digits16", "upsample_digits", "digits_split"]


def upsample_digits(images, size: int = 16) -> torch.Tensor:
    """Map raw 8x8 digit images (values 0..16) to ``[N, 1, size, size]`` float32 in ``[-1, 1]``.

    Bilinear upsampling (``align_corners=False``), then ``x / 16 * 2 - 1``.

    Args:
        images: array-like ``[N, 8, 8]`` with values in ``[0, 16]``.
        size: output side length in pixels (>= 8).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 3:
        raise ValueError(f"images must have shape [N, 8, 8], got {list(x.shape)}")
    x = (x / 16.0)[:, None]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0)


def load_digits16(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(images [1797, 1, size, size] float32 in [-1, 1], labels [1797] long)``.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits16 needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    return upsample_digits(d.images, size), torch.as_tensor(d.target, dtype=torch.long)


def digits_split(size: int = 16, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's digits split into ``{"train": (x, y), "heldout": (x, y)}``: a stratified 80/20 split.

    For each class in turn, a ``torch.randperm`` (one generator seeded with ``seed``) picks the first
    fifth of that class's images as held out (359 of 1797 for ``seed=0``). The shipped DDPM trains on
    ``"train"`` only; the shipped KID feature net uses the same split; quality figures compare samples
    with ``"heldout"``.
    """
    x, y = load_digits16(size)
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[: len(idx) // 5])
    held = torch.cat(held)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[held] = False
    return {"train": (x[mask], y[mask]), "heldout": (x[held], y[held])}
