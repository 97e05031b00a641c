"""Claim verdicts that can fail: calibration of the permutation and seed-pairing tests (noise, trends, random
walks), every verdict, multiplicity, descriptions and checks kept apart, forced and copied claims (the
statistics alone: test_stats.py; the table: test_table.py)."""
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from minigcnc.experiments import claims as C
from minigcnc.experiments import stats as S
from minigcnc.experiments import table as T

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
    return C.rank_correlation_claim("f", "s", x, y, +1, "x", "y", n_perm=999, seed=i)


def _pearson(x, y, i):
    return C.correlation_claim("f", "s", x, y, +1, "x", "y", n_perm=999, seed=i)


# ---- calibration --------------------------------------------------------------------------------------
def test_calibration_no_effect_rarely_holds_and_a_planted_effect_mostly_holds():
    """200 draws each, alpha 0.05, B = 999 shuffles. Measured (fixed seeds, so deterministic):

    no effect (x, y independent):   sweep Spearman 5 seeds x 5 points  holds 3.0%  (significant 5.5%)
                                    training Pearson 5 seeds x 12 pts  holds 2.5%  (significant 4.0%)
    planted y = 0.8 x_std + N(0,1): sweep Spearman (mean rho ~0.65)    holds 92%
                                    training Pearson (mean r ~0.64)    holds 100%
    (Since issue 28 these claims print no interval, NO_SEED_CI; with the Fisher-z interval and the rule that an
    interval holding 0 is not "holds", the sweep Spearman held in 70% of these draws.)
    """
    null_rank = _rates(_rank, 5, 5, 0.0)
    null_pearson = _rates(_pearson, 5, 12, 0.0)
    eff_rank = _rates(_rank, 5, 5, 0.8)
    eff_pearson = _rates(_pearson, 5, 12, 0.8)
    assert _pearson(*_sweep(np.random.default_rng(0), 5, 12, 0.0), 0).kind == "description"  # never counted
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
    assert split.per_seed[1] > 0 and split.verdict in ("holds", "inconclusive")
    x = list(range(1, 13))
    one_against = C.rank_correlation_claim("f", "s", [x, x], [x, [12, 10, 3, 6, 1, 5, 2, 8, 11, 7, 4, 9]], +1, "x", "y")
    assert one_against.p_value < 0.05 and one_against.per_seed[1] < 0  # significant, but the second seed disagrees:
    assert one_against.verdict == "inconclusive"  # with two seeds "all but one" would have let it hold
    tiny = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 2, [[1, 2, 3]] * 2, +1, "x", "y")
    assert tiny.verdict == "inconclusive" and "underpowered" in tiny.detail and "0.0556" in tiny.detail


def test_autocorrelated_checkpoints_make_the_within_run_correlation_a_description():
    """Independent random walks (5 seeds x 12 checkpoints): the within-seed permutation test gives p < 0.05 in
    measured 30.5% of draws (vs 4% for independent points; "holds" 14.5% before issue 28's interval rule, 1.0%
    with it), so over training it is a description only."""
    rng = np.random.default_rng(3)
    significant = 0
    for i in range(DRAWS):
        x = np.cumsum(rng.standard_normal((5, 12)), axis=1)
        y = np.cumsum(rng.standard_normal((5, 12)), axis=1)
        c = _pearson(x, y, i)
        significant += c.p_value < 0.05
    print(f"random walks, pearson 5x12: p < 0.05 in {significant / DRAWS:.1%}")
    assert significant / DRAWS > 0.15
    assert c.kind == "description" and "not a test" in c.detail
    assert C.rank_correlation_claim("f", "s", x, y, +1, "x", "y", over_training=True).kind == "description"


# ---- the seed-pairing test of tracking ------------------------------------------------------------------
def _decays(rng, linked, k=5, n=20, noise=0.02):
    """Per seed, two decaying curves exp(-t / tau) + noise over n checkpoints, tau log-uniform in [0.05, 0.5]
    (fractions of training); linked: a and b share the seed's tau; else each has its own."""
    t = np.arange(1, n + 1) / n
    tau = lambda: np.exp(rng.uniform(np.log(0.05), np.log(0.5)))  # noqa: E731
    a, b = [], []
    for _ in range(k):
        ta = tau()
        tb = ta if linked else tau()
        a.append(np.exp(-t / ta) + noise * rng.standard_normal(n))
        b.append(np.exp(-t / tb) + noise * rng.standard_normal(n))
    return a, b


def test_tracking_calibration_shared_trends_and_random_walks_rarely_hold_linked_curves_mostly_do():
    """300 draws each, 5 seeds x 20 checkpoints, exact over the 120 pairings. Measured (fixed seeds):

    independent decays (own tau per curve):  holds 3.3%, fails 1.7%   (the within-run test: holds in > 90%)
    independent random walks:                holds 1.7%, fails 2.3%
    linked decays (same tau within a seed):  holds 91.7% (88.0% with the t-interval and issue 28's rule that a
                                             claim whose interval holds 0 is not "holds"; no interval is given now)
    """
    draws = 300
    rates = {}
    for name, make in [("independent", lambda r: _decays(r, False)), ("linked", lambda r: _decays(r, True)),
                       ("walks", lambda r: (list(np.cumsum(r.standard_normal((5, 20)), 1)),
                                            list(np.cumsum(r.standard_normal((5, 20)), 1))))]:
        rng = np.random.default_rng(11)
        verdicts = [C.tracking_claim("f", "s", *make(rng), "a", "b").verdict for _ in range(draws)]
        rates[name] = (verdicts.count("holds") / draws, verdicts.count("fails") / draws)
        print(f"{name:12s} holds {rates[name][0]:6.1%}  fails {rates[name][1]:6.1%}")
    assert rates["independent"][0] <= 0.06 and rates["walks"][0] <= 0.06
    assert rates["independent"][1] <= 0.06 and rates["walks"][1] <= 0.06
    assert rates["linked"][0] >= 0.80
    # the old within-run test on the same independent decays says holds nearly always
    rng = np.random.default_rng(11)
    old = [_pearson(*_decays(rng, False), i).verdict == "holds" for i in range(50)]
    assert np.mean(old) > 0.9


