"""Claim verdicts that can fail: calibration of the permutation test, every verdict, checks kept apart, the table."""
import itertools
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from minigcnc.experiments import claims as C

DRAWS = 200


def _sweep(rng, n_seeds, n_points, beta, noise=1.0):
    """x = 0..n-1 in every seed; y = beta * standardized x + noise * N(0, 1), independent per seed."""
    x = np.tile(np.arange(n_points, dtype=float), (n_seeds, 1))
    xs = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return x, beta * xs + noise * rng.standard_normal((n_seeds, n_points))


def _rates(fn, n_seeds, n_points, beta, seed=1):
    """Fraction of DRAWS synthetic data sets on which ``fn`` says holds / is significant; mean of value."""
    rng = np.random.default_rng(seed)
    holds = significant = 0
    values = []
    for i in range(DRAWS):
        x, y = _sweep(rng, n_seeds, n_points, beta)
        c = fn(x, y, i)
        holds += c.verdict == "holds"
        significant += c.p_value < 0.05
        values.append(c.value)
    return holds / DRAWS, significant / DRAWS, float(np.mean(values))


def _rank(x, y, i):
    return C.rank_correlation_claim("f", "s", x, y, +1, "x", "y", n_perm=999, seed=i, n_boot=999)


def _pearson(x, y, i):
    return C.correlation_claim("f", "s", x, y, "x", "y", n_perm=999, seed=i, n_boot=999)


# ---- calibration --------------------------------------------------------------------------------------
def test_calibration_no_effect_rarely_holds_and_a_planted_effect_mostly_holds():
    """200 draws each, alpha 0.05, B = 999 shuffles. Measured (fixed seeds, so deterministic):

    no effect (x, y independent):   sweep Spearman 5 seeds x 5 points  holds 3.0%  (significant 5.5%)
                                    training Pearson 5 seeds x 12 pts  holds 2.5%  (significant 4.0%)
    planted y = 0.8 x_std + N(0,1): sweep Spearman (mean rho ~0.65)    holds 92%
                                    training Pearson (mean r ~0.64)    holds 100%
    """
    null_rank = _rates(_rank, 5, 5, 0.0)
    null_pearson = _rates(_pearson, 5, 12, 0.0)
    eff_rank = _rates(_rank, 5, 5, 0.8)
    eff_pearson = _rates(_pearson, 5, 12, 0.8)
    for name, (h, s, v) in [("null spearman 5x5", null_rank), ("null pearson 5x12", null_pearson),
                            ("effect spearman 5x5", eff_rank), ("effect pearson 5x12", eff_pearson)]:
        print(f"{name:22s} holds {h:6.1%}  significant {s:6.1%}  mean value {v:+.3f}")
    # under no effect: "holds" at most 10% as the issue asks, and near its nominal rate (alpha / 2 = 2.5%, one
    # sign: at most 6%, about three standard errors over 200 draws); p < 0.05 near 5% (at most 9%)
    assert null_rank[0] <= 0.06 and null_pearson[0] <= 0.06
    assert null_rank[1] <= 0.09 and null_pearson[1] <= 0.09
    # the planted effect is the moderate one asked for, and it is found in most draws
    assert 0.55 < eff_rank[2] < 0.75 and 0.55 < eff_pearson[2] < 0.75
    assert eff_rank[0] > 0.80 and eff_pearson[0] > 0.90


def test_two_seeds_must_both_agree_and_an_underpowered_claim_says_so():
    both = C.rank_correlation_claim("f", "s", [[1, 2, 3, 4]] * 2, [[1, 2, 3, 4], [1, 2, 3, 4]], +1, "x", "y")
    assert both.verdict == "holds" and both.p_value == pytest.approx(2 / 576)
    split = C.rank_correlation_claim("f", "s", [[1, 2, 3, 4, 5]] * 2, [[1, 2, 3, 4, 5], [2, 1, 3, 4, 5]], +1, "x", "y")
    assert split.per_seed[1] > 0 and split.verdict in ("holds", "weak")
    x = list(range(1, 13))
    one_against = C.rank_correlation_claim("f", "s", [x, x], [x, [12, 10, 3, 6, 1, 5, 2, 8, 11, 7, 4, 9]], +1, "x", "y")
    assert one_against.p_value < 0.05 and one_against.per_seed[1] < 0  # significant, but the second seed disagrees:
    assert one_against.verdict == "weak"  # with two seeds "all but one" would have let it hold
    tiny = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 2, [[1, 2, 3]] * 2, +1, "x", "y")
    assert tiny.verdict == "weak" and "underpowered" in tiny.detail and "0.0556" in tiny.detail


