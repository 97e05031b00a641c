"""The paper's claims as measured statements: a statistic, how many seeds it rests on, and a verdict.

Each figure builds a list of ``Claim``s from its runs, prints ``claim_table(claims)`` and stores
``[c.to_dict() for c in claims]`` in its JSON. Statistics:

- ``spearman(x, y)``: Spearman rank correlation (Pearson correlation of average ranks), in [-1, 1];
- ``rank_correlation_claim``: the sign of a rank correlation across a sweep, per seed and pooled;
- ``fraction_above_claim``: how often a bound stays at or above the quantity it bounds;
- ``correlation_claim``: a Pearson correlation over training (does a bound track an error?).

Verdicts: ``holds`` (the expected sign or inequality in every seed, or the pooled statistic past its
threshold with most seeds agreeing), ``fails`` (the opposite), ``mixed`` (seeds disagree),
``n/a`` (not enough data, e.g. every run diverged).
"""
from dataclasses import asdict, dataclass, field

import numpy as onp


def ranks(x):
    """Average ranks of x (ties share the mean of their positions), 1-based."""
    x = onp.asarray(x, dtype=float)
    order = onp.argsort(x, kind="mergesort")
    r = onp.empty(len(x))
    r[order] = onp.arange(1, len(x) + 1)
    for v in onp.unique(x):
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def pearson(x, y):
    """Pearson correlation of x and y; nan when either is constant or fewer than 2 finite pairs."""
    x, y = onp.asarray(x, dtype=float), onp.asarray(y, dtype=float)
    ok = onp.isfinite(x) & onp.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or onp.std(x) == 0 or onp.std(y) == 0:
        return float("nan")
    return float(onp.corrcoef(x, y)[0, 1])


def spearman(x, y):
    """Spearman rank correlation of x and y (finite pairs only)."""
    x, y = onp.asarray(x, dtype=float), onp.asarray(y, dtype=float)
    ok = onp.isfinite(x) & onp.isfinite(y)
    return pearson(ranks(x[ok]), ranks(y[ok]))


@dataclass
class Claim:
    """One measured claim: ``statement`` in words, ``statistic`` (its name) = ``value`` over ``n_seeds``."""

    figure: str
    statement: str
    statistic: str
    value: float
    n_seeds: int
    expected: str
    verdict: str
    per_seed: list = field(default_factory=list)
    detail: str = ""

    def to_dict(self):
        d = asdict(self)
        d["value"] = None if not onp.isfinite(self.value) else float(self.value)
        d["per_seed"] = [None if (v is None or not onp.isfinite(v)) else float(v) for v in self.per_seed]
        return d


def _sign_verdict(per_seed, pooled, sign, threshold=0.0):
    vals = [v for v in per_seed if v is not None and onp.isfinite(v)]
    if not vals and not onp.isfinite(pooled):
        return "n/a"
    agree = [sign * v > threshold for v in vals]
    if vals and all(agree):
        return "holds"
    if vals and not any(sign * v > -threshold for v in vals) and sign * pooled < 0:
        return "fails"
    if sign * pooled > threshold and sum(agree) > len(vals) / 2:
        return "holds (most seeds)"
    if sign * pooled < 0 and sum(agree) < len(vals) / 2:
        return "fails"
    return "mixed"


def rank_correlation_claim(figure, statement, xs_per_seed, ys_per_seed, expected_sign, x_name, y_name):
    """Spearman correlation between x and y across a sweep, per seed and pooled, against an expected sign.

    xs_per_seed, ys_per_seed: lists (one per seed) of equally long sequences (one entry per swept value);
    non-finite entries (diverged runs) are dropped pairwise.
    """
    per_seed = [spearman(x, y) for x, y in zip(xs_per_seed, ys_per_seed)]
    pooled_x = onp.concatenate([onp.asarray(x, float) for x in xs_per_seed]) if xs_per_seed else onp.array([])
    pooled_y = onp.concatenate([onp.asarray(y, float) for y in ys_per_seed]) if ys_per_seed else onp.array([])
    pooled = spearman(pooled_x, pooled_y) if len(pooled_x) > 1 else float("nan")
    verdict = _sign_verdict(per_seed, pooled, 1 if expected_sign > 0 else -1)
    exp = "positive" if expected_sign > 0 else "negative"
    return Claim(figure, statement, f"spearman({x_name}, {y_name})", pooled, len(per_seed), exp, verdict, per_seed,
                 "pooled over seeds; per_seed lists each seed's correlation across the sweep")


def correlation_claim(figure, statement, xs_per_seed, ys_per_seed, x_name, y_name, expected_sign=1):
    """Pearson correlation of two curves over training (e.g. a bound and an error), per seed and pooled."""
    per_seed = [pearson(x, y) for x, y in zip(xs_per_seed, ys_per_seed)]
    pooled = pearson(onp.concatenate([onp.asarray(x, float) for x in xs_per_seed]),
                     onp.concatenate([onp.asarray(y, float) for y in ys_per_seed]))
    verdict = _sign_verdict(per_seed, pooled, expected_sign)
    exp = "positive" if expected_sign > 0 else "negative"
    return Claim(figure, statement, f"pearson({x_name}, {y_name})", pooled, len(per_seed), exp, verdict, per_seed,
                 "over training checkpoints; pooled over seeds")


def fraction_above_claim(figure, statement, bounds_per_seed, values_per_seed, bound_name, value_name):
    """Fraction of (seed, checkpoint) points where bound >= value; holds when it is 1."""
    per_seed = []
    for b, v in zip(bounds_per_seed, values_per_seed):
        b, v = onp.asarray(b, float), onp.asarray(v, float)
        ok = onp.isfinite(b) & onp.isfinite(v)
        per_seed.append(float(onp.mean(b[ok] >= v[ok])) if ok.any() else float("nan"))
    vals = [p for p in per_seed if onp.isfinite(p)]
    frac = float(onp.mean(vals)) if vals else float("nan")
    verdict = "n/a" if not vals else ("holds" if frac == 1.0 else ("fails" if frac == 0.0 else "mixed"))
    return Claim(figure, statement, f"fraction({bound_name} >= {value_name})", frac, len(per_seed), "1.0", verdict,
                 per_seed, "over all checkpoints of each seed")


def claim_table(claims):
    """The claims as a plain-text table (one row each).

    ``value`` is the statistic pooled over seeds, ``per seed`` each seed's own (at most five shown). The
    verdict reads the per-seed values first: a pooled rank correlation mixes the seeds' offsets and can
    disagree in sign with every seed (Simpson's paradox), so "holds" with a pooled value of the other sign is
    possible and means every seed agreed.
    """
    def num(x):
        return "nan" if x is None or not onp.isfinite(x) else f"{x:+.2f}"

    rows = [("claim", "statistic", "value", "per seed", "expected", "verdict")]
    for c in claims:
        v = "nan" if not onp.isfinite(c.value) else f"{c.value:+.3f}"
        seeds = " ".join(num(x) for x in list(c.per_seed)[:5]) + (" ..." if len(c.per_seed) > 5 else "")
        rows.append((c.statement, c.statistic, v, seeds, c.expected, c.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[0] = min(widths[0], 70)
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0][: widths[0]].ljust(widths[0])] + [r[j].ljust(widths[j]) for j in range(1, len(r))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
