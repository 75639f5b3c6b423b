"""The geometry of overlapping crops of a wide canvas, shared by both sides of the package.

:class:`Crops` is what a :class:`~diffrep_lite.diffreps.Panorama` renders through (the representation side) and
what the exact multi-view prior :class:`~diffrep_lite.priors.ViewConditionedMixture` crops its known canvases
with (the model side); it lives here so that neither side imports the other.
"""
from __future__ import annotations

import torch

__all__ = ["Crops"]


def _select(n_views: int, views) -> list[int]:
    """Validate a view subset (None = all) and return it as a list of indices."""
    if views is None:
        return list(range(n_views))
    idx = [views] if isinstance(views, int) else list(views)
    for v in idx:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n_views:
            raise ValueError(f"views must be view indices in [0, {n_views}), got {views!r}")
    return idx


class Crops:
    """Overlapping ``H x w`` crops of a ``H x W`` canvas, at integer column offsets.

    Args:
        canvas_width: ``W`` (pixels).
        view_width: ``w`` (pixels), ``1 <= w <= W``.
        offsets: column offset of each view's left edge. Default: every ``stride`` columns, from 0 to
            ``W - w`` (the last crop is moved flush right if the stride does not land there) or, with
            ``wrap``, from 0 to below ``W``.
        stride: default offset spacing (default ``w // 2``, i.e. 50% overlap).
        wrap: the canvas is a ring (360°): column ``x`` and ``x + W`` are the same, and a crop may
            cross the seam. Without ``wrap`` every crop must lie inside ``[0, W)``.

    Attributes:
        offsets: tuple of ints (in ``[0, W)`` with ``wrap``).
        index: long tensor ``[V, w]``, the canvas columns of each view.
    """

    def __init__(self, canvas_width: int, view_width: int, *, offsets=None, stride: int | None = None,
                 wrap: bool = False):
        for name, val in (("canvas_width", canvas_width), ("view_width", view_width)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if view_width > canvas_width:
            raise ValueError(f"view_width ({view_width}) must be <= canvas_width ({canvas_width})")
        if not isinstance(wrap, bool):
            raise TypeError(f"wrap must be True or False, got {wrap!r}")
        W, w = canvas_width, view_width
        if offsets is None:
            stride = max(w // 2, 1) if stride is None else stride
            if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
                raise ValueError(f"stride must be a positive int, got {stride!r}")
            if wrap:
                offsets = list(range(0, W, stride))
            else:
                offsets = list(range(0, W - w + 1, stride))
                if offsets[-1] != W - w:
                    offsets.append(W - w)
        elif stride is not None:
            raise ValueError("pass either offsets or stride, not both")
        offsets = [int(o) for o in offsets] if not isinstance(offsets, int) else [offsets]
        if not offsets:
            raise ValueError("offsets must not be empty")
        if wrap:
            offsets = [o % W for o in offsets]
        elif any(o < 0 or o + w > W for o in offsets):
            raise ValueError(f"without wrap every offset must lie in [0, W - w] = [0, {W - w}], got {offsets}")
        self.canvas_width, self.view_width, self.wrap = W, w, wrap
        self.offsets = tuple(offsets)
        self.index = (torch.tensor(offsets)[:, None] + torch.arange(w)[None]) % W

    @property
    def n_views(self) -> int:
        return len(self.offsets)

    def crop(self, canvas: torch.Tensor, views=None) -> torch.Tensor:
        """Crop ``[B, C, H, W]`` canvases to ``[B, V, C, H, w]`` views (``views``: a subset of indices)."""
        if canvas.shape[-1] != self.canvas_width:
            raise ValueError(f"canvas must have width {self.canvas_width}, got shape {list(canvas.shape)}")
        idx = self.index[_select(self.n_views, views)].to(canvas.device)  # [V, w]
        out = canvas[..., idx.reshape(-1)]  # [B, C, H, V * w]
        out = out.reshape(*canvas.shape[:-1], idx.shape[0], self.view_width)
        return out.movedim(-2, 1)  # [B, V, C, H, w]

    def coverage(self) -> torch.Tensor:
        """How many views see each canvas column, long ``[W]``."""
        return torch.bincount(self.index.reshape(-1), minlength=self.canvas_width)

    def overlaps(self) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
        """Every pair of views sharing columns: ``(v, u, cols_in_v, cols_in_u)`` with ``v < u`` and the
        shared columns' positions inside each view (long tensors of equal length)."""
        cols = self.index.tolist()
        pairs = []
        for v in range(self.n_views):
            for u in range(v + 1, self.n_views):
                shared = [c for c in cols[v] if c in cols[u]]
                if shared:
                    pos_v = torch.tensor([cols[v].index(c) for c in shared])
                    pos_u = torch.tensor([cols[u].index(c) for c in shared])
                    pairs.append((v, u, pos_v, pos_u))
        return pairs


    def disagreement(self, views: torch.Tensor) -> torch.Tensor:
        """RMS difference between overlapping views on their shared pixels, ``[B]``.

        Args:
            views: ``[B, V, ..., w]`` per-view images at these crops' offsets (e.g. each view denoised by
                its own prior: crops of one canvas agree exactly, so raw renders give 0).

        Returns:
            ``sqrt(mean over all overlapping pairs and shared pixels of (view_v - view_u)^2)``. Raises
            ValueError if no two views overlap.
        """
        pairs = self.overlaps()
        if not pairs:
            raise ValueError("no two views overlap at these offsets")
        sq = [(views[:, v][..., pv] - views[:, u][..., pu]).pow(2).flatten(1) for v, u, pv, pu in pairs]
        return torch.cat(sq, 1).mean(1).sqrt()
