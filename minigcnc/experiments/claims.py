"""The paper's claims as tested statements, and checks of the code kept apart from them.

Each figure builds a list of ``Claim``s from its runs, prints ``claim_table(claims)`` and stores
``[c.to_dict() for c in claims]`` in its JSON. A ``Claim`` has a ``kind``: ``"claim"`` (evidence for or
against a statement of the paper, with a test that can fail) or ``"check"`` (an inequality that holds by
construction, or a measured diagnostic; never counted as evidence).

Claims (correlations)
---------------------
- ``rank_correlation_claim``: Spearman rank correlation between x and y across a sweep (one point per swept
  value), computed in each seed separately;
- ``correlation_claim``: Pearson correlation between two curves over training checkpoints, in each seed.

Effect size: ``value`` is the MEAN OF THE PER-SEED COEFFICIENTS (not a coefficient of the pooled points: pooling
mixes the seeds' offsets, and a pooled correlation can even disagree in sign with every seed). ``per_seed``
lists every seed's coefficient (nan/None for a seed that could not be used).

How the seeds are combined: one stratified permutation test of the mean coefficient. Under the null
hypothesis (no association), y is shuffled within each seed independently (x fixed), and the statistic is the
mean of the per-seed coefficients; the two-sided p-value is the Monte-Carlo estimate
``p = (1 + #{|T*| >= |T|}) / (1 + B)`` (default ``B = 4999`` shuffles, a fixed ``seed`` makes it
reproducible), or the exact fraction over all within-seed permutations when there are few of them (at most
``exact_max``, e.g. 1 seed x 4 points = 24). ``ci`` is a 95% percentile bootstrap over seeds of the mean
per-seed coefficient (``scipy.stats.bootstrap``), given when at least 3 seeds are used, else ``[nan, nan]``.
Non-finite pairs (diverged runs) are dropped pairwise within a seed; a seed with fewer than 3 finite points
(or a constant x or y) is dropped from the test and counted in ``detail``. ``n_points`` = finite points
used in total, ``n_seeds`` = seeds used.

Caveat for the claims over training (``correlation_claim``): successive checkpoints of one run are
autocorrelated (two smooth curves that both trend co-vary whatever drives them), while the permutation test
treats them as exchangeable; its p-value is anti-conservative there. Those claims measure co-movement of two
curves, not independent evidence; read their p-value as a description, not as a test.

Verdicts of a claim (``alpha`` default 0.05; "expected sign" = the sign the paper predicts):

- ``holds``: p < alpha AND ``value`` has the expected sign AND the per-seed coefficient has the expected
  sign in every seed or all but one;
- ``weak``: ``value`` has the expected sign but p >= alpha (not significant), or it is significant but the
  seeds disagree more than "all but one";
- ``not supported``: ``value`` is zero or of the wrong sign, and p >= alpha;
- ``fails``: p < alpha with the wrong sign (significant evidence against the statement);
- ``n/a``: no seed with at least 3 finite points (e.g. every run diverged).

Checks (``kind == "check"``)
----------------------------
``inequality_check`` (and ``fraction_above_claim``, its old name) measures the fraction of (seed, checkpoint)
points where ``bound >= value``, per seed and pooled, with a Wilson 95% interval over the points; verdict
``holds`` when the fraction is 1, ``fails`` otherwise (``n/a`` with no finite point); no p-value.
``by_construction=True`` marks a mathematical inequality (e.g. "the Markov bound >= the NCC error"): it
cannot fail unless the code is wrong. ``by_construction=False`` marks a measured diagnostic (e.g. "the GC
bound with a proxy rho >= the error"). ``check`` builds any other check. Checks catch bugs; they are not
evidence for the paper, and ``verdict_counts`` / the table's last line never count them.
"""
import itertools
import math
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as onp
from scipy import stats

VERDICTS = ("holds", "weak", "not supported", "fails", "n/a")
_Z95 = 1.959963984540054


# ---- coefficients ------------------------------------------------------------------------------------
def ranks(x):
    """Average ranks of x (ties share the mean of their positions), 1-based (``scipy.stats.rankdata``)."""
    return stats.rankdata(onp.asarray(x, dtype=float))


def _finite_pairs(x, y):
    x, y = onp.asarray(x, dtype=float).ravel(), onp.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y of one seed differ in length: {len(x)} != {len(y)}")
    ok = onp.isfinite(x) & onp.isfinite(y)
    return x[ok], y[ok]


def _constant(a):
    return len(a) == 0 or bool(onp.all(a == a[0]))


def pearson(x, y):
    """Pearson correlation of x and y (finite pairs only); nan when constant or fewer than 2 pairs."""
    x, y = _finite_pairs(x, y)
    if len(x) < 2 or _constant(x) or _constant(y):
        return float("nan")
    return float(stats.pearsonr(x, y)[0])


