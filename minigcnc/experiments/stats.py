"""The statistics the claims are judged with: coefficients, permutation tests, intervals, the verdict rule and
the false-discovery-rate q-values (``claims`` builds the records from them, ``table`` prints them).

Tests
-----
- ``permutation_test``: two-sided p of a mean over seeds of within-seed correlations, y shuffled within each
  seed; exact over all within-seed permutations when there are at most ``exact_max``, else Monte Carlo with
  ``p = (1 + hits) / (1 + B)``; also the smallest p the data allow.
- ``pairing_test``: the seed- (or config-) pairing test of a matrix ``R[i, j] = corr(a_i, b_j)``: matched
  minus mismatched mean, exact over all k! pairings or Monte Carlo (``pairing_stat`` is its statistic).
- ``rank_permutation_test``: two-sided p of one correlation over permutations of one variable's entries (the
  configs-as-units test).

Intervals: only where their coverage is measured in the tests. A mean of per-seed coefficients gets none
(``NO_SEED_CI``: with 3-5 seeds of few points the coefficients pile at +-1, where a t-interval over seeds covers
24-88%); the seed- and config-pairing contrasts get a delete-one jackknife interval (``jackknife_interval``) from
``TRACKING_CI_MIN_CONFIGS`` units (93-95% there), none below (``NO_PAIRING_CI``). ``t_interval`` stays for what it
covers (measured in the tests); ``wilson_interval`` is the interval of a proportion (the checks').

Verdicts (``verdict_of``; ``alpha`` default 0.05; "expected sign" = the sign the paper predicts, +1 or -1). A
claim is judged on its q-value (Benjamini-Hochberg over the counted claims of its figure, ``q_values``; alone,
q = p). BH controls the false discovery rate when the tests are independent or positively dependent (PRDS); a
figure's claims share runs, and their dependence is not known to be positive, so the Benjamini-Yekutieli
q-values (valid under any dependence) are given beside them:

- ``holds``: q < alpha AND ``value`` has the expected sign AND the per-seed coefficient has the expected
  sign in every seed or all but one AND the claim's interval, when it has one, lies wholly on the expected
  side of 0;
- ``fails``: q < alpha with the wrong sign (significant evidence against the statement) AND the interval,
  when there is one, lies wholly on the other side;
- ``inconclusive``: anything else with a test: not significant (whatever the sign of ``value``), or
  significant while the seeds disagree. Pure noise lands here about 95% of the time;
- ``n/a``: no seed with at least 3 finite points (e.g. every run diverged).

Non-finite pairs (diverged runs) are dropped pairwise (``finite_pairs``); a series whose spread is below
``CONSTANT_RTOL`` of its magnitude is constant (``is_constant``) and gets no correlation.
"""
import itertools
import math

import numpy as onp


class _Stats:
    """``scipy.stats``, imported on first use: a slow import, which ``--help`` and the tables do without."""

    def __getattr__(self, name):
        from scipy import stats as module

        return getattr(module, name)


scipy_stats = _Stats()

VERDICTS = ("holds", "inconclusive", "fails", "n/a")
_Z95 = 1.959963984540054
CONSTANT_RTOL = 1e-9  # a series whose spread is below this fraction of its magnitude is constant
# why a mean of per-seed coefficients gets no interval (measured in tests/test_stats.py)
NO_SEED_CI = ("no ci: with 3-5 seeds of few points the coefficients pile at +-1, where a t-interval over seeds "
              "(Fisher z or raw) covers 24-88% in the tests, so none is given")
NO_PAIRING_CI = ("no ci: a t-interval over the per-seed contrasts covers 68-69% (they share their mismatched "
                 "entries); the jackknife is given from 8 seeds (it covers 85-92% with 4-5 units in the tests)")


# ---- coefficients ------------------------------------------------------------------------------------
def finite_pairs(x, y):
    """(x, y) flattened to their pairs where both are finite; a ValueError when their lengths differ."""
    x, y = onp.asarray(x, dtype=float).ravel(), onp.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y of one seed differ in length: {len(x)} != {len(y)}")
    ok = onp.isfinite(x) & onp.isfinite(y)
    return x[ok], y[ok]