def test_autocorrelated_checkpoints_make_the_training_test_anti_conservative():
    """Independent random walks (5 seeds x 12 checkpoints): measured 14.5% false "holds" (vs 2.5% for
    independent points) -- why the module docstring calls the over-training claims co-movement, not evidence."""
    rng = np.random.default_rng(3)
    holds = 0
    for i in range(DRAWS):
        x = np.cumsum(rng.standard_normal((5, 12)), axis=1)
        y = np.cumsum(rng.standard_normal((5, 12)), axis=1)
        holds += _pearson(x, y, i).verdict == "holds"
    print(f"random walks, pearson 5x12: holds {holds / DRAWS:.1%}")
    assert holds / DRAWS > 0.08
    assert "anti-conservative" in _pearson(x, y, 0).detail


# ---- every verdict ------------------------------------------------------------------------------------
def test_every_verdict_is_reachable():
    up = [[1, 2, 3]] * 3
    assert C.rank_correlation_claim("f", "s", up, up, +1, "x", "y").verdict == "holds"
    assert C.rank_correlation_claim("f", "s", up, up, -1, "x", "y").verdict == "fails"
    # right sign, not significant (one seed, 3 points: rho = 0.5, and every permutation has |rho| >= 0.5)
    weak = C.rank_correlation_claim("f", "s", [[1, 2, 3]], [[1, 3, 2]], +1, "x", "y")
    assert weak.verdict == "weak" and weak.value == pytest.approx(0.5) and weak.p_value == pytest.approx(1.0)
    # wrong sign, not significant
    assert C.rank_correlation_claim("f", "s", [[1, 2, 3]], [[1, 3, 2]], -1, "x", "y").verdict == "not supported"
    # seeds cancel: value 0
    zero = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 2, [[1, 2, 3], [3, 2, 1]], +1, "x", "y")
    assert zero.value == pytest.approx(0.0) and zero.verdict == "not supported"
    # all seeds diverged or too short
    na = C.rank_correlation_claim("f", "s", [[1, np.nan, 3], [1, 2]], [[1, 2, 3], [2, 1]], +1, "x", "y")
    assert na.verdict == "n/a" and na.n_seeds == 0 and na.p_value is None


def test_significant_but_two_seeds_disagree_is_weak_not_holds():
    x = list(range(8))
    xs = [x] * 6
    ys = [x] * 4 + [[1, 0, 3, 2, 5, 4, 7, 6][::-1]] * 2  # four seeds rho = +1, two seeds rho < 0
    c = C.rank_correlation_claim("f", "s", xs, ys, +1, "x", "y")
    assert c.p_value < 0.05 and c.value > 0
    assert sum(v < 0 for v in c.per_seed) == 2
    assert c.verdict == "weak"
    # all but one disagreeing seed is still holds
    c = C.rank_correlation_claim("f", "s", xs[:5], ys[:5], +1, "x", "y")
    assert c.verdict == "holds"


# ---- the permutation test -----------------------------------------------------------------------------
def _brute_force_p(xs, ys, coef):
    """Two-sided p over every combination of within-seed permutations, from scipy's coefficient."""
    t = np.mean([coef(x, y)[0] for x, y in zip(xs, ys)])
    stats_ = [np.mean([coef(x, np.asarray(y)[list(p)])[0] for x, y, p in zip(xs, ys, perms)])
              for perms in itertools.product(*[itertools.permutations(range(len(x))) for x in xs])]
    return np.mean(np.abs(stats_) >= abs(t) - 1e-9)