def test_tracking_statistic_and_p_equal_a_brute_force_over_pairings():
    rng = np.random.default_rng(2)
    a, b = _decays(rng, True, k=4, n=8, noise=0.05)
    c = C.tracking_claim("f", "s", a, b, "a", "b")
    R = np.array([[stats.pearsonr(x, y)[0] for y in b] for x in a])
    stat = lambda perm: np.mean(R[np.arange(4), perm]) - (R.sum() - R[np.arange(4), perm].sum()) / 12  # noqa: E731
    t = stat(np.arange(4))
    all_t = np.array([stat(np.array(p)) for p in itertools.permutations(range(4))])
    assert c.value == pytest.approx(t)
    assert c.p_value == pytest.approx(np.mean(np.abs(all_t) >= abs(t) - 1e-12))
    assert c.per_seed == pytest.approx([R[i, i] - np.mean(np.delete(R[i], i)) for i in range(4)])
    assert "exact (24 pairings)" in c.detail and c.kind == "claim"


def test_tracking_with_three_seeds_is_a_description_and_with_one_is_na():
    rng = np.random.default_rng(0)
    a, b = _decays(rng, True, k=3)
    c = C.tracking_claim("f", "s", a, b, "a", "b")
    assert c.kind == "description" and "smallest p is 0.167" in c.detail
    one = C.tracking_claim("f", "s", a[:1], b[:1], "a", "b")
    assert one.kind == "description" and one.verdict == "n/a"
    assert T.verdict_counts([c, one]) == {"holds": 0, "inconclusive": 0, "fails": 0, "n/a": 0}


# ---- intervals --------------------------------------------------------------------------------------------
# ---- every verdict ------------------------------------------------------------------------------------
def test_every_verdict_is_reachable():
    up = [[1, 2, 3]] * 3
    assert C.rank_correlation_claim("f", "s", up, up, +1, "x", "y").verdict == "holds"
    assert C.rank_correlation_claim("f", "s", up, up, -1, "x", "y").verdict == "fails"
    # not significant, whatever the sign (one seed, 3 points: rho = 0.5, and every permutation has |rho| >= 0.5)
    weak = C.rank_correlation_claim("f", "s", [[1, 2, 3]], [[1, 3, 2]], +1, "x", "y")
    assert weak.verdict == "inconclusive" and weak.value == pytest.approx(0.5) and weak.p_value == pytest.approx(1.0)
    assert C.rank_correlation_claim("f", "s", [[1, 2, 3]], [[1, 3, 2]], -1, "x", "y").verdict == "inconclusive"
    # seeds cancel: value 0
    zero = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 2, [[1, 2, 3], [3, 2, 1]], +1, "x", "y")
    assert zero.value == pytest.approx(0.0) and zero.verdict == "inconclusive"
    # all seeds diverged or too short
    na = C.rank_correlation_claim("f", "s", [[1, np.nan, 3], [1, 2]], [[1, 2, 3], [2, 1]], +1, "x", "y")
    assert na.verdict == "n/a" and na.n_seeds == 0 and na.p_value is None
    assert S.VERDICTS == ("holds", "inconclusive", "fails", "n/a")


def test_noise_is_inconclusive_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    verdicts = [_rank(*_sweep(rng, 5, 5, 0.0), i).verdict for i in range(DRAWS)]
    assert verdicts.count("inconclusive") / DRAWS >= 0.9


def test_expected_sign_must_be_plus_or_minus_one():
    for bad in (0, 2, True, "x", 0.5):
        with pytest.raises(ValueError, match="expected_sign must be"):
            C.rank_correlation_claim("f", "s", [[1, 2, 3]], [[1, 2, 3]], bad, "x", "y")
    with pytest.raises(ValueError, match="expected_sign must be"):
        C.correlation_claim("f", "s", [[1, 2, 3]], [[1, 2, 3]], 0, "x", "y")
    with pytest.raises(ValueError, match="argument order"):  # the old order of correlation_claim: names first
        C.correlation_claim("f", "s", [[1, 2, 3]], [[1, 2, 3]], "x", "y", +1)


def test_a_series_constant_up_to_round_off_gets_no_correlation():
    x = [1.0, 1.0 + 2e-16, 1.0 - 2e-16, 1.0]
    c = C.rank_correlation_claim("f", "s", [x], [[1, 2, 3, 4]], +1, "x", "y")
    assert c.verdict == "n/a" and "constant" in c.detail


def test_significant_but_two_seeds_disagree_is_inconclusive_not_holds():
    x = list(range(8))
    xs = [x] * 6
    ys = [x] * 4 + [[1, 0, 3, 2, 5, 4, 7, 6][::-1]] * 2  # four seeds rho = +1, two seeds rho < 0
    c = C.rank_correlation_claim("f", "s", xs, ys, +1, "x", "y")
    assert c.p_value < 0.05 and c.value > 0
    assert sum(v < 0 for v in c.per_seed) == 2
    assert c.verdict == "inconclusive"
    # all but one disagreeing seed is still holds
    c = C.rank_correlation_claim("f", "s", xs[:5], ys[:5], +1, "x", "y")
    assert c.verdict == "holds"


