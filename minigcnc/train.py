"""Plain SGD training of a model: learning rate, batch size, L2, momentum, an optional differentiable penalty.

    objective(theta; batch) = CE(logits(theta, X_b), y_b) + (l2 / 2) * ||theta||^2 + penalty(theta, X_b, y_b)
    v <- momentum * v + grad objective;   theta <- theta - lr * v          (momentum 0: plain SGD)

``||theta||^2`` runs over every parameter, biases included. The explicit GC regularizer of the paper's
appendix plugs in as ``penalty`` (see ``gc.make_gc_penalty``); a penalty with ``takes_step = True`` is
called as ``penalty(theta, X_b, y_b, step=step)``, so its random draws can be fixed by the step too. Batches
are fixed by ``(seed, step)`` (``batch_indices``, ``batches``: a fresh permutation each epoch), so a run is
bit-for-bit reproducible on NumPy and a run resumed from a checkpoint sees the same batches (and penalty
draws) as one that never stopped. Bad arguments, non-finite inputs included, raise before the first step; a
non-finite objective during training stops the run and is reported (``FitResult.diverged``); it never raises,
so a sweep goes on.

The step itself is ``value, g = loss_and_grad(params, X_b, y_b, step)`` (autograd) and ``sgd_step`` (``theta - lr * g``,
with momentum ``v``); ``minigcnc.fast_step`` computes both bit for bit as autograd and ``sgd_step`` do,
only faster (speed code: per-leaf gradients, in-place updates, malloc tuning). The loss is the model's fused
route (``model.loss(..., fused=True)``, one autograd node per layer, ``minigcnc.fused``); ``fit(...,
fused=False)`` trains on the one-op-per-primitive reference instead. On the host a small problem trains with
one BLAS thread, a big one with the idle cores (``minigcnc.threads``; ``fit(..., blas_threads=...)`` or
``$MINIGCNC_BLAS_THREADS``).
"""
import itertools
import json
import math
import os
import time
import weakref
from dataclasses import dataclass, field

import numpy as onp
from tqdm.auto import tqdm

from . import checks, ops, threads
from .fast_step import reuse_freed_memory, sgd_update, value_and_grad_leaves
from .backend import get_xp, is_device_array, to_numpy, tree_leaves, tree_map, tree_unflatten


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


def sgd_step(params, grads, lr, momentum=0.0, velocity=None):
    """One SGD step over the parameter tree, as a student writes it: ``(p - lr * g, None)``; with momentum,
    ``v = momentum * v + g`` and ``(p - lr * v, v)``. ``fit``'s in-place step (``fast_step.sgd_update``) is
    equal to it bit for bit (the same multiply and add per entry, written into free arrays)."""
    if momentum:
        velocity = tree_unflatten(grads, [momentum * v + g for v, g in zip(tree_leaves(velocity), tree_leaves(grads))])
        grads = velocity
    return tree_unflatten(params, [p - lr * g for p, g in zip(tree_leaves(params), tree_leaves(grads))]), velocity


def check_labels(y, n_classes, n=None):
    """y as an int64 host array after checking it is 1-D, of length n, with values in [0, n_classes)."""
    y = checks.no_string_labels(to_numpy(y))
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


_MODEL_SHAPES = weakref.WeakKeyDictionary()  # model -> the shape of every array model.init makes


def check_params(model, params):
    """Raise a ValueError unless ``params`` has the arrays, and shapes, that ``model.init`` makes.

    The reference shapes come from one ``model.init(0)`` on the host per model object (cached).
    """
    if model not in _MODEL_SHAPES:
        _MODEL_SHAPES[model] = [tuple(a.shape) for a in tree_leaves(model.init(0, dtype="float32", backend="numpy"))]
    wanted = _MODEL_SHAPES[model]
    fix = "build them with model.init(seed)"
    n = len(tree_leaves(params))
    if n != len(wanted):
        raise ValueError(f"params were built for another model: they hold {n} arrays, the model needs "
                         f"{len(wanted)}; {fix}")
    named = []  # ("layer 1 weight", shape): one entry of params per body layer, then the head
    for i, entry in enumerate(params):
        arrays = tree_leaves(entry)
        where = "the head" if i == len(params) - 1 else f"layer {i + 1}"
        for j, a in enumerate(arrays):
            what = ("weight", "bias")[j] if len(arrays) <= 2 else f"array {j + 1}"
            named.append((f"{where} {what}", tuple(a.shape)))
    for (name, shape), need in zip(named, wanted):
        if shape != need:
            raise ValueError(f"params were built for another model: {name} has shape {shape}, the model needs "
                             f"{need}; {fix}")