def is_constant(a, rtol=CONSTANT_RTOL):
    """True when the finite series ``a`` is empty or its spread is at most ``rtol`` times its magnitude
    (so a series equal up to round-off counts as constant and gets no correlation)."""
    a = onp.asarray(a, dtype=float)
    if len(a) == 0:
        return True
    return bool(onp.ptp(a) <= rtol * onp.max(onp.abs(a)))


def spearman(x, y):
    """Spearman rank correlation of x and y (finite pairs only); nan when constant or fewer than 2 pairs."""
    x, y = finite_pairs(x, y)
    if len(x) < 2 or is_constant(x) or is_constant(y):
        return float("nan")
    return float(scipy_stats.spearmanr(x, y)[0])


def check_sign(expected_sign):
    """``expected_sign`` as +1 or -1, or a ValueError that names it (0, True or a name are refused)."""
    if isinstance(expected_sign, bool) or expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1 (the sign the paper predicts); got {expected_sign!r} "
                         "(argument order: figure, statement, xs, ys, expected_sign, x_name, y_name)")
    return int(expected_sign)

def finite_or_none(v):
    """A JSON number: None for None / nan / inf."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def standardized(a):
    """``(a - mean) / std`` (population std): the z-scores whose mean product is Pearson's coefficient."""
    return (a - a.mean()) / a.std()


def _seed_coefs(zx, zy, idx):
    """Correlations of zx with zy permuted by each row of idx (standardized inputs, population std)."""
    return zy[idx] @ zx / len(zx)


def permutation_test(zxs, zys, n_perm=4999, seed=0, exact_max=20000):
    """Two-sided p-value of T = mean over seeds of corr(zx_s, zy_s), y permuted within each seed.

    zxs, zys: per seed, standardized (ranks of) x and y. Exact over all within-seed permutations when their
    number is at most ``exact_max``; else Monte-Carlo with ``n_perm`` shuffles, ``p = (1 + hits) / (1 + B)``.
    Returns (p, method, p_min) with method ``"exact (K permutations)"`` or ``"Monte Carlo (B shuffles)"`` and
    ``p_min`` the smallest p-value these seeds and points allow (that of the most extreme arrangement): with
    few points and seeds it can exceed alpha, and then no claim can hold however strong the effect.
    """
    k = len(zxs)
    t_obs = abs(sum(float(zx @ zy) / len(zx) for zx, zy in zip(zxs, zys)) / k)
    tol = 1e-9
    total = 1
    for zx in zxs:
        total *= math.factorial(len(zx))
        if total > exact_max:
            break
    if total <= exact_max:
        sums = onp.zeros(1)
        for zx, zy in zip(zxs, zys):
            idx = onp.array(list(itertools.permutations(range(len(zx)))))
            sums = onp.add.outer(sums, _seed_coefs(zx, zy, idx)).ravel()
        extreme = onp.abs(sums / k)
        hits = int(onp.sum(extreme >= t_obs - tol))
        p_min = int(onp.sum(extreme >= extreme.max() - tol)) / len(sums)
        return hits / len(sums), f"exact ({len(sums)} permutations)", p_min
    rng = onp.random.default_rng(seed)
    acc = onp.zeros(n_perm)
    for zx, zy in zip(zxs, zys):
        idx = rng.permuted(onp.tile(onp.arange(len(zx)), (n_perm, 1)), axis=1)
        acc += _seed_coefs(zx, zy, idx)
    hits = int(onp.sum(onp.abs(acc / k) >= t_obs - tol))
    return (1 + hits) / (1 + n_perm), f"Monte Carlo ({n_perm} shuffles)", 1 / (1 + n_perm)