# ---- multiplicity -----------------------------------------------------------------------------------------
def test_judge_gives_benjamini_hochberg_q_values_and_judges_on_q():
    up, x6 = [[1, 2, 3, 4, 5]] * 3, [[1, 2, 3, 4, 5, 6]]
    strong = C.rank_correlation_claim("f", "strong", up, up, +1, "x", "y")  # p = 1/1.7e6
    # one seed of 6 points, one adjacent swap: rho = 0.943, p = 2 * 6 / 720 = 0.0167 alone
    marginal = C.rank_correlation_claim("f", "marginal", x6, [[1, 2, 3, 4, 6, 5]], +1, "x", "y")
    assert marginal.p_value == pytest.approx(12 / 720) and marginal.verdict == "holds"
    nulls = [C.rank_correlation_claim("f", f"null {i}", x6, [[3, 1, 6, 5, 2, 4]], +1, "x", "y") for i in range(8)]
    chk = C.check("f", "c", "s", 1.0, True)
    der = C.derived(C.rank_correlation_claim("f", "d", up, up, +1, "x", "y"), "the two above")
    family = [strong, marginal, *nulls, chk, der]
    C.judge(family)
    ps = [c.p_value for c in [strong, marginal, *nulls]]
    expected_q = stats.false_discovery_control(ps, method="bh")
    assert [c.q_value for c in [strong, marginal, *nulls]] == pytest.approx(expected_q)
    assert marginal.q_value > 0.05 and marginal.verdict == "inconclusive"  # p 0.0167 does not survive 10 tests
    assert strong.verdict == "holds" and chk.q_value is None and der.q_value is None
    assert T.verdict_counts(family) == {"holds": 1, "inconclusive": 9, "fails": 0, "n/a": 0}
    table = T.claim_table(family)
    assert "Derived claims" in table and "the two above" in table and " q " in table.splitlines()[0] + " "
    assert table.splitlines()[-1] == "10 claims: 1 holds, 9 inconclusive, 0 fails, 0 n/a (1 derived, 1 check not counted)"
    assert strong.to_dict()["q_value"] == pytest.approx(expected_q[0])


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
    c = C.correlation_claim("f", "s", xs, ys, +1, "x", "y")
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
    p = C.correlation_claim("f", "s", x, y, +1, "x", "y")
    assert p.per_seed == pytest.approx([stats.pearsonr(a, b)[0] for a, b in zip(x, y)])


def test_a_mean_of_per_seed_coefficients_gets_no_interval_and_says_why():
    rng = np.random.default_rng(2)
    x, y = _sweep(rng, 6, 6, 0.8)
    c = C.rank_correlation_claim("f", "s", x, y, +1, "x", "y")
    assert all(math.isnan(v) for v in c.ci) and S.NO_SEED_CI in c.detail and c.to_dict()["ci"] == [None, None]
    lo, hi = S.t_interval(c.per_seed, fisher=True)  # the function stays, for what it covers (the test above)
    assert lo <= np.mean(c.per_seed) <= hi


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
    k = C.correlation_claim("f", "s", [[1, 2, 3], [1, 2, 3]], [[5, 5, 5], [1, 2, 3]], +1, "x", "y")
    assert k.n_seeds == 1 and "constant" in k.detail


# ---- checks -------------------------------------------------------------------------------------------
def test_inequality_checks_are_kept_apart_and_never_counted():
    ok = C.inequality_check("f", "Markov bound >= error", [[2, 2], [3, 3]], [[1, 1], [1, 2]], "markov", "err",
                            by_construction=True)
    bad = C.inequality_check("f", "GC bound (proxy rho) >= error", [[2, 2], [2, 0]], [[1, 1], [1, 1]],
                                 "bound_gc", "err")
    assert ok.kind == bad.kind == "check" and ok.p_value is None
    assert ok.verdict == "holds" and ok.by_construction and ok.value == 1.0
    assert bad.verdict == "fails" and bad.value == pytest.approx(0.75) and bad.per_seed == [1.0, 0.5]
    assert bad.ci[0] < 0.75 < bad.ci[1] and bad.statistic == "fraction(bound_gc >= err)"
    assert ok.ci[1] == pytest.approx(1.0) and ok.ci[0] == pytest.approx(4 / (4 + 1.959963984540054 ** 2))
    claim = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, +1, "x", "y")
    counts = T.verdict_counts([ok, bad, claim])
    assert counts == {"holds": 1, "inconclusive": 0, "fails": 0, "n/a": 0}
    table = T.claim_table([ok, claim, bad])
    assert table.splitlines()[-1] == "1 claim: 1 holds, 0 inconclusive, 0 fails, 0 n/a (2 checks not counted)"
    assert "(6/8)" not in table or "fraction" in table  # counts only for fractions
    other = C.check("f", "median error small", "median |e - gc| / gc", 0.485, False, n_points=63)
    assert "(31/63)" not in T.claim_table([other]) and "0.485" in T.claim_table([other])
    assert "Checks (not evidence" in table and "by construction" in table
    assert table.index("Checks (not evidence") > table.index("spearman(x, y)")  # claims first
    generic = C.check("f", "runs finished", "finished runs", 4, True)
    assert generic.kind == "check" and generic.verdict == "holds"
    assert C.check("f", "x", "y", float("nan"), None).verdict == "n/a"


# ---- the table and the record -------------------------------------------------------------------------
def test_to_dict_has_exactly_the_keys_and_nan_becomes_none():
    c = C.rank_correlation_claim("f", "s", [[1, np.nan]], [[1, 2]], +1, "x", "y")
    d = c.to_dict()
    assert set(d) == {"figure", "kind", "statement", "statistic", "value", "per_seed", "ci", "p_value", "q_value",
                      "alpha", "n_seeds", "n_points", "verdict", "by_construction", "expected", "derived_from", "detail",
                      "per_unit", "q_by", "verdict_by"}
    assert d["value"] is None and d["ci"] == [None, None] and d["p_value"] is None and d["per_seed"] == [None]
    json.dumps(d, allow_nan=False)
    g = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, +1, "x", "y").to_dict()
    assert g["alpha"] == 0.05 and g["n_points"] == 9 and g["kind"] == "claim" and len(g["ci"]) == 2
    json.dumps(g, allow_nan=False)


