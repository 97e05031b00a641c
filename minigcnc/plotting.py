"""Shared matplotlib style and panels: curves over training with a band over seeds, sweep colours.

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

from .runs import series  # noqa: E402

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


def mean_band(histories, metric):
    """(steps, mean, low, high) of ``metric`` over seeds, on the steps every run shares; bands are min-max.

    Diverged runs end early; the curve is drawn over the steps all finished runs reached.
    """
    curves = [series(h, metric) for h in histories if h["evals"]]
    if not curves:
        return onp.array([]), onp.array([]), onp.array([]), onp.array([])
    n = min(len(s) for s, _ in curves)
    steps = curves[0][0][:n]
    vals = onp.stack([v[:n] for _, v in curves])
    with onp.errstate(all="ignore"):
        return steps, onp.nanmean(vals, 0), onp.nanmin(vals, 0), onp.nanmax(vals, 0)


def plot_band(ax, histories, metric, color, label=None, ls="-", marker=None, lw=1.6):
    """Draw the mean of ``metric`` over seeds with a min-max band; mark diverged runs with an x."""
    steps, m, lo, hi = mean_band(histories, metric)
    if len(steps) == 0:
        return None
    (line,) = ax.plot(steps, m, color=color, label=label, ls=ls, marker=marker, lw=lw, ms=3)
    if len(histories) > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    for h in histories:
        if h["status"] == "diverged" and h["evals"]:
            s, v = series(h, metric)
            ax.plot(s[-1:], v[-1:], "x", color=color, ms=7, mew=2)
    return line


def fmt_value(v):
    """Short label for a swept value (0, 1e-4, 0.05, 128)."""
    if isinstance(v, (int, onp.integer)):
        return str(int(v))
    if v == 0:
        return "0"
    return f"{v:.0e}" if abs(v) < 1e-3 else f"{v:g}"
