"""Sequential comparisons: the mixture t test against scipy, its decisions, and simulations (no
training: runs drawn from normal distributions) showing that looking after every round keeps
its false-positive rate at most alpha, where Welch's test repeated at the same looks does not,
and that under a real 0.3-point difference it stops sooner than a fixed-size test of the same
power."""

import contextlib
import io
import json
import math
import re

import numpy as np
import pytest
import sequential_sim  # tools/, on the path through conftest
from conftest import ROOT

from netgraph.runs import stats

scipy_stats = pytest.importorskip("scipy.stats")
from scipy import integrate, optimize  # noqa: E402  (after the skip: scipy is a test extra)

ALPHA = 0.05


def scipy_bayes_factor(t, n, g=1.0):
    """The mixture likelihood ratio of the t statistic computed the long way: the noncentral t
    density (noncentrality e sqrt(n)) mixed over the standardised effect e ~ N(0, g), over the
    central t density."""
    nu, width = n - 1, 12 * math.sqrt(g)
    mixed = integrate.quad(
        lambda e: scipy_stats.nct.pdf(t, nu, e * math.sqrt(n)) * scipy_stats.norm.pdf(e, 0, math.sqrt(g)),
        -width,
        width,
        epsabs=0,
        epsrel=1e-10,
        limit=200,
    )[0]
    return mixed / scipy_stats.t.pdf(t, nu)


@pytest.mark.parametrize("t", [0.0, -3.0, 6.0])
@pytest.mark.parametrize("n", [2, 5, 20])
@pytest.mark.parametrize("g", [0.5, 1.0, 2.0])
def test_bayes_factor_against_scipy(t, n, g):
    ours = stats.mixture_bayes_factor(t, n, math.sqrt(g))
    assert ours == pytest.approx(scipy_bayes_factor(t, n, g), rel=1e-6)


@pytest.mark.parametrize("n", [5, 6, 10, 30, 100])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_t_bound_is_where_the_bayes_factor_reaches_one_over_alpha(n, alpha):
    bound = float(stats.mixture_t_bound(n, alpha))
    if math.isinf(bound):  # 5 pairs at alpha 0.01: B_5 is at most c^(nu/2) = 6^2 = 36 < 100
        assert (n, alpha) == (5, 0.01) and stats.mixture_bayes_factor(np.inf, n) == pytest.approx(36)
        return
    assert stats.mixture_bayes_factor(bound, n) == pytest.approx(1 / alpha, rel=1e-9)
    root = optimize.brentq(lambda t: scipy_bayes_factor(t, n) - 1 / alpha, 0.97 * bound, 1.03 * bound)
    assert bound == pytest.approx(root, rel=1e-6)
    # the price of looking at will: wider than the fixed-n t interval's quantile at the same n
    assert bound > scipy_stats.t.ppf(1 - alpha / 2, n - 1)


def test_t_bound_is_infinite_while_no_t_can_reach_one_over_alpha():
    # with 4 pairs nu = 3, c = 5: B_n is at most 5^1.5 = 11.2 < 20 however large t is
    assert np.isinf(stats.mixture_t_bound([1, 2, 3, 4], ALPHA)).all()
    assert stats.mixture_bayes_factor(np.inf, 4) == pytest.approx(5**1.5)
    assert scipy_bayes_factor(1e4, 4) < 1 / ALPHA
    assert np.isfinite(stats.mixture_t_bound(5, ALPHA))


def test_price_against_the_fixed_n_interval_for_every_n():
    n = np.arange(5, 201)
    ratio = stats.mixture_t_bound(n, ALPHA) / scipy_stats.t.ppf(1 - ALPHA / 2, n - 1)
    assert (ratio > 1).all() and ratio[15] == pytest.approx(1.636, abs=1e-3)  # n = 20


def test_anytime_bounds_agree_with_the_t_statistic_and_with_each_other():
    rng = np.random.default_rng(1)
    x = rng.normal(rng.normal(0, 0.2, (400, 1)), 0.2, (400, 25))
    b = stats.anytime_bounds(x, ALPHA)
    row = stats.anytime_bounds(x[7], ALPHA)
    assert all(np.allclose(row[k], b[k][7]) for k in b)
    # 5 values: the first look that can decide, nothing earlier to intersect with
    sem = scipy_stats.sem(x[:, :5], axis=1)
    half = stats.mixture_t_bound(5, ALPHA) * sem
    assert np.allclose(b["low"][:, 4], x[:, :5].mean(axis=1) - half)
    assert np.allclose(b["high"][:, 4], x[:, :5].mean(axis=1) + half)
    # p: the least 1 / B_n of "mean 0" over the first 2, 3, 4, 5 values
    t = np.array([scipy_stats.ttest_1samp(x[:, :n], 0, axis=1).statistic for n in range(2, 6)])
    bf = np.array([stats.mixture_bayes_factor(t[n - 2], n) for n in range(2, 6)])
    assert np.allclose(b["p"][:, 4], np.minimum(1, 1 / bf.max(axis=0)))
    assert np.isinf(b["low"][:, :4]).all() and (b["p"][:, 0] == 1).all()
    # p <= alpha exactly when 0 has left the interval; both only move one way
    assert ((b["p"] <= ALPHA) == ((b["low"] > 0) | (b["high"] < 0))).all()
    assert (np.diff(b["p"]) <= 0).all() and (np.diff(b["low"][:, 4:]) >= 0).all()
    # values near 94 (accuracies) keep their digits
    near = stats.anytime_bounds(x + 94, ALPHA)
    assert np.allclose(near["high"] - near["low"], b["high"] - b["low"], rtol=1e-9, atol=1e-9)


