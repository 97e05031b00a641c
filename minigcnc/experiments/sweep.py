"""Running many runs: a sweep, in this process, in parallel processes (joblib) or on a Dask cluster.

- ``run_many(configs, ...)``: the histories of a list of configs, training only what the cache lacks, longest
  runs first (``cached_and_todo``: what the cache holds and what is left, each run's file read once). Every
  field of every config is checked first (``config.check_configs``). One run is ``run.run``; ``jobs > 1`` runs
  them in parallel processes (joblib); ``dask="local[:N]"`` on a ``LocalCluster`` of N workers,
  ``dask="tcp://host:port"`` on a running scheduler (``dask_runner.run_on_dask``, handed the task
  ``run.train_in_worker``). Workers send each history back and the client writes the cache, so Dask workers need
  no shared disk; a worker that sees the client's cache folder keeps its checkpoints there (``dask_task``), so
  an interrupted Dask sweep resumes from them too. A diverged run is recorded as diverged and the sweep goes on.
  Ctrl-C, ``kill PID`` (SIGTERM) and a closed terminal (SIGHUP) all stop the sweep the same way: the workers are
  stopped, every finished run and the last checkpoint of each run in progress are kept. ``kill -9`` of the
  command leaves no worker either: each joblib worker watches its parent (``watch_parent``) and ends within a
  second of it. A joblib worker killed on its own (out of memory, ``kill -9``) costs its run's steps since the
  last checkpoint: the runs left are started again once, then ``WorkerDied`` says what was kept.
- Before any run trains, every field of every config is checked, and so is every run's feasibility against
  its data (``check_feasible``: batch size against the training set, ``eval_per_class`` against each class).
- Metrics of your own (``measure.register_extra``, e.g. in your script) are sent to the workers, joblib's and
  Dask's, with the hash of their code the client computed (``cache.extra_code``), so ``jobs=N`` and Dask
  record them too.

The layout of a figure's runs (``sweep_configs``, ``flat``, ``by_sweep``) is ``grid.py``'s.
"""
import contextlib
import os
import sys
from pathlib import Path

from .cache import code_hash, load_run, run_key, run_path, store_run
from .config import RunConfig, check_configs
from .dask_runner import run_on_dask
from .run import run, train_in_worker


class WorkerDied(RuntimeError):
    """A joblib worker process died (killed: out of memory, ``kill -9``) twice in one sweep."""


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

    ``jobs > 1``: parallel processes (joblib, one BLAS thread each when they fill the cores; never more
    processes than runs to train). ``dask``: a scheduler address ``tcp://host:port`` or ``local[:N]`` (a
    LocalCluster started here). An interrupted sweep keeps every finished run; rerunning the same command
    resumes. ``plan``: ``cached_and_todo(configs, cache_dir, fresh)`` when the caller has it already
    (``cli.run_sweep`` counts the runs with it first), so that the cache is read once; a plan made for more
    configs trains only these, one made for others is refused.
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
    check_feasible(configs, todo=left, missing_ok=bool(dask))  # (Dask: the data may be on the workers only)
    jobs = max(1, min(int(jobs), len(left)))
    if left:
        watch = [(run_path(c, cache_dir).with_suffix(".ckpt.npz"), c.steps) for c in left]
        with stop_signals_interrupt(), \
                RunsBar(len(left), jobs=jobs, dask=dask, enabled=progress, configs=watch) as bar:
            if dask:
                for history in run_dask(left, cache_dir, dask, fresh):
                    bar.finished(history)
            elif jobs == 1:
                for c in left:
                    history = run(c, cache_dir, fresh=fresh, progress=progress and bar.inner_bars)
                    bar.finished(history)
            else:
                for history in run_parallel_resilient(left, cache_dir, jobs, fresh):
                    bar.finished(history)
    histories = {**cached, **{run_key(c): load_run(c, cache_dir) for c in left}}  # as written to the cache
    out, seen = [], set()
    for key in map(run_key, configs):
        out.append(copy.deepcopy(histories[key]) if key in seen else histories[key])  # a repeat: its own copy
        seen.add(key)
    return out