def spearman(x, y):
    """Spearman rank correlation of x and y (finite pairs only); nan when constant or fewer than 2 pairs."""
    x, y = _finite_pairs(x, y)
    if len(x) < 2 or _constant(x) or _constant(y):
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


# ---- the record --------------------------------------------------------------------------------------
def _num(v):
    """A JSON number: None for None / nan / inf."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class Claim:
    """One measured statement: ``statistic`` = ``value`` over ``n_seeds`` seeds, its test and verdict.

    The first nine fields keep their old positional order. ``kind`` is ``"claim"`` (evidence) or
    ``"check"`` (by construction or a diagnostic: never counted); see the module docstring.
    """

    figure: str
    statement: str
    statistic: str
    value: float
    n_seeds: int
    expected: str
    verdict: str
    per_seed: list = field(default_factory=list)
    detail: str = ""
    ci: tuple = (float("nan"), float("nan"))
    p_value: float = None
    alpha: float = None
    n_points: int = None
    by_construction: bool = False
    kind: str = "claim"

    def to_dict(self):
        ci = list(self.ci) if self.ci is not None else [None, None]
        return {
            "figure": self.figure, "kind": self.kind, "statement": self.statement, "statistic": self.statistic,
            "value": _num(self.value), "per_seed": [_num(v) for v in self.per_seed],
            "ci": [_num(ci[0]), _num(ci[1])], "p_value": _num(self.p_value), "alpha": _num(self.alpha),
            "n_seeds": None if self.n_seeds is None else int(self.n_seeds),
            "n_points": None if self.n_points is None else int(self.n_points),
            "verdict": self.verdict, "by_construction": bool(self.by_construction),
            "expected": self.expected, "detail": self.detail,
        }


# ---- the permutation test ----------------------------------------------------------------------------
def _standardized(a):
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


def bootstrap_ci(values, seed=0, n_boot=9999, confidence=0.95):
    """Percentile bootstrap interval over seeds of the mean of ``values``; (nan, nan) with < 3 values."""
    values = onp.asarray(values, dtype=float)
    if len(values) < 3:
        return (float("nan"), float("nan"))
    if _constant(values):
        return (float(values[0]), float(values[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(n_resamples=n_boot, confidence_level=confidence, method="percentile", vectorized=True)
        try:
            res = stats.bootstrap((values,), onp.mean, rng=onp.random.default_rng(seed), **kw)
        except TypeError:  # scipy < 1.15 calls it random_state
            res = stats.bootstrap((values,), onp.mean, random_state=onp.random.default_rng(seed), **kw)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def verdict_of(value, per_seed_used, p_value, expected_sign, alpha):
    """The verdict rule of the module docstring (``per_seed_used``: coefficients of the seeds used)."""
    if not per_seed_used or p_value is None or not math.isfinite(p_value):
        return "n/a"
    s = 1 if expected_sign > 0 else -1
    significant = p_value < alpha
    right_sign = s * value > 1e-12
    wrong_sign = s * value < -1e-12
    agree = sum(1 for v in per_seed_used if s * v > 0)
    needed = len(per_seed_used) if len(per_seed_used) <= 2 else len(per_seed_used) - 1  # "all but one" needs 3 seeds
    if significant and right_sign and agree >= needed:
        return "holds"
    if significant and wrong_sign:
        return "fails"
    if right_sign:
        return "weak"
    return "not supported"


def _correlation(kind, figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name, alpha,
                 n_perm, seed, n_boot, exact_max, extra, over_training):
    coef = stats.spearmanr if kind == "spearman" else stats.pearsonr
    per_seed, used, zxs, zys = [], [], [], []
    short = constant = dropped_points = n_points = 0
    for x, y in zip(xs_per_seed, ys_per_seed):
        n_all = len(onp.asarray(x, dtype=float).ravel())
        xf, yf = _finite_pairs(x, y)
        dropped_points += n_all - len(xf)
        if len(xf) < 3:
            short += 1
            per_seed.append(float("nan"))
            continue
        if _constant(xf) or _constant(yf):
            constant += 1
            per_seed.append(float("nan"))
            continue
        r = float(coef(xf, yf)[0])
        per_seed.append(r)
        used.append(r)
        n_points += len(xf)
        if kind == "spearman":
            xf, yf = stats.rankdata(xf), stats.rankdata(yf)
        zxs.append(_standardized(xf))
        zys.append(_standardized(yf))
    sign = 1 if expected_sign > 0 else -1
    notes = []
    if short:
        notes.append(f"{short} seed(s) dropped with < 3 finite points")
    if constant:
        notes.append(f"{constant} seed(s) dropped with a constant x or y")
    if dropped_points:
        notes.append(f"{dropped_points} non-finite point(s) dropped")
    if not used:
        value, p, ci, method = float("nan"), None, (float("nan"), float("nan")), "no test"
    else:
        value = float(onp.mean(used))
        p, method, p_min = permutation_test(zxs, zys, n_perm=n_perm, seed=seed, exact_max=exact_max)
        if p_min >= alpha:
            notes.append(f"underpowered: the smallest p these seeds and points allow is {p_min:.3g} >= alpha, so "
                         "this claim cannot hold here however strong the effect")
        ci = bootstrap_ci(used, seed=seed, n_boot=n_boot)
        if len(used) < 3:
            notes.append("no ci: fewer than 3 seeds")
    verdict = verdict_of(value, used, p, sign, alpha)
    name = "Spearman" if kind == "spearman" else "Pearson"
    detail = (f"value = mean of {len(used)} per-seed {name} coefficients{extra}; p: stratified permutation test "
              f"(y shuffled within each seed), {method}; ci: 95% percentile bootstrap over seeds")
    if over_training:
        detail += ("; checkpoints over training are autocorrelated, so p is anti-conservative: "
                   "this measures co-movement, not independent evidence")
    if notes:
        detail += "; " + "; ".join(notes)
    return Claim(figure, statement, f"{kind}({x_name}, {y_name})", value, len(used),
                 "positive" if sign > 0 else "negative", verdict, per_seed, detail, ci=ci, p_value=p,
                 alpha=alpha, n_points=n_points, by_construction=False, kind="claim")


def rank_correlation_claim(figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name, *,
                           alpha=0.05, n_perm=4999, seed=0, n_boot=9999, exact_max=20000, over_training=False):
    """Spearman correlation between x and y across a sweep, per seed, tested against ``expected_sign``.

    xs_per_seed, ys_per_seed: lists (one per seed) of equally long sequences (one entry per swept value, or
    per checkpoint with ``over_training=True``, which adds the autocorrelation caveat to ``detail``).
    ``value`` = mean per-seed Spearman; p from the stratified permutation test; see the module docstring.
    """
    return _correlation("spearman", figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name,
                        alpha, n_perm, seed, n_boot, exact_max,
                        " over training checkpoints" if over_training else " across the sweep", over_training)


def correlation_claim(figure, statement, xs_per_seed, ys_per_seed, x_name, y_name, expected_sign=1, *,
                      alpha=0.05, n_perm=4999, seed=0, n_boot=9999, exact_max=20000):
    """Pearson correlation of two curves over training checkpoints (e.g. a bound and an error), per seed.

    ``value`` = mean per-seed Pearson; p from the stratified permutation test, anti-conservative here because
    checkpoints are autocorrelated (see the module docstring).
    """
    return _correlation("pearson", figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name,
                        alpha, n_perm, seed, n_boot, exact_max, " over training checkpoints", True)


# ---- checks ------------------------------------------------------------------------------------------
def wilson_interval(k, n, z=_Z95):
    """Wilson score interval of a binomial proportion k/n; (nan, nan) when n == 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


