"""Running experiments: one run, a sweep of runs (in parallel with joblib, or on a Dask cluster), one layout.

- ``run(config, cache_dir)``: trains with ``train.fit``, records ``measure.measure`` at every evaluation and
  returns the run's history (see ``history.py``); a finished run is read from the cache instead, an
  interrupted one resumes from its checkpoint.
- ``run_many(configs, ...)``: the histories of a list of configs, training only what the cache lacks, longest
  runs first. ``jobs > 1`` runs them in parallel processes (joblib); ``dask="local[:N]"`` on a ``LocalCluster``
  of N workers, ``dask="tcp://host:port"`` on a running scheduler. Workers send each history back and the
  client writes the cache, so Dask workers need no shared disk. A diverged run is recorded as diverged and
  the sweep goes on.
- ``sweep_configs(base, grid, seeds)``: the one sweep layout every figure uses,
  ``{field: [[config per value] per seed]}``, each sweep changing one field (any field of ``RunConfig``) of
  ``base``; ``by_sweep(sweeps, histories)`` lays ``run_many``'s flat list out the same way.
"""
import time

from .cache import code_hash, load_run, run_key, run_path, versions, write_json
from .config import RunConfig, check_config


def train_run(config, checkpoint=None, progress=True):
    """Train ``config`` from scratch (or from ``checkpoint``) and return its history; writes no result file."""
    from .. import gc
    from ..backend import set_backend
    from ..train import fit
    from .measure import measure
    from .prepare import build_model, prepare_data

    set_backend(config.backend)
    t0 = time.time()
    data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    params = model.init(config.seed, dtype=config.dtype, backend=config.backend)
    penalty = (gc.make_gc_penalty(model, config.gc_reg, method=config.gc_reg_method, seed=config.seed)
               if config.gc_reg else None)
    res = fit(model, params, data.X_train, data.y_train_dev, lr=config.lr, batch_size=config.batch_size,
              steps=config.steps, l2=config.l2, momentum=config.momentum, penalty=penalty,
              eval_every=config.eval_every, seed=config.seed, progress=progress, checkpoint=checkpoint,
              on_eval=lambda step, p: measure(model, p, data, config.fewshot_episodes, config.seed, tuple(config.extras),
                                              probe=config.fewshot_probe, step=step),
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
    write_json(path, history)
    if ckpt.exists():
        ckpt.unlink()
    return history


def train_in_worker(config_dict, checkpoint_dir, fresh):
    """A Dask task: train the run and return its history (the client writes it to the cache).

    The checkpoint lives in ``checkpoint_dir`` on the worker's own disk (None: the worker's local directory,
    ``dask_runner.worker_checkpoint_dir``), so a worker restarted on the same machine resumes it; the client's
    cache is never touched here.
    """
    from pathlib import Path

    from .dask_runner import worker_checkpoint_dir

    config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config_dict.items()})
    checkpoint_dir = checkpoint_dir or worker_checkpoint_dir()
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    ckpt = Path(checkpoint_dir) / f"{run_key(config)}.ckpt.npz"
    if fresh and ckpt.exists():
        ckpt.unlink()
    history = train_run(config, checkpoint=str(ckpt), progress=False)
    if ckpt.exists():
        ckpt.unlink()
    return history


def todo(configs, cache_dir=None, fresh=False):
    """The distinct configs of ``configs`` that must be trained (all with ``fresh``), longest first."""
    unique = {run_key(c): c for c in configs}
    left = [c for c in unique.values() if fresh or load_run(c, cache_dir) is None]
    return sorted(left, key=lambda c: -(c.steps * c.batch_size * (3 if c.gc_reg else 1)))


def run_many(configs, cache_dir=None, jobs=1, fresh=False, progress=True, dask=None):
    """Histories of every config (in order), training only those not already cached.

    ``jobs > 1``: parallel processes (joblib, one BLAS thread each when they fill the cores). ``dask``: a
    scheduler address ``tcp://host:port`` or ``local[:N]`` (a LocalCluster started here). An interrupted sweep
    keeps every finished run; rerunning the same command resumes.
    """
    from .progress import RunsBar

    configs = list(configs)
    for c in configs:  # a run that cannot be built stops the sweep before any run trains
        check_config(c)
    left = todo(configs, cache_dir, fresh)
    if left:
        watch = [(run_path(c, cache_dir).with_suffix(".ckpt.npz"), c.steps) for c in left]
        with RunsBar(len(left), jobs=jobs, dask=dask, enabled=progress, configs=watch) as bar:
            if dask:
                from .dask_runner import run_on_dask

                for history in run_on_dask(left, dask, fresh):
                    theirs = history.get("versions", {}).get("code_hash")
                    if theirs != code_hash():  # the client's cache must only hold runs of the client's code
                        raise ValueError(f"--dask: a worker ran other code (code hash {theirs}, here {code_hash()}); "
                                         "install the same minigcnc on every worker")
                    write_json(run_path_of(history, cache_dir), history)
                    bar.finished(history)
            elif jobs == 1 or len(left) == 1:
                for c in left:
                    history = run(c, cache_dir, fresh=fresh, progress=progress and bar.inner_bars)
                    bar.finished(history)
            else:
                for history in run_parallel(left, cache_dir, jobs, fresh):
                    bar.finished(history)
    return [load_run(c, cache_dir) for c in configs]


def run_path_of(history, cache_dir):
    """The cache path of a history returned by a worker."""
    return run_path(RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in history["config"].items()}),
                    cache_dir)


def quiet_run(config, cache_dir, fresh, blas_threads):
    """One run in a worker process, without a progress bar, with ``blas_threads`` BLAS threads.

    tqdm gets a thread lock here: its default one holds a process semaphore, which a worker killed on Ctrl-C
    could not release (Python then warns of "leaked semaphore objects" at exit).
    """
    import threading

    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return run(config, cache_dir, fresh=fresh, progress=False)


def run_parallel(configs, cache_dir, jobs, fresh):
    """Yield the histories of ``configs`` as they finish, trained in ``jobs`` processes (joblib)."""
    import os

    from joblib import Parallel, delayed

    cores = os.cpu_count() or 1
    blas_threads = max(1, cores // jobs)
    par = Parallel(n_jobs=jobs, return_as="generator_unordered")
    try:
        yield from par(delayed(quiet_run)(c, cache_dir, fresh, blas_threads) for c in configs)
    except BaseException:  # Ctrl-C (or an error) with runs going: stop the workers now, leaking nothing
        stop_workers()
        raise


def stop_workers():
    """Kill joblib's worker processes now (each run in progress keeps its last checkpoint), so that Ctrl-C
    leaves no process behind."""
    try:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def sweep_configs(base, grid, seeds):
    """{field: [[config per value] per seed]}: every sweep changes one field of ``base``; any field works."""
    unknown = [f for f in grid if f not in RunConfig.__dataclass_fields__]
    if unknown:
        raise ValueError(f"grid: {unknown} are not RunConfig fields; sweepable fields: "
                         f"{', '.join(RunConfig.__dataclass_fields__)}")
    return {field: [[base.replace(seed=s, **{field: v}) for v in values] for s in seeds]
            for field, values in grid.items()}


def flat(sweeps):
    """All configs of ``sweeps`` in a fixed order (duplicates share a cache key and train once)."""
    return [c for per_seed in sweeps.values() for cs in per_seed for c in cs]


def by_sweep(sweeps, histories):
    """{field: [[history per value] per seed]} matching ``sweep_configs``, from ``run_many``'s flat list."""
    it = iter(histories)
    return {field: [[next(it) for _ in cs] for cs in per_seed] for field, per_seed in sweeps.items()}
