"""Plain SGD training of a model: learning rate, batch size, L2, momentum, an optional differentiable penalty.

    objective(theta; batch) = CE(logits(theta, X_b), y_b) + (l2 / 2) * ||theta||^2 + penalty(theta, X_b, y_b)
    v <- momentum * v + grad objective;   theta <- theta - lr * v          (momentum 0: plain SGD)

``||theta||^2`` runs over every parameter, biases included. The explicit GC regularizer of the paper's
appendix plugs in as ``penalty`` (see ``gc.gc_penalty``). Batches are fixed by ``(seed, step)``, so a run
is bit-for-bit reproducible on NumPy and a run resumed from a checkpoint sees the same batches as one that
never stopped. A non-finite objective stops the run and is reported (``FitResult.diverged``); it never
raises, so a sweep goes on.
"""
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as onp
from autograd import value_and_grad
from tqdm.auto import tqdm

from . import ops
from .backend import get_xp, is_device_array, to_numpy, tree_leaves, tree_map, tree_unflatten
from .data import batch_indices


@dataclass
class FitResult:
    """What ``fit`` returns: final parameters, steps done, divergence flag and message, evaluations, losses."""

    params: list
    step: int
    diverged: bool = False
    message: str = ""
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def _check_number(name, value, low=0.0, low_open=False, high=None, integer=False):
    ok = isinstance(value, (int, float, onp.integer, onp.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value) == int(value)
    if ok and not math.isfinite(float(value)):
        ok = False
    if ok and (float(value) < low or (low_open and float(value) == low)):
        ok = False
    if ok and high is not None and float(value) >= high:
        ok = False
    if not ok:
        kind = "an integer" if integer else "a finite number"
        rng = f"{'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be {kind} {rng}; got {value!r}")


def check_labels(y, n_classes, n=None):
    """y as an int64 host array after checking it is 1-D, of length n, with values in [0, n_classes)."""
    y = to_numpy(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of integer labels; got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"X has {n} samples but y has {len(y)} labels; they must match")
    if not onp.issubdtype(y.dtype, onp.integer):
        if not onp.all(onp.isfinite(y)) or not onp.all(y == onp.round(y)):
            raise ValueError(f"y must hold integer class labels; got dtype {y.dtype} with non-integer values")
    y = y.astype(onp.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"labels out of range: y has values in [{y.min()}, {y.max()}] but the model has {n_classes} classes "
            f"(labels must be in [0, {n_classes - 1}]); re-index the labels or build the model with more classes"
        )
    return y


def l2_term(params):
    """||theta||^2 summed over every parameter array."""
    return sum_of(ops.sum_squares(p) for p in tree_leaves(params))


def sum_of(terms):
    total = 0.0
    for t in terms:
        total = total + t
    return total


def _save_checkpoint(path, params, velocity, step, history, losses):
    leaves = [to_numpy(a) for a in tree_leaves(params)]
    vel = [to_numpy(a) for a in tree_leaves(velocity)] if velocity is not None else []
    arrays = {f"p{i}": a for i, a in enumerate(leaves)}
    arrays.update({f"v{i}": a for i, a in enumerate(vel)})
    arrays["step"] = onp.array(step)
    arrays["history"] = onp.array(json.dumps(history))
    arrays["losses"] = onp.asarray(losses, dtype=onp.float64)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    onp.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_checkpoint(path, params, velocity):
    with onp.load(path, allow_pickle=False) as f:
        n = len(tree_leaves(params))
        missing = [f"p{i}" for i in range(n) if f"p{i}" not in f.files]
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model ({len(missing)} parameter arrays missing); delete it or use another path")
        leaves = [f[f"p{i}"] for i in range(n)]
        for a, ref in zip(leaves, tree_leaves(params)):
            if a.shape != tuple(ref.shape):
                raise ValueError(f"checkpoint {path} has a parameter of shape {a.shape}, the model needs {tuple(ref.shape)}")
        xp = get_xp(*tree_leaves(params))
        to_dev = (lambda a: xp.asarray(a)) if is_device_array(tree_leaves(params)[0]) else (lambda a: a)
        new_params = tree_unflatten(params, [to_dev(a.astype(ref.dtype)) for a, ref in zip(leaves, tree_leaves(params))])
        new_vel = None
        if velocity is not None and "v0" in f.files:
            new_vel = tree_unflatten(velocity, [to_dev(f[f"v{i}"]) for i in range(len(tree_leaves(velocity)))])
        return new_params, new_vel, int(f["step"]), json.loads(str(f["history"])), list(f["losses"])


