"""Runs that more than one figure trains, declared once (a figure never imports another figure).

- ``APPENDIX_GRIDS``, ``APPENDIX_SEEDS`` and ``appendix_base(scale)``: the convnet appendix's (``figure_mnist``)
  sweeps, seeds and base run, which records the Hessian trace at tiny and laptop scale (read by
  ``figure_flatness`` too).
- ``training_run(scale)``: the run of Figure 2 (one config, trained longer and evaluated often).
- ``SWEEP_GRIDS`` and ``sweep_base(scale)``: Figure 1's three sweeps and their base run, which records the
  moment bounds (``measure.moment_bounds`` at every evaluation, ``moment_bounds_gc`` at the first and last), the
  Hessian trace (``measure.flatness``, read by ``figure_flatness``) and the AGOP spectrum (``measure.agop``) at
  the first and last. Figure 3 trains the learning-rate and
  batch-size sweeps of the same grids, so ``python -m minigcnc.reproduce`` trains those runs once for both.

Not part of the code hash (no run imports it, ``cache.result_modules``): a preset only fills in a ``RunConfig``,
and every field of a config is part of its own cache key.
"""
from .config import scale_base

MOMENT_EXTRAS = ("moment_bounds", "moment_bounds_gc")  # the sharp bound (every evaluation), its GC forms (ends)
FLATNESS_EXTRAS = ("flatness",)  # the Hessian trace (measure.flatness), read by figure_flatness
AGOP_EXTRAS = ("agop",)  # the embedding's AGOP spectrum at the first and last evaluation, Figure 3
SWEEP_GRIDS = {  # rows in this order: lr (increasing), batch size (decreasing), L2 (increasing)
    "tiny": {"lr": (0.05, 0.1, 0.3), "batch_size": (128, 32, 8), "l2": (0.0, 1e-3, 1e-2)},
    "laptop": {"lr": (0.05, 0.1, 0.2, 0.3, 0.4), "batch_size": (512, 256, 128, 64, 32),
               "l2": (0.0, 1e-4, 5e-4, 1e-3, 5e-3)},
    "paper": {"lr": (0.005, 0.01, 0.02, 0.04, 0.08), "batch_size": (512, 256, 128, 64, 32),
              "l2": (0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4)},
}


def training_run(scale):
    """The training run of Figure 2 at ``scale``: the scale's base run, longer and evaluated more often
    at laptop scale (3,000 steps, every 150), 300 steps at tiny scale, lr 0.01 and batch 128 at paper scale."""
    if scale == "tiny":
        return scale_base("tiny", steps=300)
    if scale == "laptop":
        return scale_base("laptop", steps=3000, eval_every=150)
    return scale_base("paper", lr=0.01, batch_size=128)


def sweep_base(scale, **changes):
    """The base run of Figure 1's sweeps (and of Figure 3's configs) at ``scale``: the scale's base run with the
    moment bounds and the Hessian trace recorded (``MOMENT_EXTRAS``, ``FLATNESS_EXTRAS``), and ``changes``.

    At tiny scale (a plumbing check on ten classes) only the Hessian trace: the moment bounds' SDPs would make
    it minutes instead of seconds; Figure 3, which reads them, asks for them on its five tiny classes."""
    changes.setdefault("extras", (MOMENT_EXTRAS if scale != "tiny" else ()) + FLATNESS_EXTRAS + AGOP_EXTRAS)
    return scale_base(scale, **changes)


APPENDIX_SEEDS = {"tiny": 2, "laptop": 5, "paper": 3}  # the convnet appendix's seeds per scale
APPENDIX_GRIDS = {  # the convnet appendix (figure_mnist): Figure 1's grids, with smaller learning rates at laptop scale
    scale: {**grid, **({"lr": (0.01, 0.02, 0.05, 0.1, 0.2)} if scale == "laptop" else {})}
    for scale, grid in SWEEP_GRIDS.items()
}


def appendix_base(scale):
    """The base run of the convnet appendix (``figure_mnist``) at ``scale``: a small convnet (tiny: on digits,
    laptop: on mnist5k) with the Hessian trace (``FLATNESS_EXTRAS``) at the first and last evaluation; VGG-11 on MNIST at paper
    scale, without it (the Hessian's GPU route is untested)."""
    if scale == "tiny":
        return scale_base("tiny", model="convnet", channels=(4, 8), hidden=(16,), steps=60, eval_every=30,
                          eval_per_class=4, extras=FLATNESS_EXTRAS)
    if scale == "laptop":
        return scale_base("laptop", model="convnet", channels=(8, 16), hidden=(64,), batch_size=64, l2=5e-4,
                          steps=1000, eval_per_class=20, extras=FLATNESS_EXTRAS)
    return scale_base("paper", dataset="mnist", model="vgg11", steps=10000)
