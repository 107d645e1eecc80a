"""The statistics behind a per-loss verdict: paired t-intervals over seeds, Holm's correction, power.

A loss comparison pairs runs by seed (same initial weights, same data order and augmentation; only the
box loss differs), so the quantity of interest is the per-seed difference ``d_s = m(loss, s) -
m(baseline, s)`` of a metric m (COCO AP by default). Over n seeds:

- mean difference ``d̄``, sample standard deviation ``s_d`` (n - 1 in the denominator), standard error
  ``s_d / sqrt(n)``;
- two-sided ``1 - a`` t-interval (``t_interval``) ``d̄ ± t_{1-a/2, n-1} · s_d / sqrt(n)`` and the paired t-test's
  p-value (Student 1908; any textbook, e.g. Wasserman, *All of Statistics*, 10.x);
- Holm's step-down correction over the m comparisons made against one baseline (Holm 1979, "A simple
  sequentially rejective multiple test procedure", Scand. J. Statist. 6:65-70): sort the p-values
  ``p_(1) <= ... <= p_(m)``; the adjusted ``p̃_(j) = max_{i <= j} min(1, (m - i + 1) p_(i))``. A
  comparison is significant at family-wise level a iff ``p̃ < a``; the interval reported with it is
  the t-interval at level ``1 - a / (m - j + 1)``, the level of its Holm step, so it excludes 0
  exactly when its own step rejects;
- power of the two-sided paired t-test at difference δ: with ``ncp = δ / (s_d / sqrt(n))`` and
  ``c = t_{1-a/2, n-1}``, ``power = P(T' > c) + P(T' < -c)`` for T' noncentral t(n - 1, ncp). From it,
  the smallest difference a sweep detects with 80 % power (its *minimum detectable difference*) and
  the number of seeds needed to detect an observed difference with 80 % power, both taking the
  observed ``s_d`` as the true one (with 3 seeds a rough estimate: say so when you quote them).

Assumptions: the per-seed differences are independent draws from one normal distribution (seeds are
independent; the normality of a mean of a few AP differences is an approximation), and the seeds
cover retraining noise only: the evaluation set is fixed, so its sampling noise is measured separately
by an image bootstrap (``comparison.py``). Pure functions of numbers (numpy, scipy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

POWER = 0.8


@dataclass(frozen=True)
class TInterval:
    """Summary of per-seed values or paired differences: ``n``, ``mean``, ``sd`` (None for n = 1), ``lower``/``upper`` of
    the two-sided interval at ``confidence`` (None for n = 1), and the paired t-test's two-sided
    ``p`` (None for n = 1)."""

    n: int
    mean: float
    sd: float | None
    lower: float | None
    upper: float | None
    confidence: float
    p: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"expected a flat list of finite numbers, got {list(values)!r}")
    return arr


def t_interval(values, confidence: float = 0.95) -> TInterval:
    """Mean of ``values`` with its two-sided Student-t interval and the t-test p-value (H0: mean 0).
    For paired differences this is the paired t-test; for one loss's per-seed AP, the interval of its
    mean over seeds.

    With one difference there is no spread: ``sd``, the interval and ``p`` are None. With zero spread
    (all differences equal) the interval collapses to the mean, and ``p`` is 1 for a zero mean and 0
    otherwise.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = _finite(values)
    if len(d) == 0:
        raise ValueError("no values (for paired differences: no seed was run for both losses)")
    n, mean = len(d), float(d.mean())
    if n == 1:
        return TInterval(1, mean, None, None, None, confidence, None)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return TInterval(n, mean, 0.0, mean, mean, confidence, 1.0 if mean == 0.0 else 0.0)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return TInterval(n, mean, sd, mean - half, mean + half, confidence, p)


def holm_adjust(pvalues) -> list[float | None]:
    """Holm-adjusted p-values, in the order given; None entries (no test possible) stay None and do
    not count in m."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def holm_levels(pvalues, alpha: float = 0.05) -> list[float | None]:
    """The significance level of each comparison's Holm step, ``alpha / (m - j + 1)`` for the j-th
    smallest p-value (1-based), in the order given; None where the p-value is None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    for rank, i in enumerate(order):
        out[i] = alpha / (m - rank)
    return out


def paired_t_power(delta: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs, true mean difference
    ``delta`` and standard deviation of the differences ``sd`` (> 0)."""
    if n < 2:
        return float("nan")
    if sd <= 0:
        raise ValueError(f"sd must be > 0, got {sd}")
    df = n - 1
    c = float(stats.t.ppf(1 - alpha / 2, df))
    ncp = delta / (sd / math.sqrt(n))
    # P(T' < -c | ncp) = P(T' > c | -ncp): scipy's nct.cdf returns NaN in parts of its lower tail
    # (e.g. df 2, ncp 10.8), its sf does not (checked for df 1..59, |ncp| 1e-3..1e4).
    return float(stats.nct.sf(c, df, ncp) + stats.nct.sf(c, df, -ncp))


def min_detectable_difference(sd: float | None, n: int, alpha: float = 0.05, power: float = POWER) -> float | None:
    """The smallest |difference| the paired t-test detects with probability ``power`` (None when it
    cannot be computed: n < 2 or no spread)."""
    if sd is None or sd <= 0 or n < 2:
        return None
    f = lambda delta: paired_t_power(delta, sd, n, alpha) - power  # noqa: E731
    hi = sd
    while f(hi) < 0:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-12 * sd))


def seeds_needed(delta: float, sd: float | None, alpha: float = 0.05, power: float = POWER, max_n: int = 10_000) -> int | None:
    """Smallest number of seeds (>= 2) whose paired t-test detects ``delta`` with probability ``power``
    when the differences' standard deviation is ``sd``; None when ``delta`` is 0, ``sd`` unknown or
    more than ``max_n`` would be needed."""
    if sd is None or sd <= 0 or delta == 0 or not math.isfinite(delta):
        return None
    if paired_t_power(delta, sd, max_n, alpha) < power:
        return None
    lo, hi = 2, 2
    while paired_t_power(delta, sd, hi, alpha) < power:  # exponential search, then bisection
        lo, hi = hi, min(hi * 2, max_n)
    if paired_t_power(delta, sd, lo, alpha) >= power:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if paired_t_power(delta, sd, mid, alpha) >= power else (mid, hi)
    return hi
