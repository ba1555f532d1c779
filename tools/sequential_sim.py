"""What the sequential comparison (netgraph.runs.stats.sequential_compare) buys and costs, simulated.

    python tools/sequential_sim.py [--comparisons 4000] [--sd 0.15 0.2] [--effect 0.3] [--round 2]
        [--max-runs 30] [--alpha 0.05] [--precision 0.1] [--seed 0]
        [--json-out bench/results/sequential_simulation.json]

No training: each comparison draws runs of two recipes from normal distributions (mean 94,
sd --sd, as CIFAR-10 runs spread) and looks after every round of --round runs a side, up
to --max-runs, stopping at the first look whose anytime-valid p <= --alpha. Under no
difference it reports how often a difference is called (false positives, at most alpha)
beside Welch's test repeated at the same looks (which is not valid); under a real --effect
it reports the power, the mean number of runs a side at the stop, and the runs a side a
fixed-size two-sample t-test (Student's, the most powerful fixed-n test for equal spreads)
needs for the same power (the lower 95% bound of the simulated one), computed by
integrating the noncentral t (no scipy; the tests check it against scipy). Also the price:
how much wider the anytime-valid interval is than the fixed-n t interval at the same n, and
how many runs one recipe takes to be measured to +-precision points (a sweep's row) against
the fixed n whose t interval is as narrow.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netgraph.runs import stats  # noqa: E402


def looks(round_size: int, max_runs: int) -> np.ndarray:
    """Runs a side at each look: round_size, 2 round_size, ..., max_runs."""
    return np.unique(np.minimum(np.arange(round_size, max_runs + round_size, round_size), max_runs))


def sequential_stops(a, b, alpha, round_size, max_runs, prior_scale=1.0):
    """For each row of a and b (comparisons x runs, in run order): whether a difference was
    called by max_runs, and the runs a side when it stopped. Vectorised: the same bounds as
    stats.sequential_compare called after every round (tests check they agree)."""
    at = looks(round_size, max_runs)
    p = stats.anytime_bounds(b[:, :max_runs] - a[:, :max_runs], alpha, prior_scale)["p"][:, at - 1]
    called = p <= alpha
    return called.any(axis=1), np.where(called.any(axis=1), at[called.argmax(axis=1)], max_runs)


def welch_repeated(a, b, alpha, round_size, max_runs):
    """Whether Welch's test repeated at every look calls a difference at some look (not valid)."""
    called = np.zeros(len(a), dtype=bool)
    t_sf = np.vectorize(stats.t_sf)
    for n in looks(round_size, max_runs):
        va, vb = a[:, :n].var(axis=1, ddof=1) / n, b[:, :n].var(axis=1, ddof=1) / n
        t = (b[:, :n].mean(axis=1) - a[:, :n].mean(axis=1)) / np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
        called |= 2 * t_sf(np.abs(t), df) <= alpha
    return called


def fixed_power(n: int, sd: float, effect: float, alpha: float) -> float:
    """Power of the two-sided two-sample Student t-test with n runs a side: with T = (Z + lam)
    / sqrt(W/nu), W chi-square(nu), P(|T| > q) = E_W[Phi(lam - q s) + Phi(-lam - q s)], s =
    sqrt(W/nu), integrated on a grid over W (20,001 points to 60 sd past the mean: scipy's nct
    to 1e-5)."""
    nu, lam = 2 * n - 2, effect / (sd * math.sqrt(2 / n))
    q = stats.t_quantile(1 - alpha / 2, nu)
    w = np.linspace(0, nu + 60 * math.sqrt(2 * nu) + 60, 20001)
    with np.errstate(divide="ignore", invalid="ignore"):  # w = 0: the density is 1/2 for nu 2, else 0
        log_density = (nu / 2 - 1) * np.log(w) - w / 2 - nu / 2 * math.log(2) - math.lgamma(nu / 2)
    log_density[0] = math.log(0.5) if nu == 2 else -math.inf
    phi = np.vectorize(lambda z: 0.5 * math.erfc(-z / math.sqrt(2)))
    s = np.sqrt(w / nu)
    tails = phi(lam - q * s) + phi(-lam - q * s)
    return float(np.trapezoid(tails * np.exp(log_density), w))


def fixed_n_for_power(power: float, sd: float, effect: float, alpha: float, limit: int = 1000) -> int:
    """The fewest runs a side at which the fixed-n t-test has at least ``power``."""
    return next(n for n in range(2, limit) if fixed_power(n, sd, effect, alpha) >= power)


