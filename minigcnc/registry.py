"""The figures of the package: one table that ``python -m minigcnc`` lists, ``python -m minigcnc.reproduce``
runs (in this order) and ``python -m minigcnc.bench.floor`` times.

- ``FIGURES``: name -> (module, extra command-line arguments, what it shows); ``figure4_digits`` is the module
  ``figure4`` with ``--split digits``, ``figure4_swapped`` with ``--split swapped``.
- ``figure_module(name)``: the module of a figure (the one place that imports a figure by its name).
- ``figure_configs(name, scale)``: every run of a figure, ``configs(scale, **options)`` with the figure's extra
  arguments as options. Every figure module has ``configs(scale, *, seeds=None, backend=None, data_root=None,
  **options)``: the flat list of its runs (``RunConfig``).
"""
import importlib

# name -> (module, extra arguments, what it shows), in the order python -m minigcnc.reproduce runs them
FIGURES = {
    "figure3": ("figure3", [], "bounds on the nearest-class-centre test error over training, and whether each "
                               "tracks it beyond the shared trend (paper Fig. 3)"),
    "figure2": ("figure2", [], "cheap GC estimators against the exact GC over training (paper Fig. 2)"),
    "figure1": ("figure1", [], "learning rate, batch size and L2 lower GC, geometric collapse and NC (paper Fig. 1)"),
    "figure_flatness": ("figure_flatness", [], "do a larger learning rate and a smaller batch end flatter, and flatter "
                                               "ends with lower GC? (Figure 1's and the convnet appendix's runs; "
                                               "issue 29)"),
    "figure_gc_regularization": ("figure_gc_regularization", [], "an explicit GC penalty lowers GC and NC (appendix)"),
    "figure4": ("figure4", [], "lower source GC gives lower target NC and better few-shot transfer (paper Fig. 4)"),
    "figure4_digits": ("figure4", ["--split", "digits"], "Figure 4 on 5 source / 5 target digits"),
    "figure_nc_levels": ("figure_nc_levels", [], "NC on source train, source test and unseen classes against source "
                                                 "GC (Figure 4's runs; issue 29)"),
    "figure4_swapped": ("figure4", ["--split", "swapped"], "Figure 4 replicated with source and target digits "
                                                           "swapped (rotated digits 5-9 -> rotated digits 0-4)"),
    "figure_mnist": ("figure_mnist", [], "Figure 1's sweeps on a convolutional net (appendix)"),
    "figure_layers": ("figure_layers", [], "per-layer NC1 (law of data separation), per-layer GC and transfer of a "
                                           "deep MLP, against its untrained network (issue 29)"),
}


def figure_module(name):
    """The module of figure ``name``: a key of ``FIGURES`` or a figure module's own name (``"figure1"``)."""
    module = FIGURES[name][0] if name in FIGURES else name
    return importlib.import_module(f"minigcnc.{module}")


def options_of(extra):
    """The keyword options of ``configs`` that a figure's extra arguments give: ``["--split", "digits"]`` ->
    ``{"split": "digits"}``."""
    return {flag.lstrip("-").replace("-", "_"): value for flag, value in zip(extra[::2], extra[1::2])}


def figure_configs(name, scale, **kwargs):
    """Every run of figure ``name`` at ``scale`` (a run shared by two sweeps appears in each), with the
    figure's extra arguments applied; ``kwargs``: ``seeds``, ``backend``, ``data_root``."""
    module, extra, _ = FIGURES[name]
    return figure_module(module).configs(scale, **options_of(extra), **kwargs)