def check_feasible(configs, todo=None, missing_ok=False):
    """Raise a ValueError, before any run trains, when a run cannot train on its data: a batch larger than its
    training set, or ``eval_per_class`` larger than one of its classes' training images. ``todo``: check only
    these (the runs to train; the message numbers runs in ``configs``). The data are loaded once per (dataset,
    classes, data root); a missing file raises its FileNotFoundError here, too, unless ``missing_ok`` (a Dask
    sweep: the files may lie on the workers only, which then check)."""
    import numpy as onp

    from .prepare import source_splits

    sizes = {}
    wanted = None if todo is None else {run_key(c) for c in todo}
    for i, c in enumerate(configs):
        if wanted is not None and run_key(c) not in wanted:
            continue
        where = (c.dataset, tuple(c.classes), c.data_root)
        if where not in sizes:
            try:
                _, ytr, _, _ = source_splits(c.dataset, c.data_root)
            except FileNotFoundError:
                if not missing_ok:
                    raise
                sizes[where] = None
                continue
            ytr = onp.asarray(ytr)
            if c.classes:
                ytr = ytr[onp.isin(ytr, list(c.classes))]
            labels, counts = onp.unique(ytr, return_counts=True)
            sizes[where] = (len(ytr), labels, counts)
        if sizes[where] is None:
            continue
        n, labels, counts = sizes[where]
        which = f"run {i + 1} of {len(configs)} (seed {c.seed})" if len(configs) > 1 else "the run"
        data = f"{c.dataset}" + (f" classes {list(c.classes)}" if c.classes else "")
        if c.batch_size > n:
            raise ValueError(f"batch_size {c.batch_size} is larger than the training set of {data} ({n} images), in "
                             f"{which}; fix: a batch_size of at most {n}")
        if len(counts) and c.eval_per_class > counts.min():
            small = labels[counts.argmin()]
            raise ValueError(f"eval_per_class {c.eval_per_class} is more than class {small} of {data} has ("
                             f"{counts.min()} training images), in {which}; fix: eval_per_class of at most "
                             f"{counts.min()}")


def own_extras(configs):
    """{name: (function, code hash)} of the extra metrics the configs record that are not minigcnc's own (the
    workers know those from ``measure``): what a worker must register."""
    from . import cache
    from .measure import EXTRAS

    out = {}
    for name in sorted({x for c in configs for x in c.extras}):
        fn = EXTRAS.get(name)
        if fn is not None and (getattr(fn, "__module__", "") or "").split(".")[0] != "minigcnc":
            out[name] = (fn, cache.PINNED_EXTRAS.get(name) or cache.function_code(fn))
    return out


def register_extras(extras):
    """In a worker: register the client's own extra metrics under the code hash the client gave them."""
    from . import cache
    from .measure import EXTRAS

    for name, (fn, code) in (extras or {}).items():
        EXTRAS[name] = fn
        cache.PINNED_EXTRAS[name] = code


