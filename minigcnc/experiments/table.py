"""The claim table as plain text: whole statements wrapped (never cut), numbers with the digits they need.

``claim_table(claims)`` prints the counted claims, then the derived claims, descriptions and checks, and a last
line counting the verdicts of the counted claims only (``summary_line``, ``verdict_counts``); ``print_table``
is what every figure's ``main`` ends with. The number formats (``fmt_sig``, ``fmt_row``, ``fmt_interval``,
``fmt_p``) and the column layout (``text_table``) serve the figures' own tables too.
"""
import math
import textwrap

from .stats import VERDICTS, finite_or_none

def verdict_counts(claims):
    """{verdict: count} over the claims of ``kind == "claim"`` only (derived claims, descriptions and checks
    never count)."""
    counts = {v: 0 for v in VERDICTS}
    for c in claims:
        if getattr(c, "kind", "claim") == "claim":
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return counts


def _fmt(x, spec):
    return "nan" if x is None or not math.isfinite(float(x)) else format(float(x), spec)


MAX_DECIMALS = 6  # a number smaller than this many decimals can show is written in e-notation


def decimals_for(magnitude, sig, least):
    """How many decimals show ``magnitude`` with ``sig`` significant digits, and never fewer than ``least``;
    None when that takes more than ``MAX_DECIMALS`` (e-notation then). 0 and non-finite magnitudes: ``least``."""
    if not magnitude or not math.isfinite(magnitude):
        return least
    d = sig - 1 - math.floor(math.log10(abs(magnitude)))
    return max(least, d) if d <= MAX_DECIMALS else None


def fmt_sig(x, sig=2, least=3, sign="+"):
    """``x`` with the digits it needs: at least ``least`` decimals, more until it shows ``sig`` significant
    digits (``+0.669``, ``+0.0021`` where fixed decimals would print ``+0.002``); ``"nan"`` for none."""
    if finite_or_none(x) is None:
        return "nan"
    d = decimals_for(abs(float(x)), sig, least)
    return format(float(x), f"{sign}.{sig - 1}e" if d is None else f"{sign}.{d}f")


def fmt_row(values, sig=2, least=2, sign="+"):
    """Numbers read side by side (a claim's per-seed values, an interval's ends) with one number of decimals:
    enough for the largest to show ``sig`` significant digits, at least ``least`` (``+0.83 +0.45``;
    ``+0.0012 +0.0034`` where two decimals would print ``+0.00 +0.00``); ``"nan"`` for a missing value."""
    top = max((abs(float(v)) for v in values if finite_or_none(v) is not None), default=0.0)
    d = decimals_for(top, sig, least)
    spec = f"{sign}.{sig - 1}e" if d is None else f"{sign}.{d}f"
    return ["nan" if finite_or_none(v) is None else format(float(v), spec) for v in values]


def fmt_interval(lo, hi, sig=2, least=2, sign="+"):
    """``[lo, hi]`` with one number of decimals, enough for the larger end *and* the width to show ``sig``
    significant digits (an interval's ends never print equal when they differ); ``"-"`` when it has none."""
    if finite_or_none(lo) is None and finite_or_none(hi) is None:
        return "-"
    ends = [float(v) for v in (lo, hi) if finite_or_none(v) is not None]
    d = decimals_for(max(abs(v) for v in ends), sig, least)
    width = abs(ends[-1] - ends[0]) if len(ends) == 2 else 0.0
    dw = decimals_for(width, sig, least)
    d = None if d is None or dw is None else max(d, dw)
    spec = f"{sign}.{sig - 1}e" if d is None else f"{sign}.{d}f"
    return "[" + ", ".join("nan" if finite_or_none(v) is None else format(float(v), spec) for v in (lo, hi)) + "]"


def fmt_p(p):
    """A p- or q-value as the tables print it: 3 decimals, or 2 significant digits below 0.001; "-" for none."""
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


def text_table(header, rows, widths):
    """Rows of cells as plain text lines under ``header``, each column wrapped at its width (never cut)."""
    return _block(header, rows, widths)


def summary_line(claims, scale=None):
    """The table's last line: the verdict counts of the counted claims, and what is shown but not counted."""
    claims = list(claims)
    counts = verdict_counts(claims)
    n = sum(counts.values())
    parts = [f"{counts[v]} {v}" for v in VERDICTS] + [f"{k} {v}" for v, k in counts.items() if v not in VERDICTS and k]
    apart = [(sum(c.kind == kind for c in claims), word) for kind, word in
             (("derived", "derived"), ("description", "description"), ("check", "check"))]
    apart = [f"{m} {w}{'s' if m != 1 and w != 'derived' else ''}" for m, w in apart if m]
    line = f"{n} claim{'s' if n != 1 else ''}: " + ", ".join(parts) + (f" ({', '.join(apart)} not counted)" if apart else "")
    if scale == "tiny":
        line = "PLUMBING CHECK at tiny scale, the verdicts mean nothing: " + line
    return line


