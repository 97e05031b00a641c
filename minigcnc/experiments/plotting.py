"""Shared matplotlib style and panels: curves over training with a band over seeds, sweep colours, sweep rows.

Every figure draws the same way: a line is the mean over seeds, its faint band the min-max over seeds, and
in a sweep row the min-max of the final values (what the claim tables compare) also as one bar per swept
value, side by side right of the last evaluation, so that the seeds' spread of each value stays readable
where the bands of neighbouring values overlap (``draw_sweep_row``). ``band_words`` says so in a title, and
names the x of a diverged run only when a run diverged.

Headless by default (the Agg backend is selected unless one is already set up).
"""
import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    try:
        matplotlib.use("Agg")
    except Exception:  # pragma: no cover - an interactive backend already in use
        pass
import matplotlib.pyplot as plt  # noqa: E402
import numpy as onp  # noqa: E402

from .history import final, series  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "axes.spines.top": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
}


def style():
    """Apply the house style."""
    plt.rcParams.update(STYLE)


def sweep_colors(n, cmap="viridis"):
    """n colours ordered along a colormap (first = lowest swept value in the plotting order)."""
    return [plt.get_cmap(cmap)(x) for x in onp.linspace(0.05, 0.9, max(n, 1))]


BANDS = {"minmax": "min-max over seeds", "sem": "+-1 standard error of the mean over seeds"}


def mean_band(histories, metric, band="minmax"):
    """(steps, mean, low, high) of ``metric`` over seeds, on the steps every run shares; the band is the
    min-max over seeds (``band="minmax"``) or the mean +- one standard error (``"sem"``).

    Diverged runs end early; the curve is drawn over the steps all finished runs reached.
    """
    curves = [series(h, metric) for h in histories if h["evals"]]
    if not curves:
        return onp.array([]), onp.array([]), onp.array([]), onp.array([])
    n = min(len(s) for s, _ in curves)
    steps = curves[0][0][:n]
    vals = onp.stack([v[:n] for _, v in curves])
    if band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)}; got {band!r}")
    with onp.errstate(all="ignore"):
        m = onp.nanmean(vals, 0)
        if band == "sem":
            se = onp.nanstd(vals, 0, ddof=1) / onp.sqrt(onp.sum(onp.isfinite(vals), 0))
            return steps, m, m - se, m + se
        return steps, m, onp.nanmin(vals, 0), onp.nanmax(vals, 0)


BAND_ALPHA = {"solo": 0.18, "overlapping": 0.08}  # a band alone in its panel; bands of the values of a sweep


def plot_band(ax, histories, metric, color, label=None, ls="-", marker=None, lw=1.6, band="minmax", alpha=0.18,
              dodge=0.0):
    """Draw the mean of ``metric`` over seeds with a band (``mean_band``, fill opacity ``alpha``); mark diverged
    runs with an x. A metric recorded at some evaluations only is drawn as points with bars, shifted ``dodge``
    steps so that the bars of neighbouring curves at the same step stand apart."""
    steps, m, lo, hi = mean_band(histories, metric, band)
    recorded = onp.isfinite(m)
    if not recorded.any():
        return None
    if not recorded.all():  # a metric recorded at some evaluations only (e.g. the first and last): those points,
        # joined by a dotted line (nothing was measured between them), each with its band as a bar
        steps, m, lo, hi = steps[recorded] + dodge, m[recorded], lo[recorded], hi[recorded]
        (line,) = ax.plot(steps, m, color=color, label=label, ls=":", marker=marker or "o", lw=lw, ms=4)
        if len(histories) > 1:
            ax.errorbar(steps, m, yerr=[m - lo, hi - m], fmt="none", ecolor=color, elinewidth=1.2, capsize=3)
        return line
    (line,) = ax.plot(steps, m, color=color, label=label, ls=ls, marker=marker, lw=lw, ms=3)
    if len(histories) > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=alpha, lw=0)
    for h in histories:
        if h["status"] == "diverged" and h["evals"]:
            s, v = series(h, metric)
            ax.plot(s[-1:], v[-1:], "x", color=color, ms=7, mew=2)
    return line


def final_spread(histories, metric):
    """(last step, mean, min, max) of the final values of ``metric`` over the finished runs (``history.final``):
    what a claim table compares; None when no finished run has a finite final value."""
    runs = [h for h in histories if h["status"] == "finished" and h["evals"]]
    vals = onp.array([final(h, metric) for h in runs], dtype=float)
    ok = onp.isfinite(vals)
    if not ok.any():
        return None
    last = max(int(h["evals"][-1]["step"]) for h in runs)
    return last, float(vals[ok].mean()), float(vals[ok].min()), float(vals[ok].max())