def power_lower_bound(power: float, trials: int, z: float = 1.96) -> float:
    """Wilson's lower 95% bound for a power seen in ``trials``: the fixed test is asked to match
    the least the sequential one may have (a power of 1.0 in 4,000 is 0.999, not 1)."""
    centre, spread = (
        power + z * z / (2 * trials),
        z * math.sqrt(power * (1 - power) / trials + z * z / (4 * trials**2)),
    )
    return (centre - spread) / (1 + z * z / trials)


def interval_price(alpha: float, prior_scale: float, ns=(5, 10, 20, 30, 50, 100)) -> dict:
    """Anytime-valid half-width / fixed-n t half-width at n values (same mean and sd)."""
    return {
        str(n): float(stats.mixture_t_bound(n, alpha, prior_scale) / stats.t_quantile(1 - alpha / 2, n - 1))
        for n in ns
    }


def precision_study(sd: float, args, rng) -> dict:
    """One recipe measured to +-precision (a sweep's row): runs until the anytime-valid
    interval's half-width is <= precision, beside the fixed n whose t interval is that narrow
    at the true sd; and how often the interval held the true mean at every look at once."""
    x = rng.normal(94, sd, (args.comparisons, args.precision_max_runs))
    bounds = stats.anytime_bounds(x, args.alpha, args.prior_scale)
    narrow = (bounds["high"] - bounds["low"]) / 2 <= args.precision
    stop = np.where(narrow.any(axis=1), narrow.argmax(axis=1) + 1, args.precision_max_runs)
    fixed = lambda n: stats.t_quantile(1 - args.alpha / 2, n - 1) * sd / math.sqrt(n) <= args.precision
    return {
        "precision": args.precision,
        "mean_runs_to_precision": float(stop.mean()),
        "fixed_n_for_precision_at_true_sd": next(n for n in range(2, 10000) if fixed(n)),
        "covered_at_every_look": float(((bounds["low"] <= 94) & (94 <= bounds["high"])).all(axis=1).mean()),
        "looks": args.precision_max_runs,
    }


def simulate(sd: float, args, rng) -> dict:
    """The figures for one spread of runs: null and effect, sequential and fixed."""
    shape = (args.comparisons, args.max_runs)
    a, b = rng.normal(94, sd, shape), rng.normal(94, sd, shape)
    called, null_stop = sequential_stops(a, b, args.alpha, args.round, args.max_runs, args.prior_scale)
    naive = welch_repeated(a, b, args.alpha, args.round, args.max_runs)
    b_better = rng.normal(94 + args.effect, sd, shape)
    found, stop = sequential_stops(a, b_better, args.alpha, args.round, args.max_runs, args.prior_scale)
    power = float(found.mean())
    se = lambda p: math.sqrt(p * (1 - p) / args.comparisons)
    return {
        "sd": sd,
        "false_positive_rate": float(called.mean()),
        "false_positive_rate_se": se(float(called.mean())),
        "welch_repeated_false_positive_rate": float(naive.mean()),
        "power": power,
        "power_se": se(power),
        "mean_runs_at_stop": float(stop.mean()),
        "median_runs_at_stop": float(np.median(stop)),
        "mean_runs_at_stop_under_no_difference": float(null_stop.mean()),  # max runs but for false calls
        "power_lower_95": power_lower_bound(power, args.comparisons),
        "fixed_n_same_power": fixed_n_for_power(
            power_lower_bound(power, args.comparisons), sd, args.effect, args.alpha
        ),
        "fixed_n_power_0.8": fixed_n_for_power(0.8, sd, args.effect, args.alpha),
        "fixed_n_power_0.9": fixed_n_for_power(0.9, sd, args.effect, args.alpha),
        "one_recipe": precision_study(sd, args, rng),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=4000)
    parser.add_argument("--sd", type=float, nargs="+", default=[0.15, 0.2])
    parser.add_argument("--effect", type=float, default=0.3)
    parser.add_argument("--round", type=int, default=2)
    parser.add_argument("--max-runs", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--prior-scale", type=float, default=1.0)
    parser.add_argument("--precision", type=float, default=0.1, help="points, for one recipe's mean")
    parser.add_argument("--precision-max-runs", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    result = {
        "command": " ".join(
            ["python", "tools/sequential_sim.py"]
            + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "parameters": {k: v for k, v in vars(args).items() if k != "json_out"},
        "runs_are": "runs a side (each recipe), paired in run order",
        "interval_width_vs_fixed_t": interval_price(args.alpha, args.prior_scale),
        "by_sd": [simulate(sd, args, rng) for sd in args.sd],
    }
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
