"""Runs that more than one figure trains, declared once (a figure never imports another figure).

- ``training_run(scale)``: the run of Figure 3 (and, with its estimators recorded, of Figure 2).

Not part of the code hash (``cache.NOT_RESULT_MODULES``): a preset only fills in a ``RunConfig``, and every
field of a config is part of its own cache key.
"""
from .config import scale_base


def training_run(scale):
    """The training run of Figures 2 and 3 at ``scale``: the scale's base run, longer and evaluated more often
    at laptop scale (3,000 steps, every 150), 300 steps at tiny scale, lr 0.01 and batch 128 at paper scale."""
    if scale == "tiny":
        return scale_base("tiny", steps=300)
    if scale == "laptop":
        return scale_base("laptop", steps=3000, eval_every=150)
    return scale_base("paper", lr=0.01, batch_size=128)