def test_decisions_and_their_reasons():
    zeros = [0.0] * 20
    one = stats.sequential_compare([94.1], [94.3], precision=1.0)
    assert (one.decided, one.reason, one.low, one.high, one.p) == (False, "continue", -math.inf, math.inf, 1)
    found = stats.sequential_compare([94.0, 94.1] * 4, [94.5, 94.7] * 4)
    assert found.decided and found.reason == "difference" and found.p <= ALPHA and found.low > 0
    assert found.difference == pytest.approx(0.55) and (found.n_a, found.n_b) == (8, 8)
    # differences 0.05 +- c: c 0.04 is narrow and inside +-0.1, c 0.1 narrow enough only, c 0.2 wide
    alternate = lambda c: [0.05 + c * s for s in [1, -1] * 10]
    same = stats.sequential_compare(zeros, [0.01 * s for s in [1, -1] * 10], precision=0.1)
    assert same.reason == "no difference within precision" and -0.1 < same.low < same.high < 0.1
    narrow = stats.sequential_compare(zeros, alternate(0.1), precision=0.1)
    assert narrow.reason == "interval narrow enough" and narrow.low < 0 and narrow.high > 0.1
    wide = stats.sequential_compare(zeros, alternate(0.2), precision=0.1, max_runs=30)
    assert wide.reason == "continue" and not wide.decided
    assert stats.sequential_compare(zeros, alternate(0.2), max_runs=20).reason == "max runs reached"
    # unequal sides: the first min(n_a, n_b) are paired
    uneven = stats.sequential_compare(zeros[:6], [0.3, 0.2, 0.4, 0.3, 0.2, 0.4, 5.0, 5.0])
    assert (uneven.n_a, uneven.n_b) == (6, 8) and uneven.difference == pytest.approx(0.3)
    # equal differences (accuracies are quantised to 0.01): t is infinite, B_6 its limit 7^2.5
    constant = stats.sequential_compare(zeros[:6], [0.3] * 6)
    assert constant.reason == "difference" and constant.p == pytest.approx(7**-2.5)
    assert constant.low == constant.high == pytest.approx(0.3)


def test_one_recipe_measured_to_a_precision():
    rng = np.random.default_rng(2)
    runs = list(rng.normal(94, 0.15, 40))
    assert stats.sequential_mean(runs[:1]).reason == "continue"
    assert stats.sequential_mean(runs[:4], precision=0.1).reason == "continue"
    n = next(n for n in range(2, 41) if stats.sequential_mean(runs[:n], precision=0.1).decided)
    done = stats.sequential_mean(runs[:n], precision=0.1)
    assert done.reason == "interval narrow enough" and (done.high - done.low) / 2 <= 0.1
    assert done.low < 94 < done.high and done.n == n
    # wider than the fixed-n t interval of the same runs
    fixed = stats.summary(runs[:n])
    assert done.high - done.low > fixed["ci_high"] - fixed["ci_low"]
    assert stats.sequential_mean(runs[:10], precision=0.01, max_runs=10).reason == "max runs reached"


def looked_after_every_round(a, b, round_size, max_runs):
    """Drive sequential_compare as a sweep would: a look after each round, stop when decided."""
    decisions = []
    for x, y in zip(a, b):
        for n in sequential_sim.looks(round_size, max_runs):
            decision = stats.sequential_compare(list(x[:n]), list(y[:n]), ALPHA, max_runs=max_runs)
            if decision.decided:
                break
        decisions.append(decision)
    return decisions