def by_note(claims):
    """Lines naming the counted claims whose verdict changes under Benjamini-Yekutieli (``judge``'s ``q_by``)."""
    judged = [c for c in claims if getattr(c, "verdict_by", None) is not None]
    if not judged:
        return []
    changed = [c for c in judged if c.verdict_by != c.verdict]
    head = (f"Under Benjamini-Yekutieli (any dependence between the tests; BH assumes independent or positively "
            f"dependent ones): {len(changed)} of {len(judged)} verdicts change")
    return ["", head + (":" if changed else ".")] + [
        f"  - {c.statement}: {c.verdict} -> {c.verdict_by} (q_BY {fmt_p(c.q_by)})" for c in changed]


def claim_table(claims, width=46, scale=None, data=None):
    """The counted claims, then derived claims, descriptions and checks, as plain text; whole statements,
    wrapped (never cut).

    Claims: statement, statistic, value (mean per-seed coefficient, or the seed-pairing contrast), 95% CI
    (where one is given), p (permutation test), q (Benjamini-Hochberg over the figure's claims), per seed
    (every seed), verdict (on q). Numbers carry the digits they need (``fmt_sig``, ``fmt_row``,
    ``fmt_interval``): at least 3 decimals for a value and 2 for per-seed values and intervals, more until the
    largest shows 2 significant digits. The last line counts the verdicts of the counted claims only; at
    ``scale="tiny"`` the header and that line say the table is a plumbing check, on ``data`` (the datasets'
    names, when given).
    """
    claims = list(claims)

    def seeds(c, sign="+"):
        return " ".join(fmt_row(c.per_seed, sign=sign))

    def ci(c, sign="+"):
        lo, hi = (list(c.ci) + [None, None])[:2] if c.ci is not None else (None, None)
        return fmt_interval(lo, hi, sign=sign)

    lines = []
    if scale == "tiny":
        lines += [f"PLUMBING CHECK: tiny scale trains short runs on {data or 'small data'} to test the code; its "
                  "verdicts mean nothing about the paper (use the default laptop scale).", ""]
    of = lambda kind: [c for c in claims if getattr(c, "kind", "claim") == kind]  # noqa: E731
    header = ("claim", "statistic", "value", "95% CI", "p", "q", "per seed", "verdict")
    rows = [(c.statement, c.statistic, fmt_sig(c.value), ci(c), fmt_p(c.p_value), fmt_p(c.q_value), seeds(c),
             c.verdict) for c in of("claim")]
    if rows:
        lines += _block(header, rows, (width, 30, 6, 16, 7, 7, 30, 12))
    else:
        lines += ["No counted claims: what this figure shows at this scale is below, as descriptions or checks."
                  if claims else "No claims."]
    lines += by_note(of("claim"))
    if of("derived"):
        lines += ["", "Derived claims (restate claims above, so not counted; verdict on p)"]
        rows = [(c.statement, c.derived_from, fmt_sig(c.value), fmt_p(c.p_value), seeds(c), c.verdict)
                for c in of("derived")]
        lines += _block(("derived claim", "follows from", "value", "p", "per seed", "verdict"), rows,
                        (width, 36, 6, 7, 30, 12))
    if of("description"):
        lines += ["", "Descriptions (not tests: shown to be seen, never counted)"]
        rows = [(c.statement, c.statistic, fmt_sig(c.value), seeds(c)) for c in of("description")]
        lines += _block(("description", "statistic", "value", "per seed"), rows, (width, 40, 6, 30))
    if of("check"):
        lines += ["", "Checks (not evidence: they catch bugs in the code or test an assumption of a bound; "
                      "'by construction' = a mathematical inequality)"]
        rows = []
        for c in of("check"):
            n = c.n_points or 0
            fraction = c.statistic.startswith("fraction(") and n and finite_or_none(c.value) is not None
            value = _fmt(c.value, ".3f" if fraction or abs(float(c.value if finite_or_none(c.value) is not None else 0)) < 1e3
                         else ".3g") + (f" ({round(c.value * n)}/{n})" if fraction else "")
            rows.append((c.statement, c.statistic, "by construction" if c.by_construction else "measured", value,
                         ci(c, ""), seeds(c, ""), c.verdict))
        lines += _block(("check", "statistic", "type", "value", "95% CI", "per seed", "verdict"), rows,
                        (width, 30, 15, 16, 16, 30, 7))
    lines += ["", summary_line(claims, scale)]
    return "\n".join(lines)


def print_table(claims, scale=None, configs=()):
    """Print ``claim_table(claims)`` on stdout, its plumbing banner at ``scale="tiny"`` naming the datasets of
    ``configs`` (``RunConfig``s or their dicts; ``data_names``): the end of every figure's ``main``."""
    print(claim_table(claims, scale=scale, data=data_names(configs)))


def data_names(configs):
    """The datasets that ``configs`` (``RunConfig``s or their dicts) train and transfer to, as the command line
    names them: ``"digits"``, ``"digits_rot"``, ``"digits and gaussians"``, ``"fashion_mnist -> mnist5k"``;
    None when there are no configs (for ``claim_table``'s plumbing banner)."""
    dicts = [c if isinstance(c, dict) else c.to_dict() for c in configs]
    names = sorted({c["dataset"] + (f" -> {c['target_dataset']}" if c.get("target_dataset") else "")
                    for c in dicts if c.get("dataset")})
    return " and ".join(names) or None