def pairing_test(R, n_perm=4999, seed=0, exact_max=40320):
    """Seed-pairing test of a (k, k) matrix ``R[i, j] = corr(a_i, b_j)``: is the matched diagonal special?

    T(sigma) = mean_i R[i, sigma(i)] - mean of the other k(k-1) entries; T = T(identity). Two-sided p =
    fraction of pairings sigma with |T(sigma)| >= |T|: exact over all k! pairings when k! <= ``exact_max``,
    else Monte Carlo (``(1 + hits) / (1 + n_perm)``). Returns (T, p, method, p_min).
    """
    R = onp.asarray(R, dtype=float)
    k = R.shape[0]
    total = R.sum()

    def stat(rows):  # rows: (m, k) pairings
        matched = R[onp.arange(k), rows].sum(axis=1)
        return matched / k - (total - matched) / (k * (k - 1))

    t_obs = float(stat(onp.arange(k)[None])[0])
    tol = 1e-12
    if math.factorial(k) <= exact_max:
        t = onp.abs(stat(onp.array(list(itertools.permutations(range(k))))))
        p_min = float(onp.mean(t >= t.max() - tol))
        return t_obs, float(onp.mean(t >= abs(t_obs) - tol)), f"exact ({len(t)} pairings)", p_min
    rng = onp.random.default_rng(seed)
    t = onp.abs(stat(onp.argsort(rng.random((n_perm, k)), axis=1)))
    return t_obs, (1 + int(onp.sum(t >= abs(t_obs) - tol))) / (1 + n_perm), f"Monte Carlo ({n_perm} pairings)", \
        1 / (1 + n_perm)


def t_interval(values, confidence=0.95, limits=(-1.0, 1.0), fisher=False):
    """t-interval over seeds of the mean of ``values``: mean +- t_{(1+c)/2, n-1} sd / sqrt(n), clipped to
    ``limits`` (the statistic's range); (nan, nan) with fewer than 3 values.

    ``fisher=True`` (correlation coefficients): the interval is taken over z = arctanh(r) (r clipped to
    +-0.995) and mapped back with tanh, which keeps it inside (-1, 1) and fits the skew of coefficients near
    +-1 (coverage measured in tests/test_stats.py).
    """
    values = onp.asarray(values, dtype=float)
    n = len(values)
    if n < 3:
        return (float("nan"), float("nan"))
    v = onp.arctanh(onp.clip(values, -0.995, 0.995)) if fisher else values
    m = float(v.mean())
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    lo, hi = (math.tanh(m - half), math.tanh(m + half)) if fisher else (m - half, m + half)
    mean = float(values.mean())  # the interval always holds the reported value (the mean of the raw values)
    return (max(limits[0], min(lo, mean)), min(limits[1], max(hi, mean)))


def _ci_sides(ci):
    """(lo, hi) of an interval when both ends are finite, else None (no interval given)."""
    if ci is None:
        return None
    lo, hi = (list(ci) + [None, None])[:2]
    if finite_or_none(lo) is None or finite_or_none(hi) is None:
        return None
    return float(lo), float(hi)


def verdict_of(value, per_seed_used, q_value, expected_sign, alpha, ci=None):
    """The verdict rule of the module docstring (``per_seed_used``: coefficients of the seeds used; ``q_value``:
    the p-value adjusted for the figure's family, or the p-value of a claim judged alone; ``ci``: the claim's
    interval, when it has one: a claim whose interval holds 0 or lies on the other side is never ``holds``, and
    one whose interval holds 0 or lies on the expected side is never ``fails``)."""
    if not per_seed_used or q_value is None or not math.isfinite(q_value):
        return "n/a"
    s = check_sign(expected_sign)
    significant = q_value < alpha
    agree = sum(1 for v in per_seed_used if s * v > 0)
    needed = len(per_seed_used) if len(per_seed_used) <= 2 else len(per_seed_used) - 1  # "all but one" needs 3 seeds
    sides = _ci_sides(ci)
    ci_expected = sides is None or min(s * sides[0], s * sides[1]) > 0   # the whole interval on the expected side
    ci_against = sides is None or max(s * sides[0], s * sides[1]) < 0    # the whole interval on the other side
    if significant and s * value > 1e-12 and agree >= needed and ci_expected:
        return "holds"
    if significant and s * value < -1e-12 and ci_against:
        return "fails"
    return "inconclusive"