def fit(model, params, X, y, *, lr, batch_size, steps, l2=0.0, momentum=0.0, penalty=None, eval_every=None,
        on_eval=None, seed=0, progress=True, checkpoint=None, checkpoint_every=None, desc=None,
        divergence_factor=100.0):
    """Train ``params`` with minibatch SGD and return a ``FitResult``.

    X (N, ...) and y (N,) may be host or device arrays; they are moved once to the device of ``params``.
    ``penalty(params, X_b, y_b) -> scalar`` is added to the objective (e.g. the GC regularizer).
    ``on_eval(step, params) -> dict`` is called at step 0, every ``eval_every`` steps and at the end; its
    dicts (with ``step`` added) form ``history``. ``checkpoint``: a ``.npz`` path written atomically every
    ``checkpoint_every`` steps (default: at each evaluation) and at the end; if it exists, training resumes
    from it with the same batches and momentum.

    Divergence: the run stops, with ``diverged=True`` and a message naming the step and hyperparameters,
    when the batch objective is non-finite or exceeds ``divergence_factor`` times the first step's (ReLU nets
    often blow up to huge but finite losses instead of NaN).
    """
    _check_number("lr", lr, 0.0, low_open=True)
    _check_number("steps", steps, 0, integer=True)
    _check_number("l2", l2, 0.0)
    _check_number("momentum", momentum, 0.0, high=1.0)
    lr, l2, momentum = float(lr), float(l2), float(momentum)  # a numpy float64 scalar would promote float32 params
    X = model.check_input(X)
    n = X.shape[0]
    _check_number("batch_size", batch_size, 1, integer=True)
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}); got {batch_size}")
    if eval_every is not None:
        _check_number("eval_every", eval_every, 1, integer=True)
    y_host = check_labels(y, model.n_classes, n)

    leaves = tree_leaves(params)
    xp = get_xp(*leaves)
    dtype = leaves[0].dtype
    if is_device_array(leaves[0]):
        X = xp.asarray(X).astype(dtype) if not is_device_array(X) else X.astype(dtype, copy=False)  # no 2nd copy
        y_dev = xp.asarray(y_host)
    else:
        X = onp.asarray(to_numpy(X), dtype=dtype)
        y_dev = y_host

    def objective(p, Xb, yb):
        value = model.loss(p, Xb, yb)
        if l2:
            value = value + 0.5 * l2 * l2_term(p)
        if penalty is not None:
            value = value + penalty(p, Xb, yb)
        return value

    grad_fn = value_and_grad(objective)
    velocity = tree_map(lambda a: a * 0, params) if momentum else None
    start, history, losses = 0, [], []
    if checkpoint and os.path.exists(checkpoint):
        params, vel, start, history, losses = _load_checkpoint(checkpoint, params, velocity)
        velocity = vel if vel is not None else velocity

    def evaluate(step, p):
        if on_eval is not None and not any(h.get("step") == step for h in history):
            rec = dict(on_eval(step, p) or {})
            rec["step"] = step
            history.append(rec)

    ckpt_every = checkpoint_every or eval_every or steps
    t0 = time.time()
    diverged, message = False, ""
    if start == 0:
        evaluate(0, params)
    bar = tqdm(total=steps, initial=start, disable=None if progress else True, desc=desc or model.name, leave=False)
    step = start
    try:
        for step in range(start + 1, steps + 1):
            idx = batch_indices(n, batch_size, step - 1, seed)
            idx = xp.asarray(idx) if is_device_array(X) else idx
            value, g = grad_fn(params, X[idx], y_dev[idx])
            loss = float(to_numpy(value))
            first_loss = losses[0] if losses else loss
            if not math.isfinite(loss) or (divergence_factor and loss > divergence_factor * max(first_loss, 1e-3)):
                diverged = True
                message = (f"diverged at step {step}: loss {loss:.4g} (first {first_loss:.4g}) with lr={lr}, batch_size={batch_size}, l2={l2}, "
                           f"momentum={momentum}, seed={seed}; try a smaller lr")
                step -= 1
                break
            losses.append(loss)
            if momentum:
                velocity = _axpy_tree(momentum, velocity, g)  # v <- momentum v + g
                params = _axpy_tree(-lr, velocity, params)
            else:
                params = _axpy_tree(-lr, g, params)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if eval_every and step % eval_every == 0:
                evaluate(step, params)
            if checkpoint and step % ckpt_every == 0:
                _save_checkpoint(checkpoint, params, velocity, step, history, losses)
    finally:
        bar.close()
    if not diverged:
        evaluate(step, params)
    if checkpoint:
        _save_checkpoint(checkpoint, params, velocity, step, history, losses)
    return FitResult(params, step, diverged, message, history, losses, time.time() - t0)


def _axpy_tree(a, x, y):
    """a * x + y over matching parameter trees."""
    xs = tree_leaves(x)
    ys = tree_leaves(y)
    return tree_unflatten(y, [a * xi + yi for xi, yi in zip(xs, ys)])