@pytest.mark.slow
def test_false_positives_at_most_alpha_over_repeated_looks_where_welch_repeated_exceeds_it():
    comparisons, round_size, max_runs = 2400, 2, 20  # 10 looks each, 24,000 comparisons looked at
    rng = np.random.default_rng(30)
    a, b = rng.normal(94, 0.2, (comparisons, max_runs)), rng.normal(94, 0.2, (comparisons, max_runs))
    decisions = looked_after_every_round(a, b, round_size, max_runs)
    called = np.array([d.reason == "difference" for d in decisions])
    assert {d.reason for d in decisions} == {"difference", "max runs reached"}
    margin = 3 * math.sqrt(ALPHA * (1 - ALPHA) / comparisons)  # Monte-Carlo error: 3 sd, 0.013
    assert called.mean() <= ALPHA + margin, called.mean()
    # the tool's vectorised simulation is the same procedure
    vector_called, stop = sequential_sim.sequential_stops(a, b, ALPHA, round_size, max_runs)
    assert (vector_called == called).all() and (stop == [min(d.n_a, d.n_b) for d in decisions]).all()
    # Welch's test repeated at the same looks, by scipy: about 0.2, so the simulation can fail
    welch = np.zeros(comparisons, dtype=bool)
    for n in sequential_sim.looks(round_size, max_runs):
        welch |= scipy_stats.ttest_ind(b[:, :n], a[:, :n], axis=1, equal_var=False).pvalue <= ALPHA
    assert welch.mean() > ALPHA + margin, welch.mean()
    assert (sequential_sim.welch_repeated(a[:300], b[:300], ALPHA, round_size, max_runs) == welch[:300]).all()


@pytest.mark.slow
def test_one_recipes_interval_holds_at_every_look_at_once():
    series, runs = 2000, 60
    x = np.random.default_rng(32).normal(94, 0.15, (series, runs))
    bounds = stats.anytime_bounds(x, ALPHA)
    covered = ((bounds["low"] <= 94) & (94 <= bounds["high"])).all(axis=1)
    assert covered.mean() >= 1 - ALPHA - 3 * math.sqrt(ALPHA * (1 - ALPHA) / series), covered.mean()
    # the fixed-n t interval, looked at after every run, misses the mean at some look far more often
    fixed = np.array(
        [scipy_stats.ttest_1samp(x[:, :n], 94, axis=1).pvalue > ALPHA for n in range(2, runs + 1)]
    )
    assert fixed.all(axis=0).mean() < 0.8, fixed.all(axis=0).mean()
    for row in (0, 1, 2):
        e = stats.sequential_mean(list(x[row, :40]))
        assert (e.low, e.high) == pytest.approx((bounds["low"][row, 39], bounds["high"][row, 39]))


def scipy_fixed_power(n, sd, effect, alpha=ALPHA):
    nu, lam = 2 * n - 2, effect / (sd * math.sqrt(2 / n))
    q = scipy_stats.t.ppf(1 - alpha / 2, nu)
    return scipy_stats.nct.sf(q, nu, lam) + scipy_stats.nct.cdf(-q, nu, lam)


@pytest.mark.parametrize("n", [2, 3, 9, 18, 40])
def test_fixed_test_power_against_scipy(n):
    assert sequential_sim.fixed_power(n, 0.2, 0.3, ALPHA) == pytest.approx(
        scipy_fixed_power(n, 0.2, 0.3), abs=1e-4
    )


@pytest.mark.slow
def test_stops_sooner_than_a_fixed_test_of_the_same_power():
    comparisons, round_size, max_runs, sd = 2000, 2, 30, 0.2
    rng = np.random.default_rng(31)
    a, b = rng.normal(94, sd, (comparisons, max_runs)), rng.normal(94.3, sd, (comparisons, max_runs))
    decisions = looked_after_every_round(a, b, round_size, max_runs)
    found = np.array([d.reason == "difference" for d in decisions])
    runs = np.array([d.n_a for d in decisions])
    assert all(d.low > 0 for d in decisions if d.reason == "difference")  # never the wrong sign here
    power = sequential_sim.power_lower_bound(found.mean(), comparisons)
    fixed_n = next(n for n in range(2, 200) if scipy_fixed_power(n, sd, 0.3) >= power)
    assert sequential_sim.fixed_n_for_power(power, sd, 0.3, ALPHA) == fixed_n
    assert found.mean() > 0.98 and fixed_n >= 16, (found.mean(), fixed_n)
    assert runs.mean() < fixed_n - 3, (runs.mean(), fixed_n)  # about 12.8 against 18


@pytest.mark.slow
def test_the_tool_writes_its_figures(tmp_path):
    out = tmp_path / "sim.json"
    sequential_sim.main(["--comparisons", "300", "--sd", "0.2", "--max-runs", "12", "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert result["numpy"] == np.__version__ and result["parameters"]["comparisons"] == 300
    row = result["by_sd"][0]
    assert 0 <= row["false_positive_rate"] <= 1 and 2 <= row["mean_runs_at_stop"] <= 12
    assert row["welch_repeated_false_positive_rate"] > row["false_positive_rate"]
    assert row["one_recipe"]["fixed_n_for_precision_at_true_sd"] == 18  # t(0.975, 17) 0.2 / sqrt(18) < 0.1


def test_the_docs_example_prints_what_it_says():
    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sequential.md").read_text(), re.S)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/sequential.md", "exec"), {})
    assert printed.getvalue().splitlines() == re.findall(r"^# (\d .*)$", code, re.M)