def check(figure, statement, statistic, value, ok, *, per_seed=(), ci=(float("nan"), float("nan")), n_seeds=None,
          n_points=None, by_construction=False, expected="", detail=""):
    """A check (not evidence): verdict ``holds`` when ``ok``, ``fails`` when not, ``n/a`` when ``ok`` is None."""
    verdict = "n/a" if ok is None else ("holds" if ok else "fails")
    return Claim(figure, statement, statistic, value, n_seeds, expected, verdict, list(per_seed), detail, ci=ci,
                 p_value=None, alpha=None, n_points=n_points, by_construction=by_construction, kind="check")


def inequality_check(figure, statement, bounds_per_seed, values_per_seed, bound_name, value_name,
                     by_construction=False):
    """Fraction of (seed, checkpoint) points where bound >= value, per seed and pooled (Wilson 95% ci).

    ``holds`` when the pooled fraction is 1, ``fails`` otherwise. "At least" allows float round-off
    (``b >= v (1 - 1e-12) - 1e-15``), so an equality computed two ways is not a failure. Non-finite pairs are
    dropped and counted in ``detail``.
    """
    per_seed, k, n, seeds, dropped = [], 0, 0, 0, 0
    for b, v in zip(bounds_per_seed, values_per_seed):
        n_all = len(onp.asarray(b, dtype=float).ravel())
        b, v = _finite_pairs(b, v)
        dropped += n_all - len(b)
        if len(b):
            above = int(onp.sum(b >= v * (1 - 1e-12) - 1e-15))
            per_seed.append(above / len(b))
            k, n, seeds = k + above, n + len(b), seeds + 1
        else:
            per_seed.append(float("nan"))
    frac = k / n if n else float("nan")
    what = "holds by construction (a failure is a bug)" if by_construction else "a measured diagnostic"
    return check(figure, statement, f"fraction({bound_name} >= {value_name})", frac, (k == n) if n else None,
                 per_seed=per_seed, ci=wilson_interval(k, n), n_seeds=seeds, n_points=n,
                 by_construction=by_construction, expected="1.0",
                 detail=f"{k}/{n} points over {seeds} seed(s); ci: Wilson 95% over points; {what}"
                 + (f"; {dropped} non-finite point(s) dropped" if dropped else ""))


