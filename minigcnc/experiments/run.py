"""One run: a ``RunConfig`` trained into its history, the glue from a config to ``train.fit``.

- ``train_run(config)``: prepares the data, builds the model (and the GC penalty), trains with ``train.fit``
  and records ``measure.measure`` at every evaluation; returns the history (``history.py``), writes no file.
- ``run(config, cache_dir)``: the history from the cache, or trained now (resuming its checkpoint) and cached.
- ``train_in_worker(config_dict, checkpoint_dir, fresh)``: the same as a Dask task (``dask_runner.run_on_dask``):
  the worker trains and sends the history back; the client writes the cache.

The data are prepared, and the run trained and measured, with one BLAS thread in every mode (``--jobs 1``,
``--jobs N``, Dask, an idle or a busy machine): BLAS's thread count changes the rounding of its products, and
over thousands of steps round-off becomes a visible difference, so a run's numbers would otherwise depend on how
the sweep is scheduled and on the machine's load (``fit``'s own default, ``threads``, reads the load). A sweep
uses the cores by training ``--jobs`` runs side by side. Each
checkpoint is tagged with the run's cache key (``train.fit(checkpoint_key=...)``), and each run file carries a
digest (``cache.store_run``), both checked when read.

A *result module* (``cache.py``): its code is part of every run's cache key, so editing a line here retrains.
Scheduling many runs is ``sweep.py``'s job.
"""
import time

from .cache import load_run, run_key, run_path, store_run, versions
from .config import RunConfig
from .dask_runner import worker_checkpoint_dir


def train_run(config, checkpoint=None, progress=True):
    """Train ``config`` from scratch (or from ``checkpoint``) and return its history; writes no result file."""
    from .. import gc
    from ..backend import set_backend
    from ..threads import blas_limit
    from ..train import fit
    from .measure import measure
    from .prepare import build_model, prepare_data

    set_backend(config.backend)
    t0 = time.time()
    with blas_limit(1):  # the same rounding whatever the sweep's jobs (its workers run with one thread each)
        data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    params = model.init(config.seed, dtype=config.dtype, backend=config.backend)
    penalty = (gc.make_gc_penalty(model, config.gc_reg, method=config.gc_reg_method, seed=config.seed)
               if config.gc_reg else None)
    res = fit(model, params, data.X_train, data.y_train_dev, lr=config.lr, batch_size=config.batch_size,
              steps=config.steps, l2=config.l2, momentum=config.momentum, penalty=penalty,
              eval_every=config.eval_every, seed=config.seed, progress=progress, checkpoint=checkpoint,
              checkpoint_key=run_key(config), blas_threads=1,  # a run's rounding never depends on the load
              on_eval=lambda step, p: measure(model, p, data, config.fewshot_episodes, config.seed, tuple(config.extras),
                                              probe=config.fewshot_probe, step=step,
                                              last_step=config.steps),
              desc=f"{config.model} lr={config.lr:g} bs={config.batch_size} l2={config.l2:g} seed={config.seed}")
    return {
        "config": config.to_dict(), "key": run_key(config), "model": model.name,
        "status": "diverged" if res.diverged else "finished", "message": res.message,
        "seconds": time.time() - t0, "evals": res.history,
        "losses": res.losses[:: max(1, len(res.losses) // 500)], "versions": versions(),
    }


def run(config, cache_dir=None, fresh=False, progress=True):
    """The history of ``config``: from the cache, or trained now (resuming a checkpoint) and then cached."""
    path = run_path(config, cache_dir)
    ckpt = path.with_suffix(".ckpt.npz")
    if not fresh:
        done = load_run(config, cache_dir)
        if done is not None:
            return done
    elif ckpt.exists():
        ckpt.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    history = train_run(config, checkpoint=str(ckpt), progress=progress)
    store_run(path, history)
    if ckpt.exists():
        ckpt.unlink()
    return history


def train_in_worker(config_dict, checkpoint_dir, fresh, keep_checkpoint=False):
    """A Dask task: train the run and return its history (the client writes it to the cache).

    The checkpoint lives in ``checkpoint_dir`` (None: the worker's local directory,
    ``dask_runner.worker_checkpoint_dir``; a sweep gives its cache's ``runs/`` folder when the worker sees it), so
    a rerun resumes it; no run file is written here. ``keep_checkpoint``: leave the final checkpoint for the
    client to remove once it has written the history (nothing is lost if the client stops before).
    """
    from pathlib import Path

    config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config_dict.items()})
    checkpoint_dir = checkpoint_dir or worker_checkpoint_dir()
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    ckpt = Path(checkpoint_dir) / f"{run_key(config)}.ckpt.npz"
    if fresh and ckpt.exists():
        ckpt.unlink()
    history = train_run(config, checkpoint=str(ckpt), progress=False)
    if ckpt.exists() and not keep_checkpoint:
        ckpt.unlink()
    return history
