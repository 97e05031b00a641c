"""Figure 1: a higher learning rate, a smaller batch and more L2 each lower the embedding GC and the NC.

    python -m minigcnc.figure1                  # laptop scale, about 5 minutes on 2 quiet cores
    python -m minigcnc.figure1 --scale tiny     # seconds
    python -m minigcnc.figure1 --scale paper --data-root DIR                             # VGG-13 on CIFAR-10, GPU
    python -m minigcnc.figure_mnist --scale paper --data-root DIR  # the appendix's VGG-11 on MNIST (figure_mnist.py)

Three sweeps from one base run, each changing one knob: the learning rate (increasing), the batch size
(decreasing) and the L2 strength (increasing), five values each; the base run belongs to all three
sweeps and is trained once per seed (identical configs share a cache key). Columns: the exact embedding GC on
a fixed training subset, the geometric collapse (class GC over squared distances of class means) and the
NC (CDNV of the training embeddings) over the training iterations; one curve per value (mean over seeds,
min-max band), coloured along the sweep order, so in every row the colour runs from the weakest to the
strongest regularization. A diverged run is drawn up to its last evaluation and marked with an x.

The claim table, for each sweep (mean of the per-seed Spearman correlations, a stratified permutation test,
see ``experiments.claims``): the swept value against the final GC (expected negative for lr, positive for
batch size, negative for L2) and the final NC (same signs); the final GC against the final NC and the
geometric collapse, and the final GCol against the final NC (expected positive). Across all runs of all
sweeps, per seed: the final GC bound, GCol and GC against the final NCC test error (expected positive;
``figures/figure1_across_runs.png``). "Final" is the last evaluation; a diverged run has none (NaN) and drops
out of its seed's correlation.

Scales (plain SGD, cross-entropy, no augmentation, inputs standardized with the training statistics):

- tiny: sklearn digits, MLP 64-32-16, 3 values per sweep, 2 seeds, 200 steps (a test of the plumbing).
- laptop (default): mnist5k (400 train images per class), MLP 784-256-256-64, float32, 5 seeds, base run
  lr 0.05, batch 128, no L2; lr {0.05, 0.1, 0.2, 0.3, 0.4}, batch {512, 256, 128, 64, 32},
  L2 {0, 1e-4, 5e-4, 1e-3, 5e-3}; 2,000 steps, evaluated every 250 steps (GC on 50 images per class).
- paper: VGG-13 on CIFAR-10, float32 on CuPy, base run lr 0.02, batch 256, no L2; lr
  {0.005, 0.01, 0.02, 0.04, 0.08}, batch {512, 256, 128, 64, 32}, L2 {0, 1e-4, 2.5e-4, 5e-4, 7.5e-4} (the
  paper's grid at lr 0.02, batch 256); 20,000 steps, 3 seeds. ``--dataset``/``--model`` (e.g. ``mnist`` /
  ``vgg11``) replace the scale's data and network at every scale and name the outputs
  ``figure1_<model>_<dataset>``; the appendix's VGG-11 on MNIST, with its own laptop-scale convnet, is
  ``python -m minigcnc.figure_mnist``.

Why these laptop choices (from scans on mnist5k before settling):

- the model and data are the package's default (offline; exact GC and all collapse metrics in about 0.4 s
  of CPU per evaluation); float32 is about 3x faster than float64 here (GC agrees to ~3 digits). A step
  costs about 5, 8 and 18 ms of CPU at batch 32, 128 and 512 (before the fused layers). The 65 distinct
  runs (13 per seed, 5 seeds) took 4.8 minutes from scratch on two quiet cores with ``--jobs 2`` (565
  run-seconds, ``figures/REPORT.md``).
- 2,000 steps: every run reaches 100% training accuracy between steps 250 and 1,250 (training loss 1e-4 to
  2e-3 at the end, 2e-2 with L2 5e-3), so at least the last third of every run is the terminal phase where
  collapse shows; the orderings of GC and NC across each sweep were the same at steps 1,800 and 3,000.
- the learning-rate grid starts at 0.05: below it (0.01-0.05) SGD has not reached the regime where a larger
  step lowers GC within a few thousand steps (GC even rises with lr there), while from 0.05 to 0.4 GC and NC
  fall together. 0.4 is near the largest rate that trains (it trained in every seed here); a run that
  diverges is recorded, drawn with an x, and drops out of its seed's correlation.
- batch sizes double from 32 to 512 at the base lr (a step at 512 costs 2.4 base steps, for a small
  change); L2 up to 5e-3, the strongest that still fits the training set exactly within the steps.
"""
from .experiments.config import scale_base
from .experiments.driver import sweep_figure

NAME = "figure1"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 3}
GRIDS = {  # rows in this order: lr (increasing), batch size (decreasing), L2 (increasing)
    "tiny": {"lr": (0.05, 0.1, 0.3), "batch_size": (128, 32, 8), "l2": (0.0, 1e-3, 1e-2)},
    "laptop": {"lr": (0.05, 0.1, 0.2, 0.3, 0.4), "batch_size": (512, 256, 128, 64, 32),
               "l2": (0.0, 1e-4, 5e-4, 1e-3, 5e-3)},
    "paper": {"lr": (0.005, 0.01, 0.02, 0.04, 0.08), "batch_size": (512, 256, 128, 64, 32),
              "l2": (0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4)},
}


def scale_setup(scale, seeds=None):
    """(base RunConfig, {field: values in sweep order}, seeds) of Figure 1 at ``scale``: the scale's base run."""
    return scale_base(scale), GRIDS[scale], list(range(seeds or SEEDS[scale]))


def configs(scale, seeds=None):
    """The runs of Figure 1 at ``scale`` (with repeats of the shared base run, which trains once)."""
    from .experiments.sweep import flat, sweep_configs

    return flat(sweep_configs(*scale_setup(scale, seeds)))


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    return sweep_figure(argv, NAME, __doc__, lambda args: scale_setup(args.scale, args.seeds), dataset_and_model=True,
                        predictors=(("gc", "GC"), ("gcol", "GCol")), cross_run=True)


if __name__ == "__main__":
    main()