def fraction_above_claim(figure, statement, bounds_per_seed, values_per_seed, bound_name, value_name,
                         by_construction=False):
    """The old name of ``inequality_check``: returns a check (``kind == "check"``), never a claim."""
    return inequality_check(figure, statement, bounds_per_seed, values_per_seed, bound_name, value_name,
                            by_construction=by_construction)


# ---- the table ---------------------------------------------------------------------------------------
def verdict_counts(claims):
    """{verdict: count} over the claims of ``kind == "claim"`` only (checks never count)."""
    counts = {v: 0 for v in VERDICTS}
    for c in claims:
        if getattr(c, "kind", "claim") == "claim":
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return counts


def _fmt(x, spec):
    return "nan" if x is None or not math.isfinite(float(x)) else format(float(x), spec)


def _fmt_p(p):
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _wrap(text, width):
    return textwrap.wrap(str(text), width, break_long_words=False, break_on_hyphens=False) or [""]


def _block(header, rows, widths):
    """Rows of cells (each cell a list of lines) as text; widths are each column's wrap width."""
    cells = [[_wrap(h, w) for h, w in zip(header, widths)]]
    cells += [[_wrap(c, w) for c, w in zip(r, widths)] for r in rows]
    cols = [max(len(line) for row in cells for line in row[j]) for j in range(len(header))]
    multi = any(len(cell) > 1 for row in cells[1:] for cell in row)
    out = []
    for i, row in enumerate(cells):
        if i > 1 and multi:
            out.append("")
        for li in range(max(len(cell) for cell in row)):
            out.append("  ".join((cell[li] if li < len(cell) else "").ljust(cols[j])
                                 for j, cell in enumerate(row)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in cols))
    return out


def claim_table(claims, width=46):
    """The claims, then the checks, as plain text; whole statements, wrapped (never cut).

    Columns: statement, statistic, value (mean per-seed coefficient; for a check the fraction k/n), 95% CI
    (bootstrap over seeds; Wilson over points for a check), p (permutation test; "-" for a check), per seed
    (every seed, 2 decimals), verdict. The last line counts the verdicts of the claims only.
    """
    claims = list(claims)
    real = [c for c in claims if getattr(c, "kind", "claim") == "claim"]
    checks = [c for c in claims if getattr(c, "kind", "claim") == "check"]

    def seeds(c, spec):
        return " ".join(_fmt(v, spec) for v in c.per_seed)

    def ci(c):
        lo, hi = (list(c.ci) + [None, None])[:2] if c.ci is not None else (None, None)
        return "-" if _num(lo) is None and _num(hi) is None else f"[{_fmt(lo, '+.2f')}, {_fmt(hi, '+.2f')}]"

    lines = []
    header = ("claim", "statistic", "value", "95% CI", "p", "per seed", "verdict")
    rows = [(c.statement, c.statistic, _fmt(c.value, "+.3f"), ci(c), _fmt_p(c.p_value), seeds(c, "+.2f"),
             c.verdict) for c in real]
    lines += _block(header, rows, (width, 30, 6, 16, 7, 30, 13))
    if checks:
        lines += ["", "Checks (not evidence: they catch bugs in the code or the bounds, not the paper's claims; "
                      "'by construction' = a mathematical inequality)"]
        header = ("check", "statistic", "type", "fraction", "95% CI", "per seed", "verdict")
        rows = []
        for c in checks:
            n = c.n_points or 0
            frac = _fmt(c.value, ".3f") + (f" ({round(c.value * n)}/{n})" if n and _num(c.value) is not None else "")
            rows.append((c.statement, c.statistic, "by construction" if c.by_construction else "measured", frac,
                         ci(c).replace("+", ""), seeds(c, ".2f"), c.verdict))
        lines += _block(header, rows, (width, 30, 15, 16, 16, 30, 7))
    counts = verdict_counts(claims)
    parts = [f"{counts[v]} {v}" for v in VERDICTS] + [f"{k} {v}" for v, k in counts.items()
                                                       if v not in VERDICTS and k]
    lines += ["", f"{len(real)} claim{'s' if len(real) != 1 else ''}: " + ", ".join(parts)
              + (f" ({len(checks)} check{'s' if len(checks) != 1 else ''} not counted)" if checks else "")]
    return "\n".join(lines)