# ---- configs as the units ---------------------------------------------------------------------------------
def _config_curves(rng, n_cfg, n_seeds, linked, noise=0.02, jitter=0.1, n=20):
    """a[c][s], b[c][s]: decays exp(-t / tau) over n checkpoints. Each config has a fixed tau for a and (unless
    linked) its own unrelated fixed tau for b, log-uniform in [0.05, 0.5]; each seed jitters tau by
    exp(jitter N(0, 1)) (the same jitter for a and b when linked: b follows a in every run) and adds noise."""
    t = np.arange(1, n + 1) / n
    ta = np.exp(rng.uniform(np.log(0.05), np.log(0.5), n_cfg))
    tb = ta if linked else np.exp(rng.uniform(np.log(0.05), np.log(0.5), n_cfg))
    ea = np.exp(jitter * rng.standard_normal((n_cfg, n_seeds)))
    eb = ea if linked else np.exp(jitter * rng.standard_normal((n_cfg, n_seeds)))
    a = np.exp(-t / (ta[:, None, None] * ea[..., None])) + noise * rng.standard_normal((n_cfg, n_seeds, n))
    b = np.exp(-t / (tb[:, None, None] * eb[..., None])) + noise * rng.standard_normal((n_cfg, n_seeds, n))
    return a, b


def _independent_per_seed_p(a, b, rng, n_perm=999):
    """The rejected design: b's config labels permuted independently in each seed (Monte Carlo, two-sided)."""
    n_cfg, n_seeds = a.shape[:2]
    za = (a - a.mean(-1, keepdims=True)) / a.std(-1, keepdims=True)
    zb = (b - b.mean(-1, keepdims=True)) / b.std(-1, keepdims=True)
    R = np.einsum("csn,dsn->scd", za, zb) / a.shape[-1]
    perms = np.argsort(rng.random((n_perm, n_seeds, n_cfg)), axis=-1)
    t_obs = np.mean([S.pairing_stat(R[s], np.arange(n_cfg)[None])[0] for s in range(n_seeds)])
    t = np.mean([S.pairing_stat(R[s], perms[:, s]) for s in range(n_seeds)], axis=0)
    return (1 + np.sum(np.abs(t) >= abs(t_obs) - 1e-12)) / (1 + n_perm), t_obs


def test_config_tracking_calibration_fixed_config_effects_rarely_hold_a_tracker_mostly_does():
    """600 draws each (300 for the tracker), 5 seeds, exact over the 120 config permutations (so p < 0.05 means
    at most 5 of 120: its nominal rate is 4.2%, one side 2.1%). Measured (fixed seeds):

    unrelated fixed config effects, 5 configs:  holds 3.5%, fails 0.8%, p < 0.05 4.3%
      (300 of the same draws, b's configs permuted independently in each seed: holds 22.0%, so that design is
      refused)
    unrelated, noisy (noise 0.2, jitter 0.3):   holds 2.3%, fails 1.2%, p < 0.05 3.8%
    a tracker (b's tau is a's, per config and per seed), 5 configs:  p < 0.05 99.3%, holds 99.3% (no interval
      with 5 configs, so the verdict is the test's)
    """
    rates = {}
    for name, kw in [("unrelated", dict(linked=False)), ("noisy", dict(linked=False, noise=0.2, jitter=0.3)),
                     ("tracker", dict(linked=True))]:
        rng = np.random.default_rng(1)
        draws = 300 if name == "tracker" else 600
        out = [C.config_tracking_claim("f", "s", *_config_curves(rng, 5, 5, **kw), "a", "b", seed=i)
               for i in range(draws)]
        v = [c.verdict for c in out]
        rates[name] = (v.count("holds") / draws, v.count("fails") / draws, np.mean([c.p_value < 0.05 for c in out]))
        print(f"{name:10s} holds {rates[name][0]:6.1%}  fails {rates[name][1]:6.1%}  p<0.05 {rates[name][2]:6.1%}")
    assert rates["unrelated"][0] <= 0.06 and rates["noisy"][0] <= 0.06
    assert rates["unrelated"][1] <= 0.06 and rates["noisy"][1] <= 0.06
    assert rates["tracker"][0] >= 0.85
    rng = np.random.default_rng(1)
    draws = 300
    old = [_independent_per_seed_p(*_config_curves(rng, 5, 5, False), rng) for _ in range(draws)]
    old_holds = np.mean([p < 0.05 and t > 0 for p, t in old])
    print(f"independent per-seed permutation on the unrelated runs: holds {old_holds:.1%}")
    assert old_holds > 0.10


def test_config_tracking_statistic_p_per_seed_and_per_unit_by_brute_force():
    rng = np.random.default_rng(3)
    a, b = _config_curves(rng, 4, 3, True, noise=0.05)
    c = C.config_tracking_claim("f", "s", a, b, "a", "b")
    R = np.array([[[stats.pearsonr(a[i, s], b[j, s])[0] for j in range(4)] for i in range(4)] for s in range(3)])

    def stat(perm):  # the same permutation of b's configs in every seed
        return np.mean([np.mean(R[s, np.arange(4), perm]) - (R[s].sum() - R[s, np.arange(4), perm].sum()) / 12
                        for s in range(3)])

    t = stat(np.arange(4))
    all_t = np.array([stat(np.array(p)) for p in itertools.permutations(range(4))])
    assert c.value == pytest.approx(t)
    assert c.p_value == pytest.approx(np.mean(np.abs(all_t) >= abs(t) - 1e-12))
    assert c.per_seed == pytest.approx([stat_s for stat_s in
                                        [np.trace(R[s]) / 4 - (R[s].sum() - np.trace(R[s])) / 12 for s in range(3)]])
    assert c.per_unit == pytest.approx([np.mean([R[s, i, i] - np.mean(np.delete(R[s, i], i)) for s in range(3)])
                                        for i in range(4)])
    assert np.mean(c.per_unit) == pytest.approx(c.value)
    assert "exact (24 config permutations" in c.detail and c.kind == "claim"
    assert all(math.isnan(v) for v in c.ci) and "no ci" in c.detail  # 4 configs: no interval
    d = c.to_dict()
    assert len(d["per_unit"]) == 4 and len(d["per_seed"]) == 3
    json.dumps(d, allow_nan=False)
    # three configs: no permutation can reach alpha -> a description
    three = C.config_tracking_claim("f", "s", a[:3], b[:3], "a", "b")
    assert three.kind == "description" and "smallest p" in three.detail
    # Spearman kind: the ranks' Pearson
    sp = C.config_tracking_claim("f", "s", a, b, "a", "b", kind="spearman")
    Rs = np.array([[[stats.spearmanr(a[i, s], b[j, s])[0] for j in range(4)] for i in range(4)] for s in range(3)])
    assert sp.per_seed[0] == pytest.approx(np.trace(Rs[0]) / 4 - (Rs[0].sum() - np.trace(Rs[0])) / 12)