def test_permutation_p_equals_exact_enumeration_on_tiny_cases():
    x, y = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]
    c = C.rank_correlation_claim("f", "s", [x], [y], +1, "x", "y")
    assert "exact (24 permutations)" in c.detail
    assert c.p_value == pytest.approx(_brute_force_p([x], [y], stats.spearmanr))
    xs, ys = [[1, 2, 3], [0.5, 0.1, 0.9]], [[2, 1, 3], [1.0, 0.0, 3.0]]
    c = C.correlation_claim("f", "s", xs, ys, "x", "y")
    assert c.p_value == pytest.approx(_brute_force_p(xs, ys, stats.pearsonr))
    # Monte Carlo (exact enumeration switched off) agrees with the exact p, and is reproducible
    mc = C.rank_correlation_claim("f", "s", [x], [y], +1, "x", "y", exact_max=0, n_perm=20000, seed=5)
    assert "Monte Carlo" in mc.detail
    assert mc.p_value == pytest.approx(_brute_force_p([x], [y], stats.spearmanr), abs=0.015)
    again = C.rank_correlation_claim("f", "s", [x], [y], +1, "x", "y", exact_max=0, n_perm=20000, seed=5)
    assert again.p_value == mc.p_value
    # p = (1 + hits) / (1 + B) is never 0
    perfect = C.rank_correlation_claim("f", "s", [list(range(10))] * 3, [list(range(10))] * 3, +1, "x", "y",
                                       n_perm=999)
    assert perfect.p_value == pytest.approx(1 / 1000)


def test_per_seed_values_are_scipys_and_value_is_their_mean():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 7)), rng.standard_normal((4, 7))
    c = C.rank_correlation_claim("f", "s", x, y, +1, "x", "y")
    assert c.per_seed == pytest.approx([stats.spearmanr(a, b)[0] for a, b in zip(x, y)])
    assert c.value == pytest.approx(np.mean(c.per_seed))
    p = C.correlation_claim("f", "s", x, y, "x", "y")
    assert p.per_seed == pytest.approx([stats.pearsonr(a, b)[0] for a, b in zip(x, y)])


def test_bootstrap_ci_contains_the_value_and_needs_three_seeds():
    rng = np.random.default_rng(2)
    x, y = _sweep(rng, 6, 6, 0.8)
    c = C.rank_correlation_claim("f", "s", x, y, +1, "x", "y")
    lo, hi = c.ci
    assert lo <= c.value <= hi and lo < hi
    two = C.rank_correlation_claim("f", "s", x[:2], y[:2], +1, "x", "y")
    assert all(math.isnan(v) for v in two.ci) and "fewer than 3 seeds" in two.detail
    assert two.to_dict()["ci"] == [None, None]


def test_non_finite_points_are_dropped_pairwise_and_short_seeds_from_the_test():
    xs = [[1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5], [1, np.inf, np.nan, 4, np.nan]]
    ys = [[1, 2, 3, np.nan, 5], [2, 1, 4, 3, 5], [1, 2, 3, 4, 5]]
    c = C.rank_correlation_claim("f", "s", xs, ys, +1, "x", "y")
    assert c.n_seeds == 2 and c.n_points == 3 + 5
    assert c.per_seed[0] == pytest.approx(1.0) and math.isnan(c.per_seed[2])
    assert c.value == pytest.approx((1.0 + stats.spearmanr(xs[1], ys[1])[0]) / 2)
    assert "1 seed(s) dropped with < 3 finite points" in c.detail and "5 non-finite point(s)" in c.detail
    d = c.to_dict()
    assert d["per_seed"][2] is None
    json.dumps(d, allow_nan=False)
    # a constant seed is dropped too, not a crash
    k = C.correlation_claim("f", "s", [[1, 2, 3], [1, 2, 3]], [[5, 5, 5], [1, 2, 3]], "x", "y")
    assert k.n_seeds == 1 and "constant" in k.detail


