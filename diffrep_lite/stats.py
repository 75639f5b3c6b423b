"""Small statistics for mode histograms: how often a sampler returns each known mode, against the weights.

Thin wrappers around :mod:`scipy.stats` (Wilson intervals from ``binomtest(...).proportion_ci``, Pearson's
chi-square from ``chisquare``, Fisher's exact test from ``fisher_exact``), so every notebook and benchmark
reports the same numbers the same way.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["wilson_interval", "mode_histogram", "fisher_exact"]


def _counts(counts, name="counts") -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1 or c.size < 1 or not np.all(np.equal(np.mod(c, 1), 0)) or np.any(c < 0):
        raise ValueError(f"{name} must be a 1-D sequence of non-negative integers, got {counts!r}")
    return c.astype(np.int64)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` (``(nan, nan)`` for ``n = 0``)."""
    from scipy.stats import binomtest

    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n or not 0 <= k <= n:
        raise ValueError(f"need integers 0 <= k <= n, got k={k!r}, n={n!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mode_histogram(counts, weights, *, blends: int = 0, confidence: float = 0.95) -> dict:
    """Compare how often each mode was sampled with the mode weights.

    Args:
        counts: ``[K]`` samples assigned to each mode.
        weights: ``[K]`` non-negative weights with a positive sum (normalised here).
        blends: samples assigned to no mode (near none of them); they count in ``n`` and in the blend share,
            not in the chi-square test, which compares the *assigned* samples with the weights.
        confidence: of the Wilson intervals.

    Returns:
        ``{"n", "counts", "blends", "fractions" (of all n), "ci" ([K] pairs, Wilson, of all n), "blend_share",
        "blend_ci", "assigned_fractions" (of the assigned samples), "chi2", "p" (Pearson's chi-square of the
        assigned counts against ``weights``, K - 1 degrees of freedom; nan when nothing was assigned),
        "weights"}``.
    """
    from scipy.stats import chisquare

    c = _counts(counts)
    w = np.asarray(weights, dtype=np.float64).flatten()
    if w.size != c.size or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"weights must be {c.size} non-negative numbers with a positive sum, got {weights!r}")
    if isinstance(blends, bool) or int(blends) != blends or blends < 0:
        raise ValueError(f"blends must be a non-negative integer, got {blends!r}")
    w = w / w.sum()
    m = int(c.sum())
    n = m + int(blends)
    if m > 0:
        test = chisquare(c, w * m)
        chi2, p = float(test.statistic), float(test.pvalue)
    else:
        chi2 = p = math.nan
    return {"n": n, "counts": c.tolist(), "blends": int(blends), "weights": w.tolist(),
            "fractions": (c / n).tolist() if n else [math.nan] * c.size,
            "ci": [wilson_interval(int(k), n, confidence) for k in c],
            "blend_share": blends / n if n else math.nan, "blend_ci": wilson_interval(int(blends), n, confidence),
            "assigned_fractions": (c / m).tolist() if m else [math.nan] * c.size, "chi2": chi2, "p": p}


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact p of ``k1 / n1`` against ``k2 / n2`` (e.g. two samplers' Janus counts)."""
    from scipy.stats import fisher_exact as _fisher

    for k, n in ((k1, n1), (k2, n2)):
        if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n or not 0 <= k <= n:
            raise ValueError(f"need integers 0 <= k <= n, got k={k!r}, n={n!r}")
    return float(_fisher([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)