def test_config_tracking_uses_the_checkpoints_every_curve_of_a_seed_has_and_zeroes_constant_curves():
    rng = np.random.default_rng(4)
    a, b = _config_curves(rng, 4, 2, True)
    a, b = [[list(r) for r in cfg] for cfg in a], [[list(r) for r in cfg] for cfg in b]
    a[2][1] = a[2][1][:15]  # config 2 stopped early in seed 1
    c = C.config_tracking_claim("f", "s", a, b, "a", "b")
    full = C.config_tracking_claim("f", "s", [[r[:20] if s == 0 else r[:15] for s, r in enumerate(cfg)] for cfg in a],
                                   [[r[:20] if s == 0 else r[:15] for s, r in enumerate(cfg)] for cfg in b], "a", "b")
    assert c.value == pytest.approx(full.value) and c.p_value == pytest.approx(full.p_value)
    assert "35 checkpoint(s) dropped" in c.detail  # 7 other curves of seed 1 lose 5 each
    b[1][0] = [1.0] * 20
    k = C.config_tracking_claim("f", "s", a, b, "a", "b")
    assert "4 correlation(s) set to 0" in k.detail and math.isfinite(k.value)
    with pytest.raises(ValueError, match="same seeds"):
        C.config_tracking_claim("f", "s", [a[0], a[1][:1]], b[:2], "a", "b")


def test_config_tracking_jackknife_interval_covers_from_eight_configs():
    """The delete-one jackknife over configs, 300 intervals each; the truth E[T] from 2,000 draws. Measured:

    configs x seeds   tracker (noise 0.02)   tracker (noise 0.2, jitter 0.3)   unrelated
    4 x 3 / 4 x 5     89.3% / 85.3%          96.7% / 98.0%                     96.7% / 95.7%
    5 x 3 / 5 x 5     88.7% / 89.3%          95.7% / 97.7%                     99.0% / 99.0%
    8 x 3 / 8 x 5     95.3% / 93.7%          97.3% / 95.7%                     97.0% / 96.7%
    so an interval is given from 8 configs (TRACKING_CI_MIN_CONFIGS) and none below. This test reruns 8 x 3 and
    8 x 5 (tracker, noise 0.02; measured 95.3% / 94.7%) and 5 x 5 (90.7% here: too close to 90% to give one)."""
    def draw(rng, n_cfg, n_seeds):
        return _config_curves(rng, n_cfg, n_seeds, True)

    rng = np.random.default_rng(1)
    truth = np.mean([C.config_tracking_claim("f", "s", *draw(rng, 8, 3), "a", "b", n_perm=1, exact_max=0).value
                     for _ in range(2000)])
    for n_cfg, n_seeds in [(8, 3), (8, 5), (5, 5)]:
        cover = []
        for i in range(300):
            a, b = draw(rng, n_cfg, n_seeds)
            ci = S.jackknife_interval(lambda keep: float(S.pairing_stat(
                np.mean([np.corrcoef(a[keep][:, s], b[keep][:, s])[:len(keep), len(keep):] for s in range(n_seeds)], 0),
                np.arange(len(keep))[None])[0]), n_cfg)
            cover.append(ci[0] <= truth <= ci[1])
        print(f"{n_cfg} configs x {n_seeds} seeds: coverage {np.mean(cover):.1%}")
        if n_cfg >= S.TRACKING_CI_MIN_CONFIGS:
            assert np.mean(cover) >= 0.90
    c = C.config_tracking_claim("f", "s", *draw(rng, 8, 3), "a", "b")
    assert np.isfinite(c.ci[0]) and c.ci[0] <= c.value <= c.ci[1]


def _config_effects(rng, n_cfg, n_seeds, ratio, related=False):
    """x[c][s] = e_c + ratio N(0, 1), y[c][s] = f_c + ratio N(0, 1): fixed config effects e, f ~ N(0, 1),
    unrelated (f independent of e) or related (f = e), seed noise at noise/effect ``ratio``."""
    e = rng.standard_normal(n_cfg)
    f = e if related else rng.standard_normal(n_cfg)
    return (e[:, None] + ratio * rng.standard_normal((n_cfg, n_seeds)),
            f[:, None] + ratio * rng.standard_normal((n_cfg, n_seeds)))


def test_config_rank_calibration_fixed_unrelated_config_effects_rarely_hold():
    """300 draws each, 5 seeds, alpha 0.05, B = 999 (Monte Carlo over 11 configs; exact over 6). Measured:

    configs  noise/effect   configs as units: holds   within-seed test on the same runs: holds
    11       0.25           2.3%                      16.0%
    11       1              2.0%                      7.7%
    6        0.25           3.7%                      -
    related config effects (f = e), 11 configs, noise/effect 1: holds 89% (100 draws)
    (the issue, with other draws, measured 19% / 7.5% for the within-seed test)
    """
    draws = 300
    for n_cfg, ratio in [(11, 0.25), (11, 1.0), (6, 0.25)]:
        rng = np.random.default_rng(5)
        new = old = 0
        for i in range(draws):
            x, y = _config_effects(rng, n_cfg, 5, ratio)
            new += C.config_rank_claim("f", "s", x, y, +1, "x", "y", n_perm=999, seed=i).verdict == "holds"
            if n_cfg == 11:
                old += _rank(x.T, y.T, i).verdict == "holds"
        print(f"{n_cfg} configs, noise/effect {ratio}: configs as units holds {new / draws:.1%}, "
              f"within-seed holds {old / draws:.1%}")
        assert new / draws <= 0.06
        if n_cfg == 11 and ratio == 0.25:
            assert old / draws > 0.10  # the pseudo-replication it replaces
    rng = np.random.default_rng(6)
    power = np.mean([C.config_rank_claim("f", "s", *_config_effects(rng, 11, 5, 1.0, related=True), +1, "x", "y",
                                         n_perm=999, seed=i).verdict == "holds" for i in range(100)])
    print(f"related effects, 11 configs, noise/effect 1: holds {power:.1%}")
    assert power >= 0.8