def pairing_stat(R, rows):
    """T(sigma) of ``pairing_test`` for each pairing in ``rows`` (m, k) of a (k, k) matrix R."""
    k = R.shape[0]
    matched = R[onp.arange(k), rows].sum(axis=1)
    return matched / k - (R.sum() - matched) / (k * (k - 1))


def jackknife_interval(stat, n_units, confidence=0.95):
    """t-interval from the delete-one jackknife over ``n_units`` units: ``stat(keep)`` is the statistic on the
    units ``keep`` (an index array); pseudo-values n T - (n - 1) T_(-i), t with n - 1 degrees of freedom.
    (nan, nan) with fewer than 3 units."""
    if n_units < 3:
        return (float("nan"), float("nan"))
    full = stat(onp.arange(n_units))
    loo = onp.array([stat(onp.delete(onp.arange(n_units), i)) for i in range(n_units)])
    pseudo = n_units * full - (n_units - 1) * loo
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n_units - 1) * pseudo.std(ddof=1) / math.sqrt(n_units))
    center = float(pseudo.mean())
    return (min(center - half, full), max(center + half, full))


def corr_matrix(A, B, kind):
    """R[i, j] = Pearson (or Spearman) of rows A[i], B[j] (finite, equally long); 0 where a row is constant.
    Returns (R, mask of the entries set to 0)."""
    if kind == "spearman":
        A, B = scipy_stats.rankdata(A, axis=1), scipy_stats.rankdata(B, axis=1)
    const_a = onp.array([is_constant(r) for r in A])
    const_b = onp.array([is_constant(r) for r in B])
    za = (A - A.mean(1, keepdims=True)) / onp.where(const_a, 1.0, A.std(1))[:, None]
    zb = (B - B.mean(1, keepdims=True)) / onp.where(const_b, 1.0, B.std(1))[:, None]
    R = onp.clip(za @ zb.T / A.shape[1], -1.0, 1.0)
    bad = const_a[:, None] | const_b[None, :]
    R[bad] = 0.0
    return R, bad


TRACKING_CI_MIN_CONFIGS = 8  # the jackknife covers 93-95% from 8 units, 85-92% at 4-5 (tests): units = configs or seeds


def rank_permutation_test(rx, ry, n_perm, seed, exact_max):
    """Two-sided permutation p of Pearson(rx, ry) (ranks: Spearman) over permutations of ry's entries: exact
    when n! <= exact_max, else Monte Carlo. Returns (p, method, p_min)."""
    zx, zy = standardized(rx), standardized(ry)
    n = len(zx)
    t_obs = abs(float(zx @ zy) / n)
    tol = 1e-9
    if math.factorial(n) <= exact_max:
        idx = onp.array(list(itertools.permutations(range(n))))
        t = onp.abs(_seed_coefs(zx, zy, idx))
        return (float(onp.mean(t >= t_obs - tol)), f"exact ({len(t)} permutations of the configs)",
                float(onp.mean(t >= t.max() - tol)))
    rng = onp.random.default_rng(seed)
    idx = rng.permuted(onp.tile(onp.arange(n), (n_perm, 1)), axis=1)
    t = onp.abs(_seed_coefs(zx, zy, idx))
    return ((1 + int(onp.sum(t >= t_obs - tol))) / (1 + n_perm), f"Monte Carlo ({n_perm} permutations of the configs)",
            1 / (1 + n_perm))


def wilson_interval(k, n, z=_Z95):
    """Wilson score interval of a binomial proportion k/n; (nan, nan) when n == 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


def q_values(p_values, method="bh"):
    """The false-discovery-rate q-values of ``p_values`` (one family): ``method="bh"`` Benjamini-Hochberg
    (independent or positively dependent tests), ``"by"`` Benjamini-Yekutieli (any dependence);
    ``scipy.stats.false_discovery_control``."""
    if method not in ("bh", "by"):
        raise ValueError(f"method must be 'bh' (Benjamini-Hochberg) or 'by' (Benjamini-Yekutieli); got {method!r}")
    return scipy_stats.false_discovery_control(p_values, method=method)