def run_dask(configs, cache_dir, address, fresh):
    """Yield the histories of ``configs`` trained on Dask (``dask_runner.run_on_dask``), each written to the
    cache here. The checkpoints go to the cache's ``runs/`` folder when the workers see it (the same machine, a
    shared disk): a probe file tells them; else to each worker's own scratch folder."""
    import secrets
    from functools import partial

    from .cache import default_cache_dir

    runs = (Path(cache_dir or default_cache_dir()) / "runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)
    probe = runs / f".dask-probe-{secrets.token_hex(8)}"
    probe.write_text("")
    try:
        task = partial(dask_task, extras=own_extras(configs), probe=probe.name)
        for history in run_on_dask(task, configs, address, fresh, checkpoint_dir=str(runs)):
            theirs = history.get("versions", {}).get("code_hash")
            if theirs != code_hash():  # the client's cache must only hold runs of the client's code
                raise ValueError(f"--dask: a worker ran other code (code hash {theirs}, here {code_hash()}); "
                                 "install the same minigcnc on every worker")
            path = run_path_of(history, cache_dir)
            store_run(path, history)
            path.with_suffix(".ckpt.npz").unlink(missing_ok=True)  # (a worker that shares the disk left it)
            yield history
    finally:
        probe.unlink(missing_ok=True)


def dask_task(config_dict, checkpoint_dir, fresh, extras=None, probe=None):
    """The Dask task of a sweep: ``run.train_in_worker`` with the client's own extras registered, and the
    checkpoint in the client's cache folder ``checkpoint_dir`` when this worker sees the client's ``probe`` file
    there (kept at the end for the client to remove once the history is written), else in the worker's own
    scratch folder."""
    register_extras(extras)
    shared = bool(checkpoint_dir and probe and (Path(checkpoint_dir) / probe).exists())
    return train_in_worker(config_dict, checkpoint_dir if shared else None, fresh, keep_checkpoint=shared)


def run_parallel_resilient(configs, cache_dir, jobs, fresh, retries=1):
    """``run_parallel``, started again (``retries`` times) on the runs left when a worker process dies; then
    ``WorkerDied``. Each run started again resumes from its last checkpoint."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    left = list(configs)
    for attempt in range(retries + 1):
        done = set()
        try:
            for history in run_parallel(left, cache_dir, jobs, fresh and attempt == 0):
                done.add(history.get("key"))
                yield history
            return
        except TerminatedWorkerError:
            left = [c for c in left if run_key(c) not in done and not run_path(c, cache_dir).exists()]
            if attempt == retries:
                raise WorkerDied(f"a worker process died {retries + 1} times (killed: out of memory, or kill -9); "
                                 f"{len(left)} runs were left unfinished") from None
            print(f"a worker process died (killed: out of memory, or kill -9); starting the {len(left)} runs left "
                  "again, each from its last checkpoint", file=sys.stderr)


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


def quiet_run(config, cache_dir, fresh, blas_threads, parent=None, extras=None):
    """One run in a worker process, without a progress bar, with ``blas_threads`` BLAS threads; the worker
    watches its ``parent`` process (``watch_parent``) and registers the client's own ``extras``.

    tqdm gets a thread lock here: its default one holds a process semaphore, which a worker killed on Ctrl-C
    could not release (Python then warns of "leaked semaphore objects" at exit).
    """
    import threading

    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    if parent is not None:
        watch_parent(parent)
    register_extras(extras)
    tqdm.set_lock(threading.RLock())

    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return run(config, cache_dir, fresh=fresh, progress=False)


def run_parallel(configs, cache_dir, jobs, fresh):
    """Yield the histories of ``configs`` as they finish, trained in ``jobs`` processes (joblib)."""
    from joblib import Parallel, delayed

    cores = os.cpu_count() or 1
    blas_threads = max(1, cores // jobs)
    extras = own_extras(configs)
    par = Parallel(n_jobs=jobs, return_as="generator_unordered")
    try:
        yield from par(delayed(quiet_run)(c, cache_dir, fresh, blas_threads, os.getpid(), extras) for c in configs)
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


_WATCHED = {}  # parent pid -> its watchdog thread (one per worker process)


def watch_parent(pid, interval=0.5):
    """Start (once per process) a daemon thread that ends this process within ``interval`` seconds of its
    parent ``pid``: when the parent is gone, or this process was handed to another parent (what Linux and macOS
    do to the children of a process killed with ``kill -9``). So no worker outlives the command that started
    it, whatever killed that command (on Linux and macOS; on Windows the parent is asked through its handle)."""
    import threading
    import time

    if pid in _WATCHED:
        return
    first_parent = os.getppid()

    from .cache import pid_alive

    def alive():  # (POSIX: a dead parent's children get another parent at once; Windows: ask the process)
        return os.getppid() == first_parent and pid_alive(pid)

    def watch():
        while alive():
            time.sleep(interval)
        os._exit(70)  # (no cleanup: the parent is gone; checkpoints are written atomically)

    _WATCHED[pid] = threading.Thread(target=watch, name="minigcnc-watch-parent", daemon=True)
    _WATCHED[pid].start()
