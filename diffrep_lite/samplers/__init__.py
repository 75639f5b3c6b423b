"""Samplers: one signature for every method, one entry point :func:`sample`.

``sample(method, prior, diffrep, *, steps, n, seed, ...)`` dispatches to

* ``"reference"`` — plain DDIM in the prior's data space (no diffrep),
* ``"ddr"`` — DDR, the pulled-back PF-ODE (:mod:`.ddr`),
* ``"sjc"`` — Score Jacobian Chaining with PAAS (:mod:`.distill`),
* ``"sds"`` — Score Distillation Sampling (:mod:`.distill`),
* ``"sdi"`` — Score Distillation via Inversion, SDS with DDIM-inverted noise (:mod:`.sdi`).
"""
from __future__ import annotations

from .common import DivergenceError, SampleResult
from .ddr import ddr
from .distill import sds, sjc
from .reference import reference
from .sdi import sdi

#: Sampler name -> function; :func:`sample` dispatches on these keys.
METHODS = {"reference": reference, "ddr": ddr, "sjc": sjc, "sds": sds, "sdi": sdi}


def sample(method: str, prior, diffrep=None, **kwargs) -> SampleResult:
    """Run the sampler ``method`` (see :data:`METHODS`) on ``prior`` and ``diffrep``.

    Every method takes ``steps``, ``n``, ``seed`` (or ``generator``), ``cond``, ``guidance_scale``,
    ``progress`` and ``callback``; method-specific options are documented on each function.
    Arguments are validated before any sampling work starts.

    Raises:
        ValueError: unknown ``method`` (the message lists the allowed names) or a bad argument.
        TypeError: an argument of the wrong type, dtype or device.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](prior, diffrep, **kwargs)


__all__ = ["sample", "METHODS", "SampleResult", "DivergenceError", "reference", "ddr", "sjc", "sds", "sdi"]
