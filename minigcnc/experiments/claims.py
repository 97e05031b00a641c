"""The paper's claims as tested statements; descriptions and checks kept apart from them.

Each figure builds a list of ``Claim``s from its runs; ``judge(claims)`` gives every counted claim its
Benjamini-Hochberg q-value over the figure's family and its verdict; ``table.claim_table(claims)`` prints them and
``[c.to_dict() for c in claims]`` goes into the figure's JSON. A ``Claim`` has a ``kind``:

- ``"claim"``: evidence for or against a statement of the paper, from a test whose false-"holds" rate on noise
  is measured in ``tests/test_claims.py``; only these are counted;
- ``"derived"``: a claim that the counted claims of the same table force, or a copy of one
  (``mark_forced``, computed from the data: e.g. "lower GC goes with lower NC" in a sweep whose value->GC and
  value->NC claims are +-1 in every seed); shown with its own test, never counted;
- ``"description"``: a number worth seeing that is not a test (a within-run correlation of two curves over
  training, which any two trending curves show; a test with too few seeds to reach alpha); never counted;
- ``"check"``: an inequality that holds by construction, or a measured diagnostic; never counted.

Claims
------
- ``rank_correlation_claim``: Spearman rank correlation between x and y across a sweep (one point per swept
  value, or per run), computed in each seed separately; ``value`` is the mean of the per-seed coefficients
  (pooling mixes the seeds' offsets). p: a stratified permutation test (y shuffled within each seed; exact
  over all within-seed permutations when there are at most ``exact_max``, else Monte Carlo with
  ``p = (1 + hits) / (1 + B)``).
- ``tracking_claim``: "curve a tracks curve b over training" by *seed pairing*. Two curves that both trend
  over training correlate within a run whatever links them; the question is whether a seed's a follows that
  seed's b better than another seed's b. The statistic is the mean correlation of matched seeds (a_i, b_i)
  minus the mean over mismatched pairs (a_i, b_j), j != i; the p-value is exact over all k! pairings of the
  seed labels (two-sided). With so few seeds that no pairing can reach alpha (k <= 3 at 0.05), it is a
  description, shown and never counted.
- ``config_rank_claim`` and ``config_tracking_claim``: the same two questions with *configs as the units*,
  for claims that compare runs of different configs (seeds re-measure a config; they are replicates, not new
  evidence about how configs differ). ``config_rank_claim``: Spearman of the seed-averaged configs, exact (or
  Monte Carlo) over permutations of the configs. ``config_tracking_claim``: matched minus mismatched
  correlation of configs' curves, b's config labels permuted the same way in every seed. With fixed,
  unrelated config effects the within-seed tests above say "holds" in 16-22% of draws; these in 2-4%
  (tests/test_claims.py). A sweep's claims are configs-as-units claims over its values (``driver.sweep_claims``):
  with 5 values p >= 2/120 two-sided, with 4 or fewer no arrangement reaches 0.05 and the claim is a
  description. The within-seed statistic stays beside it as a description (``seeds_as_replicates``).
- ``correlation_claim`` and ``rank_correlation_claim(over_training=True)``: the within-seed correlation of two
  curves over training checkpoints. Checkpoints are autocorrelated and share a trend (two independent decaying
  curves "hold" in every draw), so these are descriptions, never counted.

Intervals, the verdict rule (``holds``, ``fails``, ``inconclusive``, ``n/a``) and the q-values are in
``stats.py``, which says which interval each claim gets and why. Non-finite pairs (diverged runs) are dropped
pairwise within a seed; a seed with fewer than 3 finite points, or a constant x or y, is dropped and counted in
``detail``. ``judge`` gives every counted claim its Benjamini-Hochberg q-value and its verdict on it, and the
Benjamini-Yekutieli q-value (``q_by``, valid under any dependence) with ``verdict_by``.

Checks (``kind == "check"``)
----------------------------
``inequality_check`` measures the fraction of (seed, checkpoint) points where ``bound >= value``, per seed
and pooled, with a Wilson 95% interval over the points; verdict ``holds`` when the fraction is 1, ``fails``
otherwise. ``by_construction=True`` marks a mathematical inequality: it cannot fail unless the code is wrong.
``check`` builds any other check (e.g. Figure 3's per-class Poincare check). Checks catch bugs or measure an
assumption; they are not evidence for the paper, and ``table.verdict_counts`` / the table's last line never count
them.
"""
import math
from dataclasses import dataclass, field

import numpy as onp

from .stats import (NO_PAIRING_CI, NO_SEED_CI, TRACKING_CI_MIN_CONFIGS, check_sign, corr_matrix, finite_or_none, finite_pairs, is_constant, jackknife_interval, pairing_stat, pairing_test,
                    permutation_test, q_values, rank_permutation_test, scipy_stats, spearman, standardized,
                    verdict_of, wilson_interval)
from .table import fmt_p

KINDS = ("claim", "derived", "description", "check")


