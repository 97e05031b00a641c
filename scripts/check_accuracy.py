"""Check that train.fit trains the laptop models to MNIST-level accuracy on the embedded mnist5k.

    python scripts/check_accuracy.py [--only convnet|mlp]

Trains ``convnet((1, 28, 28), 10)`` and the MLP [784, 256, 256, 64] with plain minibatch SGD (``train.fit``) on
``load("mnist5k", "train")`` (4,000 images), inputs standardized with the training mean and std, and reports the
accuracy on the 1,000 test images and the wall time of each run. Targets: convnet >= 97%, MLP >= 93%.
Exit status 1 if a target is missed.
"""
import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from minigcnc import data, models, train


@dataclass(frozen=True)
class Run:
    """One training run: model, SGD hyperparameters (constant lr), and the accuracy target."""

    name: str
    make: object
    dtype: str
    batch_size: int
    lr: float
    steps: int
    momentum: float
    l2: float
    target: float


RUNS = {
    "convnet": Run("convnet((1, 28, 28), 10)", lambda: models.convnet((1, 28, 28), 10), "float32",
                   batch_size=64, lr=0.01, steps=500, momentum=0.9, l2=5e-3, target=0.97),
    "mlp": Run("mlp [784, 256, 256, 64]", lambda: models.mlp([784, 256, 256, 64], 10), "float64",
               batch_size=64, lr=0.1, steps=1000, momentum=0.0, l2=0.0, target=0.93),
}


def accuracy(model, params, X, y, chunk=500):
    """Fraction of ``X`` whose arg-max logit equals ``y``, computed in chunks of ``chunk`` images."""
    pred = np.concatenate([np.argmax(model.logits(params, X[i : i + chunk]), axis=1) for i in range(0, len(X), chunk)])
    return float(np.mean(pred == y))


def run(spec, Xtr, ytr, Xte, yte, seed=0):
    """Train ``spec`` and return (test accuracy, train accuracy, seconds)."""
    model = spec.make()
    params = model.init(seed, dtype=spec.dtype)
    start = time.perf_counter()
    result = train.fit(model, params, Xtr, ytr, lr=spec.lr, batch_size=spec.batch_size, steps=spec.steps,
                       momentum=spec.momentum, l2=spec.l2, seed=seed, desc=spec.name)
    if result.diverged:
        raise RuntimeError(result.message)
    seconds = time.perf_counter() - start
    return accuracy(model, result.params, Xte, yte), accuracy(model, result.params, Xtr, ytr), seconds


def main(argv=None):
    """Train each model, print its row, and return the exit status (0 when every target is met)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RUNS), default=None)
    args = parser.parse_args(argv)
    (Xtr, ytr), (Xte, yte) = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    _, _, Xtr, Xte = data.standardize(Xtr, Xte)  # training mean/std for both
    ok = True
    print(f"{'model':<26} {'test acc':>8} {'target':>7} {'train acc':>9} {'seconds':>8}  setup")
    for key in [args.only] if args.only else list(RUNS):
        spec = RUNS[key]
        test_acc, train_acc, seconds = run(spec, Xtr, ytr, Xte, yte)
        passed = test_acc >= spec.target
        ok &= passed
        setup = (f"lr {spec.lr} x {spec.steps} steps, batch {spec.batch_size}, momentum {spec.momentum}, "
                 f"l2 {spec.l2:g}, {spec.dtype}")
        print(f"{spec.name:<26} {test_acc:>8.1%} {spec.target:>7.0%} {train_acc:>9.1%} {seconds:>8.1f}  {setup}  "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