def test_config_rank_claim_is_the_spearman_of_config_means_with_an_exact_p():
    xs = [[1.0, 1.2, np.nan], [2.0, 2.1, 1.9], [3.0, 2.8, 3.1], [4.0, 4.2, 3.9], [5.0, 5.5, 4.8]]
    ys = [[0.1, 0.3, 0.2], [0.5, 0.4, 0.6], [0.2, 0.1, 0.3], [0.9, 0.8, 1.0], [1.1, 1.0, 1.2]]
    c = C.config_rank_claim("f", "s", xs, ys, +1, "x", "y")
    mx = [np.nanmean(r) for r in xs]
    my = [np.mean(r) for r in ys]
    assert c.value == pytest.approx(stats.spearmanr(mx, my)[0])
    perms = [stats.spearmanr(mx, np.array(my)[list(p)])[0] for p in itertools.permutations(range(5))]
    assert c.p_value == pytest.approx(np.mean(np.abs(perms) >= abs(c.value) - 1e-9))
    assert "exact (120 permutations of the configs)" in c.detail and "1 non-finite" in c.detail
    assert c.per_seed[1] == pytest.approx(stats.spearmanr([r[1] for r in xs], [r[1] for r in ys])[0])
    assert c.per_unit == pytest.approx(my) and all(math.isnan(v) for v in c.ci) and "no ci" in c.detail
    assert c.n_points == 5 and c.n_seeds == 3
    mc = C.config_rank_claim("f", "s", xs, ys, +1, "x", "y", exact_max=0, n_perm=20000, seed=1)
    assert "Monte Carlo" in mc.detail and mc.p_value == pytest.approx(c.p_value, abs=0.01)
    perfect = C.config_rank_claim("f", "s", [[i, i] for i in range(6)], [[i, i] for i in range(6)], -1, "x", "y")
    assert perfect.verdict == "fails" and perfect.p_value == pytest.approx(2 / 720)
    na = C.config_rank_claim("f", "s", [[1.0], [np.nan]], [[1.0], [2.0]], +1, "x", "y")
    assert na.verdict == "n/a" and "dropped" in na.detail
    json.dumps(c.to_dict(), allow_nan=False)


def test_judge_never_holds_a_claim_whose_interval_holds_zero():
    c = C.Claim("f", "s", "st", 0.5, 3, "positive", "?", [0.4, 0.5, 0.6], ci=(-0.1, 0.9), p_value=0.001,
                alpha=0.05, expected_sign=1)
    C.judge([c])
    assert c.verdict == "inconclusive" and c.verdict_by == "inconclusive" and c.q_by == pytest.approx(0.001)


def test_judge_gives_benjamini_yekutieli_q_values_beside_bh():
    ps = [0.001, 0.01, 0.02, 0.03, 0.2]
    cl = [C.Claim("f", f"c{i}", "st", 0.5, 3, "positive", "?", [0.5, 0.5, 0.5], p_value=p, alpha=0.05,
                  expected_sign=1) for i, p in enumerate(ps)]
    C.judge(cl)
    assert [c.q_by for c in cl] == pytest.approx(stats.false_discovery_control(ps, method="by"))
    assert [c.verdict for c in cl] == ["holds"] * 4 + ["inconclusive"]
    assert [c.verdict_by for c in cl] == ["holds"] + ["inconclusive"] * 4
    table = T.claim_table(cl)
    assert "Under Benjamini-Yekutieli" in table and "3 of 5 verdicts change" in table
    assert "  - c1: holds -> inconclusive (q_BY" in table and "  - c0:" not in table


# ---- forced copies ------------------------------------------------------------------------------------------
def test_claims_the_counted_claims_force_are_derived_computed_from_the_data():
    """A sweep where value -> GC and value -> NC are +1 in every seed: GC -> NC is forced to +1 and GCol -> NC
    to equal GC -> GCol (the issue's case); an unforced claim stays counted."""
    rng = np.random.default_rng(0)
    value = [[1.0, 2.0, 3.0, 4.0, 5.0]] * 4
    gc = [np.arange(5) * 2.0 + s for s in range(4)]
    nc = [np.arange(5) ** 2 + 0.1 * s for s in range(4)]
    gcol = [rng.standard_normal(5) for _ in range(4)]
    other = [rng.standard_normal(5) for _ in range(4)]
    R = C.rank_correlation_claim
    claims = [R("f", "value -> GC", value, gc, +1, "v", "gc"), R("f", "value -> NC", value, nc, +1, "v", "nc"),
              R("f", "GC -> NC", gc, nc, +1, "gc", "nc"), R("f", "GC -> GCol", gc, gcol, +1, "gc", "gcol"),
              R("f", "GCol -> NC", gcol, nc, +1, "gcol", "nc"), R("f", "GCol -> other", gcol, other, +1, "gcol", "o")]
    C.mark_forced(claims)
    assert [c.kind for c in claims] == ["claim", "claim", "derived", "claim", "derived", "claim"]
    assert "forced to +-1" in claims[2].derived_from and "value -> GC" in claims[2].derived_from
    assert "forced to equal +-'GC -> GCol'" in claims[4].derived_from
    assert claims[4].per_seed == pytest.approx(claims[3].per_seed)  # the forced copy has its numbers
    # the premises out of order: the copy is still found (the links are built first)
    again = [R("f", "GC -> GCol", gc, gcol, +1, "gc", "gcol"), R("f", "GCol -> NC", gcol, nc, +1, "gcol", "nc"),
             R("f", "value -> GC", value, gc, +1, "v", "gc"), R("f", "value -> NC", value, nc, +1, "v", "nc")]
    assert [c.kind for c in C.mark_forced(again)] == ["claim", "derived", "claim", "claim"]
    # value -> GC +-1 alone forces GC -> NC to equal value -> NC ...
    nc_noisy = [rng.standard_normal(5) for _ in range(4)]
    one = [R("f", "value -> GC", value, gc, +1, "v", "gc"), R("f", "value -> NC", value, nc_noisy, +1, "v", "nc"),
           R("f", "GC -> NC", gc, nc_noisy, +1, "gc", "nc")]
    assert [c.kind for c in C.mark_forced(one)] == ["claim", "claim", "derived"]
    # ... but with no +-1 premise nothing is forced: GC -> NC counts
    gc_noisy = [g + 3 * rng.standard_normal(5) for g in gc]
    free = [R("f", "value -> GC", value, gc_noisy, +1, "v", "gc"), R("f", "value -> NC", value, nc_noisy, +1, "v", "nc"),
            R("f", "GC -> NC", gc_noisy, nc_noisy, +1, "gc", "nc")]
    assert not any(C._perfect(c) for c in free[:2])
    assert [c.kind for c in C.mark_forced(free)] == ["claim"] * 3