@dataclass
class Claim:
    """One measured statement: ``statistic`` = ``value`` over ``n_seeds`` seeds, its test and verdict.

    ``kind`` is ``"claim"`` (counted evidence), ``"derived"``, ``"description"`` or ``"check"`` (never
    counted); see the module docstring. ``q_value`` is set by ``judge`` (Benjamini-Hochberg over a figure's
    counted claims); ``expected_sign`` is +1 or -1 for a tested claim, 0 otherwise.
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
    q_value: float = None
    expected_sign: int = 0
    derived_from: str = ""
    per_unit: list = field(default_factory=list)
    q_by: float = None
    verdict_by: str = None
    data: list = field(default=None, repr=False, compare=False)  # per seed (x, y): what mark_forced compares

    def to_dict(self):
        ci = list(self.ci) if self.ci is not None else [None, None]
        return {
            "figure": self.figure, "kind": self.kind, "statement": self.statement, "statistic": self.statistic,
            "value": finite_or_none(self.value), "per_seed": [finite_or_none(v) for v in self.per_seed],
            "ci": [finite_or_none(ci[0]), finite_or_none(ci[1])], "p_value": finite_or_none(self.p_value), "q_value": finite_or_none(self.q_value),
            "alpha": finite_or_none(self.alpha), "n_seeds": None if self.n_seeds is None else int(self.n_seeds),
            "n_points": None if self.n_points is None else int(self.n_points),
            "verdict": self.verdict, "by_construction": bool(self.by_construction),
            "expected": self.expected, "derived_from": self.derived_from, "detail": self.detail,
            "per_unit": [finite_or_none(v) for v in self.per_unit], "q_by": finite_or_none(self.q_by), "verdict_by": self.verdict_by,
        }


def _usable(x, y, notes):
    """(x, y) finite pairs of one seed, or None when the seed must be dropped (noted in ``notes``)."""
    n_all = len(onp.asarray(x, dtype=float).ravel())
    xf, yf = finite_pairs(x, y)
    notes["dropped_points"] += n_all - len(xf)
    if len(xf) < 3:
        notes["short"] += 1
        return None
    if is_constant(xf) or is_constant(yf):
        notes["constant"] += 1
        return None
    return xf, yf


def _notes_text(notes):
    out = []
    if notes["short"]:
        out.append(f"{notes['short']} seed(s) dropped with < 3 finite points")
    if notes["constant"]:
        out.append(f"{notes['constant']} seed(s) dropped with a constant x or y")
    if notes["dropped_points"]:
        out.append(f"{notes['dropped_points']} non-finite point(s) dropped")
    return out


def _correlation(kind, figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name, alpha,
                 n_perm, seed, exact_max, over_training):
    sign = check_sign(expected_sign)
    coef = scipy_stats.spearmanr if kind == "spearman" else scipy_stats.pearsonr
    per_seed, used, zxs, zys = [], [], [], []
    notes = {"short": 0, "constant": 0, "dropped_points": 0}
    n_points = 0
    for x, y in zip(xs_per_seed, ys_per_seed):
        pair = _usable(x, y, notes)
        if pair is None:
            per_seed.append(float("nan"))
            continue
        xf, yf = pair
        r = float(coef(xf, yf)[0])
        per_seed.append(r)
        used.append(r)
        n_points += len(xf)
        if kind == "spearman":
            xf, yf = scipy_stats.rankdata(xf), scipy_stats.rankdata(yf)
        zxs.append(standardized(xf))
        zys.append(standardized(yf))
    text = _notes_text(notes)
    ci = (float("nan"), float("nan"))
    if not used:
        value, p, method = float("nan"), None, "no test"
    else:
        value = float(onp.mean(used))
        p, method, p_min = permutation_test(zxs, zys, n_perm=n_perm, seed=seed, exact_max=exact_max)
        if p_min >= alpha:
            text.append(f"underpowered: the smallest p these seeds and points allow is {p_min:.3g} >= alpha, so "
                        "this claim cannot hold here however strong the effect")
        text.append(NO_SEED_CI)
    name = "Spearman" if kind == "spearman" else "Pearson"
    where = "over training checkpoints" if over_training else "across the sweep"
    detail = (f"value = mean of {len(used)} per-seed {name} coefficients {where}; p: stratified permutation test "
              f"(y shuffled within each seed), {method}")
    if over_training:
        detail = ("a description, not a test: curves over training share their trend, so any two that both move "
                  "correlate within a run (tracking_claim tests it); " + detail)
    if text:
        detail += "; " + "; ".join(text)
    return Claim(figure, statement, f"{kind}({x_name}, {y_name})", value, len(used),
                 "positive" if sign > 0 else "negative", verdict_of(value, used, p, sign, alpha, ci), per_seed, detail,
                 ci=ci, p_value=p, alpha=alpha, n_points=n_points, kind="description" if over_training else "claim",
                 expected_sign=sign, data=[(onp.asarray(x, dtype=float).ravel(), onp.asarray(y, dtype=float).ravel())
                                           for x, y in zip(xs_per_seed, ys_per_seed)])


def rank_correlation_claim(figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name, *,
                           alpha=0.05, n_perm=4999, seed=0, exact_max=20000, over_training=False):
    """Spearman correlation between x and y across a sweep, per seed, tested against ``expected_sign`` (+1/-1).

    xs_per_seed, ys_per_seed: lists (one per seed) of equally long sequences (one entry per swept value or run).
    ``value`` = mean per-seed Spearman; p from the stratified permutation test; see the module docstring.
    ``over_training=True`` (one entry per checkpoint) makes it a description, never counted.
    """
    return _correlation("spearman", figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name,
                        alpha, n_perm, seed, exact_max, over_training)


def correlation_claim(figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name, *,
                      alpha=0.05, n_perm=4999, seed=0, exact_max=20000):
    """Pearson correlation of two curves over training checkpoints within each seed: a description (shared
    trends correlate whatever links the curves), never counted; ``tracking_claim`` is the test. The arguments
    come in ``rank_correlation_claim``'s order (an old call with the names before the sign is refused by
    ``check_sign``)."""
    return _correlation("pearson", figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name,
                        alpha, n_perm, seed, exact_max, True)


def tracking_claim(figure, statement, as_per_seed, bs_per_seed, a_name, b_name, *, kind="pearson", alpha=0.05,
                   n_perm=4999, seed=0, exact_max=40320):
    """Does curve a track curve b over training beyond their shared trend? The seed-pairing test.

    as_per_seed, bs_per_seed: per seed, the two curves at the same checkpoints (runs of one config that differ
    only in their seed). Only the first checkpoints that every seed has are used (a run that stopped early
    shortens all; the values left out are counted in ``detail``); a seed with fewer than 3 checkpoints is
    dropped first (counted in ``detail``), so that it cannot cut the others to nothing. ``R[i, j]`` = Pearson
    (or Spearman, ``kind``) correlation of a_i with b_j over those checkpoints (finite pairs); the statistic is
    mean(matched R[i, i]) - mean(mismatched R[i, j], j != i), expected positive; per seed, R[i, i] - mean_{j != i} R[i, j]. p from ``pairing_test``. When no pairing of
    these seeds can reach ``alpha`` (p_min >= alpha: k <= 3 at 0.05) it is a description, never counted.
    """
    coef = scipy_stats.spearmanr if kind == "spearman" else scipy_stats.pearsonr
    notes = {"short": 0, "constant": 0, "dropped_points": 0}
    seeds = []
    curves = [(onp.asarray(a, dtype=float).ravel(), onp.asarray(b, dtype=float).ravel())
              for a, b in zip(as_per_seed, bs_per_seed)]
    # only the checkpoints every seed has: a seed that stopped early would otherwise meet the others on fewer
    # points than they meet each other, and the pairings would not be exchangeable (tests/test_claims.py)
    # a seed with fewer than 3 checkpoints (a run that stopped at once) is dropped first, not allowed to cut the
    # others to nothing
    long_enough = [min(len(a), len(b)) >= 3 for a, b in curves]
    n_common = min((min(len(a), len(b)) for (a, b), ok in zip(curves, long_enough) if ok), default=0)
    cut = sum(len(a) + len(b) - 2 * n_common for (a, b), ok in zip(curves, long_enough) if ok)
    for (a, b), ok in zip(curves, long_enough):
        n = n_common if ok else min(len(a), len(b))
        if _usable(a[:n], b[:n], notes) is None:
            seeds.append(None)
        else:
            seeds.append((a[:n], b[:n]))
    idx = [i for i, s in enumerate(seeds) if s is not None]
    k = len(idx)
    stat_name = f"matched - mismatched {kind}({a_name}, {b_name})"
    per_seed = [float("nan")] * len(seeds)
    text = _notes_text(notes)
    if cut:
        text.append(f"{cut} checkpoint value(s) beyond the {n_common} checkpoints every seed has left out")
    if k < 2:
        return Claim(figure, statement, stat_name, float("nan"), k, "positive", "n/a", per_seed,
                     "; ".join(["fewer than 2 usable seeds: no pairing"] + text), p_value=None, alpha=alpha,
                     n_points=0, kind="description", expected_sign=1)
    R = onp.full((k, k), onp.nan)
    n_points = 0
    for r, i in enumerate(idx):
        for c, j in enumerate(idx):
            a, b = seeds[i][0], seeds[j][1]
            n = min(len(a), len(b))
            af, bf = finite_pairs(a[:n], b[:n])
            R[r, c] = float(coef(af, bf)[0]) if len(af) >= 3 and not (is_constant(af) or is_constant(bf)) else 0.0
            if r == c:
                n_points += len(af)
    t, p, method, p_min = pairing_test(R, n_perm=n_perm, seed=seed, exact_max=exact_max)
    contrasts = [float(R[r, r] - onp.mean(onp.delete(R[r], r))) for r in range(k)]
    for r, i in enumerate(idx):
        per_seed[i] = contrasts[r]
    counted = p_min < alpha
    matched, mismatched = float(onp.mean(onp.diag(R))), float((R.sum() - onp.trace(R)) / (k * (k - 1)))
    detail = (f"matched mean {matched:+.3f}, mismatched mean {mismatched:+.3f} ({kind} over {n_points} matched "
              f"points); p: seed-pairing test, {method}" + (f"; ci: 95% delete-one jackknife over seeds"
                                                           if k >= TRACKING_CI_MIN_CONFIGS else ""))
    if not counted:
        text.insert(0, f"a description, not a test: with {k} seeds the smallest p is {p_min:.3g} >= alpha")
    if k >= TRACKING_CI_MIN_CONFIGS:
        ci = jackknife_interval(lambda keep: float(pairing_stat(R[onp.ix_(keep, keep)], onp.arange(len(keep))[None])[0]),
                                k)
    else:
        ci = (float("nan"), float("nan"))
        text.append(NO_PAIRING_CI)
    if text:
        detail += "; " + "; ".join(text)
    return Claim(figure, statement, stat_name, t, k, "positive", verdict_of(t, contrasts, p, 1, alpha, ci), per_seed,
                 detail, ci=ci, p_value=p, alpha=alpha, n_points=n_points,
                 kind="claim" if counted else "description", expected_sign=1)


# ---- accuracy against a tolerance ----------------------------------------------------------------------
def tolerance_claim(figure, statement, errors_per_seed, tolerance, error_name, *, alpha=0.05):
    """Is an error small? "The typical seed's median error is below ``tolerance``", seeds the units.

    errors_per_seed: per seed, the errors (e.g. relative errors of an estimate at every checkpoint; non-finite
    ones dropped and counted). Each seed's median m_s is one observation (checkpoints of a run are not
    independent). ``per_seed`` = tolerance - m_s (expected positive), ``value`` = tolerance - the median of the
    m_s. p: an exact sign test over seeds, one-sided in the direction observed: with b of k seeds below the
    tolerance, p = P(Bin(k, 1/2) >= b) when the value is positive, P(Bin(k, 1/2) >= k - b) when negative. So
    "holds" needs every seed below at k = 5 (p = 1/32), which says that the upper bound max_s m_s of the median
    of the m_s, with confidence 1 - 1/2^k, is below the tolerance; "fails" the mirror image. The false-holds rate
    at the tolerance is at most 1/2^k at k = 5 (tests). With fewer than 5 seeds no arrangement reaches 0.05:
    a description.
    """
    meds, dropped = [], 0
    for e in errors_per_seed:
        e = onp.asarray(e, dtype=float).ravel()
        dropped += int((~onp.isfinite(e)).sum())
        e = e[onp.isfinite(e)]
        meds.append(float(onp.median(e)) if len(e) else float("nan"))
    used = [m for m in meds if math.isfinite(m)]
    per_seed = [tolerance - m if math.isfinite(m) else float("nan") for m in meds]
    k = len(used)
    stat_name = f"{tolerance:g} - median over checkpoints of {error_name}, per seed"
    text = [f"{dropped} non-finite error(s) dropped"] if dropped else []
    if not k:
        return Claim(figure, statement, stat_name, float("nan"), 0, "positive", "n/a", per_seed,
                     "; ".join(["no seed with a finite error"] + text), alpha=alpha, kind="description",
                     expected_sign=1)
    value = float(tolerance - onp.median(used))
    below = sum(m < tolerance for m in used)
    tail = lambda b: float(scipy_stats.binom.sf(b - 1, k, 0.5))  # noqa: E731 - P(Bin(k, 1/2) >= b)
    p = tail(below) if value > 0 else tail(k - below) if value < 0 else 1.0
    p_min = 0.5 ** k
    counted = p_min < alpha
    detail = (f"seeds the units: {below} of {k} seeds have a median {error_name} below {tolerance:g} (largest "
              f"{max(used):.3g}: the upper bound of the median seed's median with confidence {1 - p_min:.3f}); p: "
              f"exact sign test over seeds, one-sided in the direction observed")
    if not counted:
        text.insert(0, f"a description, not a test: with {k} seeds the smallest p is {p_min:.3g} >= alpha")
    if text:
        detail += "; " + "; ".join(text)
    return Claim(figure, statement, stat_name, value, k, "positive", verdict_of(value, [v for v in per_seed
                 if math.isfinite(v)], p, 1, alpha), per_seed, detail, p_value=p, alpha=alpha,
                 n_points=sum(len(onp.asarray(e).ravel()) for e in errors_per_seed),
                 kind="claim" if counted else "description", expected_sign=1)



# ---- configs as the units ----------------------------------------------------------------------------
def _config_seed_grid(xs, name):
    """xs[c][s] as a list of lists with every config holding the same number of seeds (ValueError otherwise)."""
    xs = [list(row) for row in xs]
    if not xs:
        raise ValueError(f"{name}: no configs")
    n_seeds = {len(row) for row in xs}
    if len(n_seeds) != 1:
        raise ValueError(f"{name}: every config must have the same seeds; got seed counts {sorted(n_seeds)}")
    return xs, n_seeds.pop()


def config_tracking_claim(figure, statement, a, b, a_name, b_name, *, kind="pearson", alpha=0.05, n_perm=4999,
                          seed=0, exact_max=40320):
    """Does curve a track curve b over training across configs? Config pairing, configs as the units.

    a, b: ``a[c][s]`` = the curve over training checkpoints of config c, seed s (every config has the same
    seeds; the curves of one seed share their checkpoints, and only the first checkpoints that every curve of
    that seed has are used, the rest counted in ``detail``). For each seed, ``R_s[c, c'] = corr(a[c][s],
    b[c'][s])`` over those checkpoints (finite pairs; a curve with < 3 finite points or constant gives 0, noted).
    Statistic ``T = mean_s [mean_c R_s[c, c] - mean_{c != c'} R_s[c, c']]`` (matched minus mismatched, expected
    positive); ``per_seed`` = each seed's contrast (replicates), ``per_unit`` = each config's seed-averaged
    contrast ``mean_s [R_s[c, c] - mean_{c' != c} R_s[c, c']]`` (their mean is T).

    p: the config labels of b are permuted, the *same* permutation in every seed (a config's a meets its own b in
    every seed, so a fixed, unrelated config effect would otherwise look like tracking repeated S times: the
    within-seed independent permutation says "holds" in about a fifth of null draws, measured in the tests);
    two-sided, exact over all C! permutations when C! <= ``exact_max``, else Monte Carlo ``(1 + hits) / (1 +
    n_perm)``. It equals ``pairing_test`` on the seed-averaged matrix. Kind "claim" when the smallest attainable
    p is below ``alpha`` (C >= 4 configs at 0.05), else "description".
    Interval: 95% delete-one jackknife over configs (t, C - 1 df), given with at least
    ``TRACKING_CI_MIN_CONFIGS`` configs (coverage measured in tests/test_claims.py); else none, said in ``detail``.
    """
    a, n_seeds = _config_seed_grid(a, "a")
    b, n_seeds_b = _config_seed_grid(b, "b")
    if len(a) != len(b) or n_seeds != n_seeds_b:
        raise ValueError(f"a and b must have the same configs and seeds: {len(a)}x{n_seeds} != {len(b)}x{n_seeds_b}")
    coef = scipy_stats.spearmanr if kind == "spearman" else scipy_stats.pearsonr
    n_cfg = len(a)
    stat_name = f"matched - mismatched {kind}({a_name}, {b_name}) over configs"
    text = []
    if n_cfg < 2 or n_seeds < 1:
        return Claim(figure, statement, stat_name, float("nan"), n_seeds, "positive", "n/a",
                     [float("nan")] * n_seeds, f"{n_cfg} config(s): no pairing", alpha=alpha, n_points=0,
                     kind="description", expected_sign=1)
    Rs, dropped_ckpt, zeroed, n_points, short_seeds = [], 0, 0, 0, []
    for s in range(n_seeds):
        curves_a = [onp.asarray(a[c][s], dtype=float).ravel() for c in range(n_cfg)]
        curves_b = [onp.asarray(b[c][s], dtype=float).ravel() for c in range(n_cfg)]
        n = min(len(v) for v in curves_a + curves_b)
        if n < 3:  # a config that stopped (or diverged) before its third checkpoint in this seed
            short_seeds.append(s)
            continue
        dropped_ckpt += sum(len(v) - n for v in curves_a + curves_b)
        A = onp.array([v[:n] for v in curves_a])
        B = onp.array([v[:n] for v in curves_b])
        if n >= 3 and onp.isfinite(A).all() and onp.isfinite(B).all():  # the common case, as one product
            R, bad = corr_matrix(A, B, kind)
            zeroed += int(bad.sum())
            n_points += n_cfg * n
        else:
            R = onp.zeros((n_cfg, n_cfg))
            for i in range(n_cfg):
                for j in range(n_cfg):
                    af, bf = finite_pairs(A[i], B[j])
                    if len(af) >= 3 and not (is_constant(af) or is_constant(bf)):
                        R[i, j] = float(coef(af, bf)[0])
                    else:
                        zeroed += 1
                    if i == j:
                        n_points += len(af)
        Rs.append(R)
    if short_seeds:
        text.append(f"{len(short_seeds)} seed(s) dropped: a curve with fewer than 3 checkpoints")
    if not Rs:
        return Claim(figure, statement, stat_name, float("nan"), 0, "positive", "n/a", [float("nan")] * n_seeds,
                     "; ".join(["no seed whose every curve has 3 checkpoints"] + text), alpha=alpha, n_points=0,
                     kind="description", expected_sign=1)
    Rs = onp.array(Rs)  # (S used, C, C)
    off = ~onp.eye(n_cfg, dtype=bool)
    used_seeds = [s for s in range(n_seeds) if s not in short_seeds]
    per_seed = [float("nan")] * n_seeds
    for s, R in zip(used_seeds, Rs):
        per_seed[s] = float(pairing_stat(R, onp.arange(n_cfg)[None])[0])
    rows = onp.array([[R[i, i] - R[i, off[i]].mean() for i in range(n_cfg)] for R in Rs])  # (S, C)
    per_unit = [float(v) for v in rows.mean(axis=0)]
    Rbar = Rs.mean(axis=0)
    t, p, method, p_min = pairing_test(Rbar, n_perm=n_perm, seed=seed, exact_max=exact_max)
    method = method.replace("pairings", "config permutations, the same in every seed")
    counted = p_min < alpha
    if n_cfg >= TRACKING_CI_MIN_CONFIGS:
        ci = jackknife_interval(lambda keep: float(pairing_stat(Rbar[onp.ix_(keep, keep)],
                                                                 onp.arange(len(keep))[None])[0]), n_cfg)
        ci_text = "ci: 95% delete-one jackknife over configs (t, C - 1 df)"
    else:
        ci = (float("nan"), float("nan"))
        ci_text = (f"no ci: the jackknife over configs covers 95% only from {TRACKING_CI_MIN_CONFIGS} configs in "
                   f"the tests (85-89% with 4-5), and there are {n_cfg}")
    matched = float(onp.mean([onp.trace(R) / n_cfg for R in Rs]))
    mismatched = float(onp.mean([R[off].mean() for R in Rs]))
    detail = (f"{n_cfg} configs x {len(Rs)} seeds, configs the units; matched mean {matched:+.3f}, mismatched mean "
              f"{mismatched:+.3f} ({kind} over {n_points} matched points); p: config-pairing test, {method}; "
              f"{ci_text}; per_unit: each config's seed-averaged contrast")
    if not counted:
        text.append(f"a description, not a test: with {n_cfg} configs the smallest p is {p_min:.3g} >= alpha")
    if dropped_ckpt:
        text.append(f"{dropped_ckpt} checkpoint(s) dropped beyond the checkpoints every curve of its seed has")
    if zeroed:
        text.append(f"{zeroed} correlation(s) set to 0 (fewer than 3 finite points or a constant curve)")
    if text:
        detail += "; " + "; ".join(text)
    return Claim(figure, statement, stat_name, t, len(Rs), "positive",
                 verdict_of(t, [v for v in per_seed if math.isfinite(v)], p, 1, alpha, ci),
                 per_seed, detail, ci=ci, p_value=p, alpha=alpha, n_points=n_points,
                 kind="claim" if counted else "description", expected_sign=1, per_unit=per_unit)


def _finite_row_means(X):
    """Mean of each row's finite entries; nan for a row with none."""
    ok = onp.isfinite(X)
    n = ok.sum(axis=1)
    total = onp.where(ok, X, 0.0).sum(axis=1)
    return onp.where(n > 0, total / onp.maximum(n, 1), onp.nan)



def _seed_spearman(x, y):
    """One seed's Spearman across configs, nan with fewer than 3 finite pairs (the module's rule for a seed)."""
    xf, _ = finite_pairs(x, y)
    return spearman(x, y) if len(xf) >= 3 else float("nan")


def config_rank_claim(figure, statement, xs, ys, expected_sign, x_name, y_name, *, alpha=0.05, n_perm=4999,
                      seed=0, exact_max=40320):
    """Spearman correlation across configs, configs as the units (seeds re-measure a config; they are not new
    evidence about how configs differ).

    xs, ys: ``xs[c][s]`` = one number per config and seed (e.g. a run's final bound). Each config is averaged
    over its finite seeds (nanmean; a config with no finite x or y is dropped, counted in ``detail``); ``value``
    = Spearman of the config means. p: two-sided, exact over all permutations of the configs when C! <=
    ``exact_max``, else Monte Carlo ``(1 + hits) / (1 + n_perm)``. ``per_seed`` = each seed's own Spearman across
    configs (reproducibility, described; the verdict asks the seeds to agree in sign, all but one; nan for a seed
    with fewer than 3 finite configs); ``per_unit``
    = the config means of y. No interval: the configs are a designed grid, not draws from a population, so no
    population coefficient exists for an interval to cover (said in ``detail``). When no arrangement of the
    configs can reach ``alpha`` (two-sided exact: p >= 2 / C!, so fewer than 5 configs at 0.05) it is a
    description, never counted: the data cannot test it.
    """
    sign = check_sign(expected_sign)
    xs, n_seeds = _config_seed_grid(xs, "xs")
    ys, n_seeds_y = _config_seed_grid(ys, "ys")
    if len(xs) != len(ys) or n_seeds != n_seeds_y:
        raise ValueError(f"xs and ys must have the same configs and seeds: {len(xs)}x{n_seeds} != "
                         f"{len(ys)}x{n_seeds_y}")
    X, Y = onp.array(xs, dtype=float), onp.array(ys, dtype=float)  # (C, S)
    mx, my = _finite_row_means(X), _finite_row_means(Y)
    keep = onp.isfinite(mx) & onp.isfinite(my)
    text = []
    if (~keep).any():
        text.append(f"{int((~keep).sum())} config(s) dropped with no finite seed")
    n_nonfinite = int((~onp.isfinite(X[keep])).sum() + (~onp.isfinite(Y[keep])).sum())
    if n_nonfinite:
        text.append(f"{n_nonfinite} non-finite value(s) left out of their config's mean")
    mx, my = mx[keep], my[keep]
    per_seed = [_seed_spearman(X[keep, s], Y[keep, s]) for s in range(n_seeds)]
    used = [v for v in per_seed if math.isfinite(v)]
    stat_name = f"spearman({x_name}, {y_name}) over config means"
    n_cfg = len(mx)
    base = (f"{n_cfg} configs x {n_seeds} seeds, configs the units: value = Spearman of the seed-averaged "
            f"configs; per seed: each seed's Spearman across configs (reproducibility, described)")
    if n_cfg < 3 or is_constant(mx) or is_constant(my):
        text.insert(0, "fewer than 3 configs or a constant config mean: no test")
        return Claim(figure, statement, stat_name, float("nan"), n_seeds, "positive" if sign > 0 else "negative",
                     "n/a", per_seed, base + "; " + "; ".join(text), alpha=alpha, n_points=n_cfg, kind="claim",
                     expected_sign=sign, per_unit=[float(v) for v in my])
    value = float(scipy_stats.spearmanr(mx, my)[0])
    p, method, p_min = rank_permutation_test(scipy_stats.rankdata(mx), scipy_stats.rankdata(my), n_perm, seed, exact_max)
    counted = p_min < alpha
    if not counted:  # no arrangement of these configs reaches alpha: the data cannot test it (DESIGN: not counted)
        text.insert(0, f"a description, not a test: the smallest p {n_cfg} configs allow is {p_min:.3g} >= alpha, "
                       "so it could not hold however strong the effect")
    text.append("no ci: the configs are a designed grid, not draws from a population, so there is no population "
                "coefficient for an interval to cover")
    detail = f"{base}; p: permutation test over configs, {method}; " + "; ".join(text)
    return Claim(figure, statement, stat_name, value, n_seeds, "positive" if sign > 0 else "negative",
                 verdict_of(value, used, p, sign, alpha), per_seed, detail, p_value=p, alpha=alpha,
                 n_points=n_cfg, kind="claim" if counted else "description", expected_sign=sign,
                 per_unit=[float(v) for v in my], data=[(mx, my)])


SEEDS_AS_REPLICATES = ("a description, not counted: each seed's Spearman across the sweep, p from the stratified "
                       "permutation test; it counts the seeds as replicates of the same configs, so a fixed, "
                       "unrelated config effect repeated in every seed looks like evidence (tests/test_claims.py); "
                       "the counted test of the same statement takes the configs as the units")


def seeds_as_replicates(claim):
    """A within-seed ``rank_correlation_claim`` across a sweep shown as the description of a configs-as-units claim:
    each seed's reproducibility of the ranking, never counted. In place (statement, statistic, kind and
    detail changed; ``value``, ``per_seed`` and ``p_value`` kept, the p said in ``detail``); returns ``claim``."""
    claim.statement += " (each seed alone)"
    claim.statistic = "per-seed " + claim.statistic
    claim.kind, claim.verdict = "description", "n/a"
    claim.detail = f"{SEEDS_AS_REPLICATES}; p {fmt_p(claim.p_value)}; " + claim.detail
    return claim


def derived(claim, from_what):
    """Mark ``claim`` as restating other claims of its table (``from_what`` says which): shown, never counted."""
    claim.kind, claim.derived_from = "derived", from_what
    return claim


def _node(values):
    """The identity of a variable: its data, every seed's values (nan where missing), as bytes."""
    return b"|".join(onp.asarray(v, dtype=float).tobytes() for v in values)


def _perfect(c):
    """True when claim ``c`` is a rank correlation of +-1 in every seed (all points finite): its two variables
    rank identically, or oppositely, in every seed."""
    if not c.data or not all(onp.isfinite(x).all() and onp.isfinite(y).all() for x, y in c.data):
        return False
    coefs = [spearman(x, y) for x, y in c.data]
    return all(math.isfinite(r) and abs(abs(r) - 1) < 1e-12 for r in coefs)


def _rank_sign(u, v):
    """+1 or -1 when the per-seed series ``u`` and ``v`` (lists of arrays) have the same missing points and
    rank alike (+1) or oppositely (-1) in every seed, with one sign for all seeds; else 0."""
    signs = set()
    if len(u) != len(v):
        return 0
    for a, b in zip(u, v):
        a, b = onp.asarray(a, dtype=float), onp.asarray(b, dtype=float)
        if a.shape != b.shape or not onp.array_equal(onp.isfinite(a), onp.isfinite(b)):
            return 0
        ok = onp.isfinite(a)
        ra, rb = scipy_stats.rankdata(a[ok]), scipy_stats.rankdata(b[ok])
        if onp.array_equal(ra, rb):
            signs.add(1)
        elif onp.array_equal(ra, len(ra) + 1 - rb):
            signs.add(-1)
        else:
            return 0
    return signs.pop() if len(signs) == 1 else 0


def _copy_sign(c, prior):
    """+-1 when claim ``c`` shares a variable (by data) with ``prior`` and its other variable ranks as the
    prior's other one does in every seed (one sign), so that its numbers are the prior's up to that sign."""
    xa, ya = [x for x, _ in c.data], [y for _, y in c.data]
    xb, yb = [x for x, _ in prior.data], [y for _, y in prior.data]
    pairs = ((xa, xb, ya, yb), (ya, yb, xa, xb), (xa, yb, ya, xb), (ya, xb, xa, yb))
    for same1, same2, other1, other2 in pairs:
        if _node(same1) == _node(same2):
            sign = _rank_sign(other1, other2)
            if sign:
                return sign
    return 0


def _where(c):
    """Where a claim's variables are compared: over the config means (a claim across configs) or in every seed."""
    return "over the config means" if len(c.data) == 1 and c.per_unit else "in every seed"


def mark_forced(claims):
    """Mark as derived the counted claims whose numbers the other counted claims force, computed from the data
    (never from the metrics' names); in place, returns ``claims``. In table order:

    1. a claim that is +-1 in every seed links its two variables (they rank identically, or oppositely, in every
       seed). A claim whose two variables are already linked through earlier such claims is forced to +-1
       (e.g. GC -> NC when value -> GC and value -> NC are both +-1); a claim whose two variables are linked,
       through such claims, to those of an earlier counted claim is forced to equal it, up to sign (e.g. GCol ->
       NC equals GC -> GCol there). Variables are identified by their data.
    2. a claim that shares a variable (by data) with an earlier counted claim while its other variable ranks as
       the earlier one's does in every seed (or oppositely, in every seed) has exactly the earlier claim's
       numbers (up to that sign): a copy (e.g. across runs, when the GCol ranks the runs as the GC bound does).
       For a claim across configs the data are the config means: the same ranking of the means is the same
       test (value and p), whatever the seeds' own coefficients. So for a sweep's configs-as-units claims (one
       "seed": the value means) 1. reads "+-1 over the config means" and forces alike.
       Claims that are +-1 in every seed are left to 1. (two perfect results on different variables are two
       observations).

    Claims without data (built by hand) are left as they are.
    """
    parent = {}

    def find(k):
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    counted = [c for c in claims if c.kind == "claim" and c.data and c.p_value is not None]
    nodes = {id(c): (_node([x for x, _ in c.data]), _node([y for _, y in c.data])) for c in counted}
    perfect = {id(c): _perfect(c) for c in counted}
    links = {}
    for c in counted:  # 1a: the links, in order
        a, b = nodes[id(c)]
        if not perfect[id(c)] or a == b:
            continue
        ra, rb = find(a), find(b)
        if ra == rb:
            derived(c, f"forced to +-1: its two variables rank alike {_where(c)} through the +-1 claims "
                       + "; ".join(f"'{s}'" for s in links.get(ra, [])))
            continue
        parent[ra] = rb
        links[rb] = links.pop(rb, []) + links.pop(ra, []) + [c.statement]
    seen = {}
    kept = []
    for c in counted:  # 1b: the pairs of linked classes
        if c.kind != "claim":
            continue
        a, b = nodes[id(c)]
        ra, rb = find(a), find(b)
        if not perfect[id(c)]:
            if ra == rb and a != b:
                derived(c, f"forced to +-1: its two variables rank alike {_where(c)} through the +-1 claims "
                           + "; ".join(f"'{s}'" for s in links.get(ra, [])))
                continue
            pair = frozenset((ra, rb))
            if pair in seen:
                first = seen[pair]
                derived(c, f"forced to equal +-'{first.statement}' {_where(c)}: their variables rank alike "
                           "through the +-1 claims " + "; ".join(f"'{s}'" for r in pair for s in links.get(r, [])))
                continue
            seen[pair] = c
        kept.append(c)
    for i, c in enumerate(kept):  # 2: exact copies
        if perfect[id(c)]:
            continue
        for prior in kept[:i]:
            if prior.kind != "claim" or perfect[id(prior)]:
                continue
            sign = _copy_sign(c, prior)
            if sign:
                how = "alike" if sign > 0 else "oppositely"
                if len(c.data) == 1 and c.per_unit:  # a claim across configs: its data are the config means
                    derived(c, f"a copy: {'the' if sign > 0 else 'minus the'} value and p of '{prior.statement}' "
                               f"(they share a variable and the other two config means rank {how})")
                else:
                    derived(c, f"a copy: {'exactly' if sign > 0 else 'minus'} the per-seed numbers of "
                               f"'{prior.statement}' (they share a variable and the other two rank {how} in every "
                               "seed)")
                break
    return claims


def judge(claims):
    """Benjamini-Hochberg q-values over the counted claims (``kind == "claim"`` with a p-value) of one figure,
    and their verdicts on q (``scipy.stats.false_discovery_control``); in place, returns ``claims``.

    Also ``q_by`` / ``verdict_by``: the Benjamini-Yekutieli q-values (valid under any dependence between the
    claims' tests, where BH assumes independence or positive dependence) and the verdict on them, so a table can
    show which verdicts are marginal."""
    family = [c for c in claims if c.kind == "claim" and c.p_value is not None and math.isfinite(c.p_value)]
    if family:
        ps = [c.p_value for c in family]
        qs = q_values(ps, "bh")
        qby = q_values(ps, "by")
        for c, q, qb in zip(family, qs, qby):
            c.q_value, c.q_by = float(q), float(qb)
            used = [v for v in c.per_seed if v is not None and math.isfinite(v)]
            c.verdict = verdict_of(c.value, used, c.q_value, c.expected_sign, c.alpha, c.ci)
            c.verdict_by = verdict_of(c.value, used, c.q_by, c.expected_sign, c.alpha, c.ci)
    return claims




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
        b, v = finite_pairs(b, v)
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

