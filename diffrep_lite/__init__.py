"""diffrep-lite: Diffusing Differentiable Representations (Savani, Finzi, Kolter, NeurIPS 2024).

Sample the parameters of a differentiable representation with a pretrained diffusion model by
pulling the reverse-time PF-ODE back to parameter space: ``dtheta = J^+ dx``.

Quick start::

    import diffrep_lite as dl
    prior = dl.priors.Gaussian(mean=[1.0, -1.0], cov=[[1.0, 0.5], [0.5, 0.5]])
    rep = dl.diffreps.Warp2D()
    out = dl.sample("ddr", prior, rep, steps=50, n=1000, seed=0)
    out.x  # [1000, 1, 2] renders f(theta), distributed like the prior
"""
from . import diffreps, presets, priors, pullback, samplers, testing
from .samplers import METHODS, DivergenceError, SampleResult, sample
from .schedule import Schedule

__version__ = "0.1.0"
__all__ = ["sample", "METHODS", "SampleResult", "DivergenceError", "Schedule", "priors", "diffreps", "presets", "pullback", "samplers", "testing"]