def test_forced_claims_among_a_sweeps_configs_as_units_claims_are_found_on_the_value_means():
    """The issue's case with the swept values as the units (driver.sweep_claims): value -> GC and value -> NC
    are +-1 over the value means (though not in every seed), so GC -> NC is forced to +-1 and GCol -> NC to
    equal GC -> GCol; the seeds' own numbers play no part."""
    rng = np.random.default_rng(3)
    value = np.tile(np.arange(5.0), (4, 1)).T  # (values, seeds)
    noise = 3.0 * rng.standard_normal((5, 4))
    gc = 2.0 * value + noise - noise.mean(axis=1, keepdims=True)  # noisy seeds, monotone means
    noise = 3.0 * rng.standard_normal((5, 4))
    nc = value ** 2 + noise - noise.mean(axis=1, keepdims=True)
    gcol = rng.standard_normal((5, 4))
    R = C.config_rank_claim
    claims = [R("f", "value -> GC", value, gc, +1, "v", "gc"), R("f", "value -> NC", value, nc, +1, "v", "nc"),
              R("f", "GC -> NC", gc, nc, +1, "gc", "nc"), R("f", "GC -> GCol", gc, gcol, +1, "gc", "gcol"),
              R("f", "GCol -> NC", gcol, nc, +1, "gcol", "nc")]
    assert claims[0].value == pytest.approx(1.0) and claims[1].value == pytest.approx(1.0)
    assert not all(abs(v) == pytest.approx(1.0) for v in claims[2].per_seed)  # the seeds alone force nothing
    C.mark_forced(claims)
    assert [c.kind for c in claims] == ["claim", "claim", "derived", "claim", "derived"]
    assert "forced to +-1: its two variables rank alike over the config means" in claims[2].derived_from
    assert "forced to equal +-'GC -> GCol' over the config means" in claims[4].derived_from
    assert abs(claims[4].value) == pytest.approx(abs(claims[3].value))
    assert claims[4].p_value == pytest.approx(claims[3].p_value)


def test_a_claim_with_another_claims_numbers_through_a_shared_variable_is_a_copy():
    """Across configs: when GCol ranks the configs as the GC bound does, GCol -> error is the bound's claim."""
    rng = np.random.default_rng(1)
    err = rng.random((8, 3))
    bound = err + 0.3 * rng.standard_normal((8, 3))
    gcol = 2 * bound + 1  # rank-identical to the bound in every seed and in the config means
    gc = rng.random((8, 3))
    claims = [C.config_rank_claim("f", "bound -> err", bound, err, +1, "b", "e"),
              C.config_rank_claim("f", "GCol -> err", gcol, err, +1, "g", "e"),
              C.config_rank_claim("f", "GC -> err", gc, err, +1, "c", "e")]
    C.mark_forced(claims)
    assert [c.kind for c in claims] == ["claim", "derived", "claim"]
    assert "a copy: the value and p of 'bound -> err'" in claims[1].derived_from
    # the same numbers by coincidence, with no shared variable: not a copy
    x, y = [[1, 2, 3, 4]] * 3, [[1, 3, 2, 4]] * 3
    twins = [C.rank_correlation_claim("f", "a", x, y, +1, "x", "y"),
             C.rank_correlation_claim("f", "b", [[10, 20, 30, 40]] * 3, [[5, 7, 6, 9]] * 3, +1, "u", "w")]
    assert twins[0].per_seed == twins[1].per_seed and [c.kind for c in C.mark_forced(twins)] == ["claim", "claim"]
    # minus the numbers: the other variable ranks oppositely in every seed
    neg = [C.rank_correlation_claim("f", "a", x, y, +1, "x", "y"),
           C.rank_correlation_claim("f", "b", x, [[-v for v in r] for r in y], -1, "x", "-y")]
    C.mark_forced(neg)
    assert neg[1].kind == "derived" and "minus the per-seed numbers" in neg[1].derived_from


def test_seed_pairing_intervals_t_over_contrasts_undercovers_the_jackknife_covers_from_eight_seeds():
    """Linked decays (the tracking test's model), the truth E[T] from 2,000 draws, 300 intervals each. Measured:

    seeds   t-interval over the per-seed contrasts   delete-one jackknife over seeds
    5       67.7%                                    91.7%
    8       69.0%                                    92.7%
    The same jackknife over configs covers 85-91% at 4-5 configs (config_tracking_claim's test), so both give it
    from 8 units (TRACKING_CI_MIN_CONFIGS) and none below (NO_PAIRING_CI)."""
    rng = np.random.default_rng(5)

    def R_of(k):
        a, b = _decays(rng, True, k=k)
        za = np.array([(v - v.mean()) / v.std() for v in a])
        zb = np.array([(v - v.mean()) / v.std() for v in b])
        return za @ zb.T / za.shape[1]

    stat = lambda R: float(S.pairing_stat(R, np.arange(len(R))[None])[0])  # noqa: E731
    truth = np.mean([stat(R_of(8)) for _ in range(2000)])
    for k, t_min, jk_min in [(5, None, None), (8, None, 0.90)]:
        t_cov = jk_cov = 0
        for _ in range(300):
            R = R_of(k)
            contrasts = [R[i, i] - np.mean(np.delete(R[i], i)) for i in range(k)]
            lo, hi = S.t_interval(contrasts, limits=(-2.0, 2.0))
            t_cov += lo <= truth <= hi
            lo, hi = S.jackknife_interval(lambda keep: stat(R[np.ix_(keep, keep)]), k)
            jk_cov += lo <= truth <= hi
        print(f"{k} seeds: t-interval {t_cov / 300:.1%}, jackknife {jk_cov / 300:.1%}")
        assert t_cov / 300 < 0.85
        if jk_min:
            assert jk_cov / 300 >= jk_min
    a, b = _decays(rng, True, k=5)
    c = C.tracking_claim("f", "s", a, b, "a", "b")
    assert all(math.isnan(v) for v in c.ci) and S.NO_PAIRING_CI in c.detail
    a, b = _decays(rng, True, k=8)
    c8 = C.tracking_claim("f", "s", a, b, "a", "b", n_perm=999)
    assert c8.ci[0] <= c8.value <= c8.ci[1] and "jackknife over seeds" in c8.detail


