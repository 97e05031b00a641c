"""Running many runs: a sweep, in this process, in parallel processes (joblib) or on a Dask cluster.

- ``run_many(configs, ...)``: the histories of a list of configs, training only what the cache lacks, longest
  runs first (``cached_and_todo``: what the cache holds and what is left, each run's file read once). Every
  field of every config is checked first (``config.check_configs``). One run is ``run.run``; ``jobs > 1`` runs
  them in parallel processes (joblib); ``dask="local[:N]"`` on a ``LocalCluster`` of N workers,
  ``dask="tcp://host:port"`` on a running scheduler (``dask_runner.run_on_dask``, handed the task
  ``run.train_in_worker``). Workers send each history back and the client writes the cache, so Dask workers need
  no shared disk. A diverged run is recorded as diverged and the sweep goes on. Ctrl-C, ``kill PID`` (SIGTERM)
  and a closed terminal (SIGHUP) all stop the sweep the same way: the workers are stopped, every finished run
  and the last checkpoint of each run in progress are kept.

The layout of a figure's runs (``sweep_configs``, ``flat``, ``by_sweep``) is ``grid.py``'s.
"""
import contextlib

from .cache import code_hash, load_run, run_key, run_path, store_run
from .config import RunConfig, check_configs
from .dask_runner import run_on_dask
from .run import run, train_in_worker


def cached_and_todo(configs, cache_dir=None, fresh=False):
    """({key: history} of the distinct configs of ``configs`` the cache holds (none with ``fresh``), [the distinct
    configs that must be trained, longest first]); each run's file is read once."""
    unique = {run_key(c): c for c in configs}
    cached = {} if fresh else {k: h for k, c in unique.items() if (h := load_run(c, cache_dir)) is not None}
    left = [c for k, c in unique.items() if k not in cached]
    return cached, sorted(left, key=lambda c: -(c.steps * c.batch_size * (3 if c.gc_reg else 1)))


def todo(configs, cache_dir=None, fresh=False):
    """The distinct configs of ``configs`` that must be trained (all with ``fresh``), longest first."""
    return cached_and_todo(configs, cache_dir, fresh)[1]


def run_many(configs, cache_dir=None, jobs=1, fresh=False, progress=True, dask=None, plan=None):
    """Histories of every config (in order), training only those not already cached.

    ``jobs > 1``: parallel processes (joblib, one BLAS thread each when they fill the cores). ``dask``: a
    scheduler address ``tcp://host:port`` or ``local[:N]`` (a LocalCluster started here). An interrupted sweep
    keeps every finished run; rerunning the same command resumes. ``plan``: ``cached_and_todo(configs,
    cache_dir, fresh)`` when the caller has it already (``cli.run_sweep`` counts the runs with it first), so
    that the cache is read once; a plan made for more configs trains only these, one made for others is refused.
    """
    import copy

    from .progress import RunsBar

    configs = list(configs)
    check_configs(configs)  # a run that cannot be built stops the sweep before any run trains
    cached, left = plan if plan is not None else cached_and_todo(configs, cache_dir, fresh)
    keys = {run_key(c) for c in configs}
    cached, left = {k: h for k, h in cached.items() if k in keys}, [c for c in left if run_key(c) in keys]
    if len(cached) + len(left) != len(keys):
        raise ValueError("run_many: plan was made for other configs; give cached_and_todo(configs, cache_dir, fresh)")
    if left:
        watch = [(run_path(c, cache_dir).with_suffix(".ckpt.npz"), c.steps) for c in left]
        with stop_signals_interrupt(), \
                RunsBar(len(left), jobs=jobs, dask=dask, enabled=progress, configs=watch) as bar:
            if dask:
                for history in run_on_dask(train_in_worker, left, dask, fresh):
                    theirs = history.get("versions", {}).get("code_hash")
                    if theirs != code_hash():  # the client's cache must only hold runs of the client's code
                        raise ValueError(f"--dask: a worker ran other code (code hash {theirs}, here {code_hash()}); "
                                         "install the same minigcnc on every worker")
                    store_run(run_path_of(history, cache_dir), history)
                    bar.finished(history)
            elif jobs == 1 or len(left) == 1:
                for c in left:
                    history = run(c, cache_dir, fresh=fresh, progress=progress and bar.inner_bars)
                    bar.finished(history)
            else:
                for history in run_parallel(left, cache_dir, jobs, fresh):
                    bar.finished(history)
    histories = {**cached, **{run_key(c): load_run(c, cache_dir) for c in left}}  # as written to the cache
    out, seen = [], set()
    for key in map(run_key, configs):
        out.append(copy.deepcopy(histories[key]) if key in seen else histories[key])  # a repeat: its own copy
        seen.add(key)
    return out


@contextlib.contextmanager
def stop_signals_interrupt():
    """While the block runs, SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does.

    So ``kill PID`` and a closed terminal stop a sweep as Ctrl-C does: its workers are stopped
    (``run_parallel``) and the command ends with the same message.

    Only in the main thread (Python delivers signals there), only for the signals this platform has (Windows has
    no SIGHUP), and not for a signal that is ignored (``nohup`` ignores SIGHUP: it keeps doing so); the previous
    handlers come back afterwards.
    """
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)  # (None: set outside Python)


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