def draw_final_bars(ax, histories_per_value, metric, colors, gap=0.035):
    """One bar per swept value from the min to the max of its final values over seeds, a dot at their mean,
    side by side right of the last evaluation (``gap`` of the x-range apart, in the sweep's order): the
    seeds' spread at the end, readable where the bands overlap. Draws nothing for a value with one run, nor
    for a metric recorded at some evaluations only (``plot_band`` gives each of its points its own bar)."""
    sparse = any(not onp.isfinite(series(h, metric)[1]).all() for hs in histories_per_value for h in hs)
    spreads = [final_spread(hs, metric) if len(hs) > 1 and not sparse else None for hs in histories_per_value]
    if not any(spreads):
        return []
    last = max(s[0] for s in spreads if s)
    drawn = []
    for i, (s, color) in enumerate(zip(spreads, colors)):
        if s is None:
            continue
        x = last * (1 + gap * (i + 1))
        drawn.append(ax.errorbar([x], [s[1]], yerr=[[s[1] - s[2]], [s[3] - s[1]]], fmt="o", color=color, ms=2.5,
                                 elinewidth=1.6, capsize=2.0))
    return drawn


def any_diverged(histories):
    """True when one of ``histories`` (a flat list, or nested lists of them) ended diverged."""
    if isinstance(histories, dict):
        return histories.get("status") == "diverged"
    return any(any_diverged(h) for h in histories)


def band_words(band="minmax", diverged=False, bars=False, n_seeds=None):
    """The words a title gives the drawing: lines (the mean over ``n_seeds`` seeds, when given), bands
    (``BANDS[band]``), the final bars when drawn (``draw_final_bars``) and, only when a run diverged, the x that
    marks it."""
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}" if n_seeds else "seeds"
    words = f"lines = mean over {seeds}, bands = {BANDS[band]}"
    if bars:
        words += ", bars at the right = min-max of the final values"
    return words + ("; x = a diverged run" if diverged else "")


def fmt_value(v):
    """Short label for a swept value (0, 1e-4, 0.05, 128; "tanh", (64, 32) for values that are not numbers)."""
    if isinstance(v, (list, tuple)):
        return "-".join(fmt_value(x) for x in v)
    if isinstance(v, str):
        return v
    if isinstance(v, (int, onp.integer)):
        return str(int(v))
    if v == 0:
        return "0"
    return f"{v:.0e}" if abs(v) < 1e-3 else f"{v:g}"


def after_init(histories):
    """The histories without their step-0 evaluation (the untrained network), for panels where that first
    point, one to two orders of magnitude above the rest, would flatten the differences the figure is about."""
    return [{**h, "evals": [e for e in h["evals"] if e["step"] > 0]} for h in histories]


def step0_mean(histories, metric):
    """The mean over runs of ``metric`` at step 0 (nan when no run has it)."""
    vals = [e.get(metric, onp.nan) for h in histories for e in h["evals"][:1] if e["step"] == 0]
    with onp.errstate(all="ignore"):
        return float(onp.nanmean(vals)) if vals else float("nan")


def log_axis(ax):
    """A log y-axis labelled with plain numbers (2, 5, 10, 20, ...) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def draw_sweep_row(axes, values, hist, label, metrics, clip=("gcol", "nc_train"), log=(), band="minmax"):
    """One row of panels (one per metric): a curve per swept value, mean over seeds with a faint band
    (``mean_band``), and the min-max of the final values as bars right of the last step (``draw_final_bars``).

    ``values`` in sweep order and ``hist`` = [[history per value] per seed]; colours follow that order.
    A diverged run is drawn alone up to its last evaluation and marked with an x. The metrics in ``clip``
    are drawn from the first evaluation after step 0 on (``after_init``; the step-0 mean is given in the
    x-label), those in ``log`` on a log axis. The legend sits right of the row.
    """
    colors = sweep_colors(len(values), "plasma")
    last = max((int(h["evals"][-1]["step"]) for hs in hist for h in hs if h["evals"]), default=0)
    for ax, (metric, mlabel) in zip(axes, metrics):
        per_value = []
        for i, (v, col) in enumerate(zip(values, colors)):
            dodge = (i - (len(values) - 1) / 2) * 0.015 * last  # (points with bars only: a metric of some steps)
            runs = [hs[i] for hs in hist]
            runs = after_init(runs) if metric in clip else runs
            ok = [h for h in runs if h["status"] == "finished"]
            bad = [h for h in runs if h["status"] != "finished"]
            name = f"{fmt_value(v)}" + (f" ({len(bad)} diverged)" if bad else "")
            line = plot_band(ax, ok, metric, col, label=name, band=band, alpha=BAND_ALPHA["overlapping"],
                             dodge=dodge) if ok else None
            for h in bad:
                plot_band(ax, [h], metric, col, label=None if line else name, ls=":", lw=1.0)
                line = True
            per_value.append(ok)
        draw_final_bars(ax, per_value, metric, colors)
        if metric in log:
            log_axis(ax)
        xlabel = "training iteration"
        if metric in clip:
            xlabel += f" (step 0, off the axis: {step0_mean([h for hs in hist for h in hs], metric):.3g})"
        ax.set_xlabel(xlabel)
        ax.set_ylabel(mlabel)
    axes[-1].legend(title=label, loc="center left", bbox_to_anchor=(1.02, 0.5))