def test_a_seed_that_stopped_early_keeps_the_pairing_test_exchangeable():
    """Independent decays, 5 seeds x 20 checkpoints, one seed stopped at 12 (its curves shorter). 400 draws:
    p < 0.05 in measured 4.2% (only the checkpoints every seed has; before: each pair on its own common length,
    10% in the issue's draws)."""
    rng = np.random.default_rng(8)
    hits = 0
    draws = 400
    for i in range(draws):
        a, b = _decays(rng, False)
        a[2], b[2] = a[2][:12], b[2][:12]
        c = C.tracking_claim("f", "s", a, b, "a", "b")
        hits += c.p_value < 0.05
    print(f"one short seed: p < 0.05 in {hits / draws:.1%}")
    assert hits / draws <= 0.06
    assert "64 checkpoint value(s) beyond the 12 checkpoints every seed has left out" in c.detail
    full = C.tracking_claim("f", "s", [v[:12] for v in a], [v[:12] for v in b], "a", "b")
    assert full.value == pytest.approx(c.value) and full.p_value == pytest.approx(c.p_value)


def test_a_seed_that_stopped_before_its_third_checkpoint_is_dropped_not_allowed_to_cut_the_others():
    rng = np.random.default_rng(10)
    a, b = _decays(rng, True, k=6)
    a[4], b[4] = a[4][:2], b[4][:2]
    c = C.tracking_claim("f", "s", a, b, "a", "b")
    assert c.n_seeds == 5 and math.isnan(c.per_seed[4]) and "1 seed(s) dropped with < 3 finite points" in c.detail
    kept = [i for i in range(6) if i != 4]
    alone = C.tracking_claim("f", "s", [a[i] for i in kept], [b[i] for i in kept], "a", "b")
    assert c.value == pytest.approx(alone.value) and c.p_value == pytest.approx(alone.p_value)


# ---- accuracy against a tolerance ---------------------------------------------------------------------------
def _errors(rng, median, k=5, n=12, spread=0.5, seed_spread=0.3):
    """Per seed, n positive errors: median * exp(seed effect N(0, seed_spread)) * exp(N(0, spread)) per checkpoint,
    an AR-like shared drift within the seed; the median of the seeds' medians is ``median``."""
    out = []
    for _ in range(k):
        u = seed_spread * rng.standard_normal()
        drift = np.cumsum(0.1 * rng.standard_normal(n))
        out.append(median * np.exp(u + drift - np.median(drift) + spread * rng.standard_normal(n)))
    return out


def test_tolerance_claim_calibration_at_the_tolerance_and_power_below_it():
    """1,000 draws each, 5 seeds x 12 checkpoints, tolerance 10%. Measured (fixed seeds):

    seeds' median error at the tolerance (10%):  holds 2.7%  fails 3.9%   (the bound: 1/32 = 3.1% each)
    at 5%:                                         holds 88.2%
    at 2%:                                         holds 100%
    at 20% (too large):                            fails 89.0%
    """
    rates = {}
    for med in (0.10, 0.05, 0.02, 0.20):
        rng = np.random.default_rng(3)
        v = [C.tolerance_claim("f", "s", _errors(rng, med), 0.10, "err").verdict for _ in range(1000)]
        rates[med] = (v.count("holds") / 1000, v.count("fails") / 1000)
        print(f"median error {med:.0%}: holds {rates[med][0]:.1%}  fails {rates[med][1]:.1%}")
    assert rates[0.10][0] <= 0.05 and rates[0.10][1] <= 0.05
    assert rates[0.05][0] >= 0.85 and rates[0.02][0] >= 0.95 and rates[0.20][1] >= 0.85
    four = C.tolerance_claim("f", "s", _errors(np.random.default_rng(0), 0.01, k=4), 0.10, "err")
    assert four.kind == "description" and "smallest p is 0.0625" in four.detail
    c = C.tolerance_claim("f", "s", [[0.01, 0.02, np.nan], [0.03]] + [[0.01]] * 3, 0.10, "err")
    assert c.p_value == pytest.approx(1 / 32) and c.verdict == "holds" and "1 non-finite" in c.detail
    assert c.per_seed[0] == pytest.approx(0.10 - 0.015)


def test_config_tracking_drops_a_seed_whose_curve_stopped_before_three_checkpoints():
    rng = np.random.default_rng(9)
    a, b = _config_curves(rng, 4, 3, True)
    a, b = [[list(r) for r in cfg] for cfg in a], [[list(r) for r in cfg] for cfg in b]
    a[1][2] = a[1][2][:2]
    c = C.config_tracking_claim("f", "s", a, b, "a", "b")
    assert c.n_seeds == 2 and math.isnan(c.per_seed[2]) and "1 seed(s) dropped" in c.detail
    kept = C.config_tracking_claim("f", "s", [r[:2] for r in a], [r[:2] for r in b], "a", "b")
    assert c.value == pytest.approx(kept.value) and c.p_value == pytest.approx(kept.p_value)
