"""The statistics to judge a trick: mean, spread, confidence intervals, Welch's t-test,
and a sequential comparison that may be looked at after every round of runs.

One run's accuracy varies by about 0.15 points on CIFAR-10, more than most
tricks gain, so a comparison needs several runs and a test. Student's t
distribution is computed here (through the regularised incomplete beta
function) so netgraph needs no scipy; the tests check it against scipy.

Welch's test and its interval hold for a number of runs fixed in advance. Adding
runs until p < 0.05 and stopping then is wrong: with a look after every 2 runs up
to 30 a side, repeated Welch's tests call 22% of equal pairs of recipes different,
not 5% (tests/test_stats_sequential.py). ``sequential_compare`` and
``sequential_mean`` give what may be looked at as often as one likes: whatever the
number of looks and whenever one stops, the chance that a comparison of two equal
recipes is ever called a difference is at most alpha, and the interval holds the
true difference (or mean) at every look at once with probability at least 1 - alpha
(an anytime-valid confidence sequence). The price is width: at the same number of
runs the interval is wider than the fixed-n t interval (1.6 times at 10 to 50
runs, 3 times at 5), fewer than 5 runs a side can decide nothing, and with no
difference it runs to the maximum. It pays back by stopping early when the answer
is clear (docs/sequential.md, bench/results/sequential_simulation.json).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction
    (Lentz's method), accurate to about 1e-12 for the t-test's arguments."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = (
        math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
        / a
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the distribution function."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1.0 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def summary(values: Sequence[float], confidence: float = 0.95) -> Dict[str, float]:
    """n, mean, standard deviation (n - 1), and the t confidence interval of the mean."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else math.nan
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> Optional[Dict[str, float]]:
    """Welch's two-sided t-test of equal means without assuming equal variances:
    t, the Welch-Satterthwaite degrees of freedom and the p-value; None for fewer
    than two values on a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(b) - statistics.fmean(a)
    if va + vb == 0:
        return {
            "t": math.copysign(math.inf, diff) if diff else 0.0,
            "df": math.nan,
            "p": 0.0 if diff else 1.0,
        }
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"t": t, "df": df, "p": min(1.0, 2 * t_sf(abs(t), df))}


# Sequential tests. The comparison of two recipes is made on the differences d_i = b_i - a_i
# of their i-th runs: for independent normal runs these are independent N(delta, sa^2 + sb^2)
# whatever the two variances (the Behrens-Fisher problem that has no exact invariant test
# disappears) and whatever correlation a shared seed gives a_i and b_i. The test of
# "mean 0" on d, for unknown variance, is the mixture likelihood ratio of the t statistic
# (Lai 1976, "On confidence sequences"; the normal-mixture mSPRT of Johari et al. 2017, with
# the variance integrated out rather than plugged in): over the standardised effect
# e = mean / sd drawn from N(0, g), with sd integrated against its scale-invariant prior 1/sd,
#
#     B_n = (1 + n g)^(-1/2) * ((1 + t^2/nu) / (1 + t^2 / ((1 + n g) nu)))^((nu + 1) / 2),
#
# t the one-sample t statistic of the first n values, nu = n - 1. This is the Bayes factor of
# Rouder et al. (2009) for a fixed g, and the likelihood ratio of the t statistic's noncentral
# distributions mixed over e (tests/test_stats_sequential.py integrates scipy's nct for it).
# Because the mixture is over a scale-invariant model with the right-Haar prior on sd, B_n is
# a nonnegative martingale of mean 1 under "mean 0" (Perez-Ortiz, Lardy, de Heide and Grunwald
# 2024, "E-statistics, group invariance and anytime valid testing"), so by Ville's inequality
# P(B_n >= 1/alpha for some n) <= alpha: a test that may be looked at after every run. The
# bound is over the whole sequence at once, so it holds whatever rule chose the stop, one that
# reads the runs' spread (a precision target) or the clock included.


def mixture_bayes_factor(t, n, prior_scale: float = 1.0):
    """B_n above for a t statistic ``t`` of ``n`` values (numbers or numpy arrays; n >= 2);
    ``prior_scale`` is the standard deviation of the mixture over the standardised effect."""
    t, n = np.asarray(t, dtype=float), np.asarray(n, dtype=float)
    nu, c = n - 1, 1 + n * prior_scale**2
    x = t * t / nu
    with np.errstate(invalid="ignore"):  # t = +-inf: the limit c^(nu/2), taken below
        log_bf = 0.5 * (nu + 1) * (np.log1p(x) - np.log1p(x / c)) - 0.5 * np.log(c)
    return np.exp(np.where(np.isinf(x), 0.5 * nu * np.log(c), log_bf))


def mixture_t_bound(n, alpha: float = 0.05, prior_scale: float = 1.0):
    """The |t| at which B_n reaches 1/alpha, in closed form: with x = t^2/nu, c = 1 + n g and
    K = (sqrt(c)/alpha)^(2/(nu + 1)), B_n >= 1/alpha is x >= (K - 1)/(1 - K/c). Infinite where
    K >= c, when even |t| = inf gives B_n = c^(nu/2) < 1/alpha (n <= 4 pairs at alpha 0.05, g 1)."""
    n = np.asarray(n, dtype=float)
    nu, c = n - 1, 1 + n * prior_scale**2
    k = np.exp((0.5 * np.log(c) - math.log(alpha)) * 2 / np.maximum(nu + 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where((k < c) & (nu > 0), (k - 1) / (1 - k / c), np.inf)
        return np.where(nu > 0, np.sqrt(nu * x), np.inf)  # n = 1: 0 * inf


def anytime_bounds(values, alpha: float = 0.05, prior_scale: float = 1.0) -> Dict[str, np.ndarray]:
    """After each of the runs in ``values`` (along the last axis; leading axes are independent
    series, as a simulation has them): the mean, the anytime-valid interval (low, high) for the
    true mean, and the anytime-valid p-value of "true mean 0". The interval is the set of means
    m whose test B_n(m) < 1/alpha, mean +- mixture_t_bound * s / sqrt(n), intersected with all
    earlier ones; p is min over earlier n of 1/B_n(0). Both stay valid because the guarantee
    covers every n at once, and they make what a reader sees monotone: an interval that only
    narrows, a p that only falls. p <= alpha exactly when 0 has left the interval."""
    x = np.asarray(values, dtype=float)
    n = np.arange(1, x.shape[-1] + 1)
    shift = x[..., :1]  # sums of 94 +- 0.2 lose digits in the variance: sum x - x_1 instead
    mean = np.cumsum(x - shift, axis=-1) / n
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 1: no variance, 0/0
        var = np.maximum(np.cumsum((x - shift) ** 2, axis=-1) - n * mean**2, 0) / (n - 1)
        sem = np.sqrt(var / n)
        mean = mean + shift
        bound = mixture_t_bound(n, alpha, prior_scale)
        half = np.where(np.isinf(bound) | (n < 2), np.inf, bound * sem)
        t = np.where(mean == 0, 0.0, mean / sem)  # sem 0: t = +-inf, B_n its limit
        p = np.where(n < 2, 1.0, np.minimum(1.0, 1 / mixture_bayes_factor(t, np.maximum(n, 2), prior_scale)))
    return {
        "mean": mean,
        "low": np.maximum.accumulate(mean - half, axis=-1),
        "high": np.minimum.accumulate(mean + half, axis=-1),
        "p": np.minimum.accumulate(p, axis=-1),
    }


@dataclass(frozen=True)
class Decision:
    """Where a sequential comparison of recipe a against recipe b stands: ``difference`` is
    mean(b) - mean(a) over the paired runs, (low, high) its anytime-valid interval, p the
    anytime-valid p-value of "no difference", n_a and n_b the runs each side has (the first
    min(n_a, n_b) of each are paired and used). ``reason`` is one of REASONS."""

    decided: bool
    reason: str
    difference: float
    low: float
    high: float
    p: float
    n_a: int
    n_b: int


@dataclass(frozen=True)
class Estimate:
    """Where a sequential estimate of one recipe's mean stands: (low, high) its anytime-valid
    interval after n runs; ``reason`` is 'interval narrow enough', 'max runs reached' or
    'continue'."""

    decided: bool
    reason: str
    mean: float
    low: float
    high: float
    n: int


REASONS = ("difference", "no difference within precision", "interval narrow enough", "max runs reached")


def _reason(low, high, p, n, alpha, precision, max_runs) -> str:
    """The first reason to stop that holds, in the order of REASONS, or 'continue'."""
    if p is not None and p <= alpha:
        return "difference"
    if precision is not None and p is not None and -precision < low and high < precision:
        return "no difference within precision"
    if precision is not None and (high - low) / 2 <= precision:
        return "interval narrow enough"
    if max_runs is not None and n >= max_runs:
        return "max runs reached"
    return "continue"


def sequential_compare(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = 0.05,
    precision: Optional[float] = None,
    max_runs: Optional[int] = None,
    prior_scale: float = 1.0,
) -> Decision:
    """Compare recipe b with recipe a after any number of rounds of runs, each list in the order
    its runs were made (run i of a is paired with run i of b). Stops with 'difference' when the
    anytime-valid p <= alpha (the interval then excludes 0); with ``precision`` (points) set,
    with 'no difference within precision' when the interval lies inside (-precision, precision),
    or 'interval narrow enough' when its half-width is <= precision; with 'max runs reached'
    when both sides have ``max_runs``. Calling it after every round, and stopping at the first
    decided answer, calls equal recipes different with probability at most alpha, and the
    interval misses the true difference at any look with probability at most alpha.
    ``prior_scale``: the standardised differences (difference / sd of b_i - a_i) the test is
    tuned to find; 1, the default, suits a 0.3-point effect of runs with sd 0.15 to 0.2 each."""
    n = min(len(a), len(b))
    if n < 2:
        low, high, difference, p = -math.inf, math.inf, math.nan, 1.0
    else:
        d = np.asarray(b[:n], dtype=float) - np.asarray(a[:n], dtype=float)
        bounds = anytime_bounds(d, alpha, prior_scale)
        low, high = float(bounds["low"][-1]), float(bounds["high"][-1])
        difference, p = float(bounds["mean"][-1]), float(bounds["p"][-1])
    reason = _reason(low, high, p, n, alpha, precision, max_runs)
    return Decision(reason != "continue", reason, difference, low, high, p, len(a), len(b))


def sequential_mean(
    values: Sequence[float],
    alpha: float = 0.05,
    precision: Optional[float] = None,
    max_runs: Optional[int] = None,
    prior_scale: float = 1.0,
) -> Estimate:
    """One recipe's mean after any number of rounds of runs (in their order), with the
    anytime-valid interval that holds at every look at once with probability >= 1 - alpha.
    Decided with 'interval narrow enough' once its half-width is <= ``precision`` points, or
    'max runs reached' at ``max_runs`` runs: a sweep's row measured to +-precision."""
    n = len(values)
    if n < 2:
        low, high, mean = -math.inf, math.inf, (float(values[0]) if n else math.nan)
    else:
        bounds = anytime_bounds(values, alpha, prior_scale)
        low, high, mean = float(bounds["low"][-1]), float(bounds["high"][-1]), float(bounds["mean"][-1])
    reason = _reason(low, high, None, n, alpha, precision, max_runs)
    return Estimate(reason != "continue", reason, mean, low, high, n)
