"""Recommended settings, defined once: the library's defaults read them, and so do notebooks and benchmarks.

DDR's defaults depend on the kind of diffrep (its :attr:`~diffrep_lite.diffreps.base.Diffrep.ddr_preset`):

* ``"default"`` — small or linear diffreps (identity, ``Linear``, ``Warp2D``): one Gauss-Newton fit per level,
  solved to convergence (CG, 20 iterations). For a linear diffrep one fit is exact.
* ``"neural_field"`` — coordinate networks (SIREN images and panoramas): six fits of four CG iterations per level.
  A SIREN is far from linear over one level's step, so several short Gauss-Newton fits track ``x0_hat`` where
  one long solve overshoots the region where the linearisation holds (the practical guide's measurements).
* ``"nerf"`` — voxel NeRFs: one fit of eight CG iterations per level (notebook 05's learned-prior setting).

Each preset is a dict of :func:`~diffrep_lite.samplers.ddr.ddr` keywords; a keyword the user passes wins.
"""
from __future__ import annotations

__all__ = ["DDR_PRESETS", "ddr_preset"]

#: Preset name -> DDR keywords (``fit_iters``, ``solver``, ``solver_iters``).
DDR_PRESETS = {
    "default": {"fit_iters": 1, "solver": "cg", "solver_iters": 20},
    "neural_field": {"fit_iters": 6, "solver": "cg", "solver_iters": 4},
    "nerf": {"fit_iters": 1, "solver": "cg", "solver_iters": 8},
}


def ddr_preset(diffrep, name: str | None = None) -> dict:
    """DDR's recommended keywords for ``diffrep`` (its ``ddr_preset``), or for the preset ``name``."""
    key = getattr(diffrep, "ddr_preset", "default") if name is None else name
    if key not in DDR_PRESETS:
        raise ValueError(f"preset must be one of {sorted(DDR_PRESETS)}, got {key!r}")
    return dict(DDR_PRESETS[key])