def l2_term(params):
    """||theta||^2 summed over every parameter array."""
    return sum_of(ops.sum_squares(p) for p in tree_leaves(params))


def sum_of(terms):
    """The sum of ``terms`` (scalars or 0-d arrays, any backend) by repeated ``+``, so autograd traces it."""
    total = 0.0
    for t in terms:
        total = total + t
    return total


CHECKPOINT_FORMAT = 2  # a checkpoint of another format is discarded (with a warning), never misread


def _checkpoint_digest(arrays):
    """sha256 over every array of a checkpoint but ``digest`` (name, dtype, shape and bytes, in name order)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == "digest":
            continue
        a = onp.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save_checkpoint(path, params, velocity, step, history, losses, meta):
    """Write the state of a run at ``step`` to ``path`` (atomically), with ``meta`` (what the run is: seed, steps,
    hyperparameters, the caller's ``checkpoint_key``) and a digest of it all, checked when it is read."""
    leaves = [to_numpy(a) for a in tree_leaves(params)]
    vel = [to_numpy(a) for a in tree_leaves(velocity)] if velocity is not None else []
    arrays = {f"p{i}": a for i, a in enumerate(leaves)}
    arrays.update({f"v{i}": a for i, a in enumerate(vel)})
    arrays["step"] = onp.array(step)
    arrays["history"] = onp.array(json.dumps(history))
    arrays["losses"] = onp.asarray(losses, dtype=onp.float64)
    arrays["meta"] = onp.array(json.dumps({**meta, "format": CHECKPOINT_FORMAT}, sort_keys=True))
    arrays["digest"] = onp.array(_checkpoint_digest(arrays))

    def write(tmp):
        with open(tmp, "wb") as out:  # a file object: savez adds no ".npz" to the name
            onp.savez(out, **arrays)

    checks.write_atomically(path, write)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: damaged, of another format, or of another run."""


def _load_checkpoint(path, params, velocity, meta, steps):
    """(params, velocity, step, history, losses) of the checkpoint at ``path``, after checking its digest, that
    it is of this run (``meta``: seed, hyperparameters, key) and that its step is at most ``steps``; a
    CheckpointError says why not."""
    try:
        with open(path, "rb") as fh, onp.load(fh, allow_pickle=False) as f:  # (our handle: closed on a bad zip)
            arrays = {name: f[name] for name in f.files}
    except Exception as e:  # noqa: BLE001 - a damaged file: zip, npy header, truncation (BadZipFile, OSError, ...)
        raise CheckpointError(f"is damaged ({type(e).__name__}: {e})") from None
    if "digest" not in arrays or "meta" not in arrays:
        raise CheckpointError("has no digest (written by another version)")
    if str(arrays["digest"]) != _checkpoint_digest(arrays):
        raise CheckpointError("does not match its digest (edited or damaged)")
    try:
        stored = json.loads(str(arrays["meta"]))
        step = int(arrays["step"])
        history = json.loads(str(arrays["history"]))
        losses = [float(v) for v in arrays["losses"]]
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"is damaged ({type(e).__name__}: {e})") from None
    if stored.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"is of format {stored.get('format')!r}, not {CHECKPOINT_FORMAT}")
    differ = [f"{k} {stored.get(k)!r} (this run: {v!r})" for k, v in meta.items() if stored.get(k) != v]
    if differ:
        raise CheckpointError("is of another run: " + ", ".join(differ))
    if not 0 <= step <= steps or len(losses) != step:
        raise CheckpointError(f"claims step {step} of a run of {steps} steps ({len(losses)} losses)")
    if not isinstance(history, list) or not all(isinstance(h, dict) and isinstance(h.get("step"), int) and
                                                0 <= h["step"] <= step for h in history):
        raise CheckpointError(f"holds evaluations that are not of steps 0..{step}")
    n = len(tree_leaves(params))
    refs = tree_leaves(params)
    if any(f"p{i}" not in arrays for i in range(n)) or any(arrays[f"p{i}"].shape != tuple(r.shape)
                                                          for i, r in enumerate(refs)):
        raise CheckpointError("does not match this model (its parameter arrays differ)")
    xp = get_xp(*refs)
    to_dev = (lambda a: xp.asarray(a)) if is_device_array(refs[0]) else (lambda a: a)
    new_params = tree_unflatten(params, [to_dev(arrays[f"p{i}"].astype(r.dtype)) for i, r in enumerate(refs)])
    new_vel = None
    if velocity is not None:
        vrefs = tree_leaves(velocity)
        if any(f"v{i}" not in arrays or arrays[f"v{i}"].shape != tuple(r.shape) for i, r in enumerate(vrefs)):
            raise CheckpointError("has no momentum buffers of this model")
        new_vel = tree_unflatten(velocity, [to_dev(arrays[f"v{i}"]) for i in range(len(vrefs))])
    return new_params, new_vel, step, history, losses


def _resume_or_discard(path, params, velocity, meta, steps):
    """``_load_checkpoint``, or None after a one-line warning and the file's removal when it cannot be resumed
    (the run then starts from step 0: a damaged checkpoint costs its steps, never the run)."""
    import warnings

    try:
        return _load_checkpoint(path, params, velocity, meta, steps)
    except CheckpointError as e:
        warnings.warn(f"checkpoint {path} {e}; discarded, the run starts from step 0", stacklevel=3)
        try:
            os.unlink(path)
        except OSError:
            pass
        return None


def fit(model, params, X, y, *, lr, batch_size, steps, l2=0.0, momentum=0.0, penalty=None, eval_every=None,
        on_eval=None, seed=0, progress=True, checkpoint=None, checkpoint_every=None, desc=None,
        divergence_factor=100.0, fused=True, blas_threads=None, checkpoint_key=None):
    """Train ``params`` with minibatch SGD and return a ``FitResult``.

    X (N, ...) and y (N,) may be host or device arrays; they are moved once to the device of ``params``.
    ``penalty(params, X_b, y_b) -> scalar`` is added to the objective (e.g. the GC regularizer); if
    ``penalty.takes_step`` is True it is called as ``penalty(params, X_b, y_b, step=step)`` with the training
    step (1 .. steps), so a stochastic penalty (``gc.make_gc_penalty(method="hutchinson")``) draws by step and
    a resumed run stays exact.
    ``on_eval(step, params) -> dict`` is called at step 0, every ``eval_every`` steps and at the end (not
    after a divergence); its
    dicts (with ``step`` added) form ``history``. ``checkpoint``: a ``.npz`` path written atomically every
    ``checkpoint_every`` steps (default: at each evaluation) and at the end; if it exists, training resumes
    from it with the same batches and momentum. A checkpoint carries a digest of its content and what run it
    is (seed, lr, batch size, l2, momentum, the number of samples and ``checkpoint_key``, any string the caller
    names the run by, e.g. its cache key); one that fails the digest, is of another run or claims a step beyond
    ``steps`` is discarded with a one-line warning and the run starts from step 0.

    Every argument is checked before the first step: a NaN or inf in ``X`` raises ValueError (checked once on
    the whole array, on its own device). Divergence: the run stops, with ``diverged=True`` and a message naming
    the step and hyperparameters, when the batch objective is non-finite or exceeds ``divergence_factor`` times
    the first step's (at least 1e-3; ReLU nets often blow up to huge but finite losses instead of NaN);
    ``divergence_factor=0`` or None checks only for non-finite values (a negative or NaN factor is refused).
    ``FitResult.step`` is then the last step whose update was applied, the step the message names ("diverged
    after step s: the loss of step s + 1 is ..."). ``fused``: the loss by
    the fused layers (default) or by the one-op-per-primitive reference (same numbers to round-off). ``params``
    must have the shapes ``model.init`` makes (a ValueError otherwise).

    ``blas_threads``: BLAS threads for the training loop (``on_eval`` included), see ``minigcnc.threads``. None
    (default): ``$MINIGCNC_BLAS_THREADS`` if set, else the rule of ``threads`` on a step's real multiply-adds
    (``threads.fit_work``): one thread below ``threads.SMALL_WORK``, else the machine's idle cores; an int n: at
    most n; 0 or "all": leave BLAS alone. A device backend is never touched, and a limit already in place (your
    own ``threadpoolctl.threadpool_limits``) is never raised. Threads change a result by round-off only, but
    round-off grows over many steps: pass ``blas_threads=1`` for runs that must repeat bit for bit (the figures'
    runs do, ``experiments.run``).

    Side effect, once per process on Linux: ``reuse_freed_memory`` tunes glibc's malloc so that a step reuses
    the previous step's pages (the process then keeps up to 512 MiB of freed memory); set
    ``MINIGCNC_KEEP_MALLOC=1`` to leave malloc alone.
    """
    # plain floats: a numpy float64 scalar would promote float32 params
    lr = checks.number("lr", lr, 0.0, low_open=True)
    steps = checks.integer("steps", steps, minimum=0)
    l2 = checks.number("l2", l2, 0.0)
    momentum = checks.number("momentum", momentum, 0.0, high=1.0)
    if divergence_factor is not None:
        divergence_factor = checks.number("divergence_factor", divergence_factor, 0.0)
    X = model.check_input(X)
    if onp.iscomplexobj(X):
        raise TypeError(f"X must be real; got dtype {X.dtype} (complex). Pass X.real, or abs(X), as you mean it")
    n = X.shape[0]
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}); got {batch_size}")
    if eval_every is not None:
        eval_every = checks.integer("eval_every", eval_every, minimum=1)
    seed = checks.integer("seed", seed, minimum=0)
    y_host = check_labels(y, model.n_classes, n)
    checks.finite(X, "X")
    check_params(model, params)
    threads.resolve(blas_threads)  # checks the value before any work

    leaves = tree_leaves(params)
    xp = get_xp(*leaves)
    dtype = leaves[0].dtype
    if is_device_array(leaves[0]):
        X = xp.asarray(X).astype(dtype) if not is_device_array(X) else X.astype(dtype, copy=False)  # no 2nd copy
        y_dev = xp.asarray(y_host)
    else:
        with onp.errstate(over="ignore"):  # (an overflow is named just below)
            X = onp.asarray(to_numpy(X), dtype=dtype)
        y_dev = y_host
    if not bool(to_numpy(xp.all(xp.isfinite(X)))):  # finite before the cast: too large for the params' dtype
        raise ValueError(f"X holds values too large for the params' dtype {dtype} (they overflow to inf when cast); "
                         "rescale X (e.g. standardize it) or build the params with dtype='float64'")

    takes_step = getattr(penalty, "takes_step", False)

    def objective(p, Xb, yb, step):
        value = model.loss(p, Xb, yb, fused=fused)
        if l2:
            value = value + 0.5 * l2 * l2_term(p)
        if penalty is not None:
            value = value + (penalty(p, Xb, yb, step=step) if takes_step else penalty(p, Xb, yb))
        return value

    loss_and_grad = value_and_grad_leaves(objective)  # autograd's value_and_grad, per parameter array
    reuse_freed_memory()
    # the update may overwrite the gradient arrays only when every VJP that made them is ours (no penalty)
    grads_owned = penalty is None
    velocity = tree_map(lambda a: a * 0, params) if momentum else None
    start, history, losses = 0, [], []
    meta = {"seed": seed, "lr": lr, "batch_size": batch_size, "l2": l2, "momentum": momentum, "n": n,
            "key": None if checkpoint_key is None else str(checkpoint_key)}
    if checkpoint and os.path.exists(checkpoint):
        resumed = _resume_or_discard(checkpoint, params, velocity, meta, steps)
        if resumed is not None:
            params, vel, start, history, losses = resumed
            velocity = vel if vel is not None else velocity

    def evaluate(step, p):
        if on_eval is not None and not any(h.get("step") == step for h in history):
            rec = dict(on_eval(step, p) or {})
            rec["step"] = step
            history.append(rec)

    ckpt_every = checkpoint_every or eval_every or steps
    t0 = time.time()
    diverged, message = False, ""
    work = threads.fit_work(model, batch_size, leaves)  # the forward multiply-adds of one batch
    with threads.blas_limit(blas_threads, work=work, on_host=not is_device_array(leaves[0])):
        if start == 0:
            evaluate(0, params)
        bar = tqdm(total=steps, initial=start, disable=None if progress else True, desc=desc or model.name, leave=False)
        step = start
        stream = batches(n, batch_size, seed, start_step=start, num_steps=max(steps - start, 0))
        try:
            for step, idx in zip(range(start + 1, steps + 1), stream):
                idx = xp.asarray(idx) if is_device_array(X) else idx
                value, g = loss_and_grad(params, X[idx], y_dev[idx], step)
                loss = float(to_numpy(value))
                first_loss = losses[0] if losses else loss
                if not math.isfinite(loss) or (divergence_factor and loss > divergence_factor * max(first_loss, 1e-3)):
                    diverged = True
                    message = (f"diverged after step {step - 1}: the loss of step {step} is {loss:.4g} (first {first_loss:.4g}) "
                               f"with lr={lr}, batch_size={batch_size}, l2={l2}, momentum={momentum}, seed={seed}; "
                               "try a smaller lr")
                    step -= 1  # this step's update is not applied: the run ends at the step before
                    break
                losses.append(loss)
                # sgd_step(params, g, lr, momentum, velocity), in place where it may (equal bit for bit)
                params, velocity = sgd_update(params, velocity, g, lr=lr, momentum=momentum, grads_owned=grads_owned)
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
                if eval_every and step % eval_every == 0:
                    evaluate(step, params)
                if checkpoint and step % ckpt_every == 0:
                    _save_checkpoint(checkpoint, params, velocity, step, history, losses, meta)
        finally:
            bar.close()
        if not diverged:
            evaluate(step, params)
    if checkpoint:
        _save_checkpoint(checkpoint, params, velocity, step, history, losses, meta)
    return FitResult(params, step, diverged, message, history, losses, time.time() - t0)


# ----------------------------------------------------------------------------------------------------------------
# Mini-batches: fixed by (n, batch_size, seed, step), so a resumed run sees the batches it would have seen


def batch_indices(n, batch_size, step, seed):
    """Return the indices (int64, ``(batch_size,)``) of the mini-batch used at training step ``step``.

    Epoch ``e = step // (n // batch_size)`` shuffles the ``n`` examples with
    ``numpy.random.default_rng([seed, e]).permutation(n)`` and is cut into ``n // batch_size`` full batches (the
    last ``n % batch_size`` shuffled examples sit that epoch out, so every batch has the same size). The batch
    depends only on ``(n, batch_size, step, seed)``: a run resumed at step ``s`` sees exactly the batches it would
    have seen. ``batch_size > n`` is an error.
    """
    n = checks.integer("n", n, minimum=1)
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    step = checks.integer("step", step, minimum=0)
    seed = checks.integer("seed", seed, minimum=0)
    if batch_size > n:
        raise ValueError(f"batch_size: received {batch_size} for n = {n} examples; expected 1 <= batch_size <= n")
    epoch, position = divmod(step, n // batch_size)
    return _epoch_permutation(n, seed, epoch)[position * batch_size:(position + 1) * batch_size]


def batches(n, batch_size, seed, start_step=0, num_steps=None):
    """Return an iterator over ``batch_indices(n, batch_size, step, seed)`` for step = start_step, start_step + 1, ...

    It stops after ``num_steps`` batches (never, if None) and computes each epoch's permutation once.
    """
    start_step = checks.integer("start_step", start_step, minimum=0)
    batch_indices(n, batch_size, start_step, seed)  # validates the arguments
    if num_steps is None:
        steps = itertools.count(start_step)
    else:
        steps = range(start_step, start_step + checks.integer("num_steps", num_steps, minimum=0))
    return _batch_stream(int(n), int(batch_size), int(seed), steps)


def _batch_stream(n, batch_size, seed, steps):
    epoch, permutation = None, None
    for step in steps:
        e, position = divmod(step, n // batch_size)
        if e != epoch:
            epoch, permutation = e, _epoch_permutation(n, seed, e)
        yield permutation[position * batch_size:(position + 1) * batch_size]


def _epoch_permutation(n, seed, epoch):
    """The shuffled order (int64, (n,)) of epoch ``epoch``; depends on nothing but its arguments."""
    return onp.random.default_rng([seed, epoch]).permutation(n).astype(onp.int64)