# ---- checks -------------------------------------------------------------------------------------------
def test_inequality_checks_are_kept_apart_and_never_counted():
    ok = C.inequality_check("f", "Markov bound >= error", [[2, 2], [3, 3]], [[1, 1], [1, 2]], "markov", "err",
                            by_construction=True)
    bad = C.fraction_above_claim("f", "GC bound (proxy rho) >= error", [[2, 2], [2, 0]], [[1, 1], [1, 1]],
                                 "bound_gc", "err")
    assert ok.kind == bad.kind == "check" and ok.p_value is None
    assert ok.verdict == "holds" and ok.by_construction and ok.value == 1.0
    assert bad.verdict == "fails" and bad.value == pytest.approx(0.75) and bad.per_seed == [1.0, 0.5]
    assert bad.ci[0] < 0.75 < bad.ci[1] and bad.statistic == "fraction(bound_gc >= err)"
    assert ok.ci[1] == pytest.approx(1.0) and ok.ci[0] == pytest.approx(4 / (4 + 1.959963984540054 ** 2))
    claim = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, +1, "x", "y")
    counts = C.verdict_counts([ok, bad, claim])
    assert counts == {"holds": 1, "weak": 0, "not supported": 0, "fails": 0, "n/a": 0}
    table = C.claim_table([ok, claim, bad])
    assert table.splitlines()[-1].startswith("1 claim: 1 holds, 0 weak, 0 not supported, 0 fails, 0 n/a")
    assert "Checks (not evidence" in table and "by construction" in table
    assert table.index("Checks (not evidence") > table.index("spearman(x, y)")  # claims first
    generic = C.check("f", "runs finished", "finished runs", 4, True)
    assert generic.kind == "check" and generic.verdict == "holds"
    assert C.check("f", "x", "y", float("nan"), None).verdict == "n/a"


# ---- the table and the record -------------------------------------------------------------------------
def test_claim_table_never_cuts_a_long_statement_and_shows_every_seed():
    words = [f"w{i:03d}" for i in range(40)]
    statement = " ".join(words)[:199] + "Z"
    assert len(statement) == 200
    rng = np.random.default_rng(4)
    x, y = _sweep(rng, 7, 5, 0.8)
    c = C.rank_correlation_claim("f", statement, x, y, +1, "x", "y")
    chk = C.inequality_check("f", statement, [[1]], [[0]], "b", "v", by_construction=True)
    table = C.claim_table([c, chk])
    first_col = [line[:46].strip() for line in table.splitlines()]
    for block in ("claim", "check"):
        start = next(i for i, line in enumerate(table.splitlines()) if line.startswith(block))
        text = " ".join(s for s in first_col[start + 2:start + 2 + 5] if s)
        assert text.startswith(statement)
    assert len(re.findall(r"[+-]\d\.\d\d", table.split("Checks")[0])) >= 7 + 3  # 7 seeds, value, ci
    for v in c.per_seed:
        assert f"{v:+.2f}" in table
    for header in ("statistic", "value", "95% CI", "p", "per seed", "verdict"):
        assert header in table.splitlines()[0]


def test_to_dict_has_exactly_the_keys_and_nan_becomes_none():
    c = C.rank_correlation_claim("f", "s", [[1, np.nan]], [[1, 2]], +1, "x", "y")
    d = c.to_dict()
    assert set(d) == {"figure", "kind", "statement", "statistic", "value", "per_seed", "ci", "p_value", "alpha",
                      "n_seeds", "n_points", "verdict", "by_construction", "expected", "detail"}
    assert d["value"] is None and d["ci"] == [None, None] and d["p_value"] is None and d["per_seed"] == [None]
    json.dumps(d, allow_nan=False)
    g = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, +1, "x", "y").to_dict()
    assert g["alpha"] == 0.05 and g["n_points"] == 9 and g["kind"] == "claim" and len(g["ci"]) == 2
    json.dumps(g, allow_nan=False)


def test_old_positional_claim_still_builds_and_prints():
    """figure2 builds a Claim positionally with its own verdict words; the table still prints it."""
    c = C.Claim("f", "median relative error small", "median |e - gc| / gc", 0.05, 2, "small", "mixed",
                [0.04, 0.06], "holds below 10%")
    d = c.to_dict()
    assert d["kind"] == "claim" and d["ci"] == [None, None] and d["p_value"] is None
    table = C.claim_table([c])
    assert table.splitlines()[-1].startswith("1 claim:") and "1 mixed" in table.splitlines()[-1]
