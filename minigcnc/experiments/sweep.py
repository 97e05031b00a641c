"""Running experiments: one run, a sweep of runs (in parallel with joblib, or on a Dask cluster), one layout.

- ``run(config, cache_dir)``: trains with ``train.fit``, records ``measure.measure`` at every evaluation and
  returns the run's history (see ``history.py``); a finished run is read from the cache instead, an
  interrupted one resumes from its checkpoint.
- ``run_many(configs, ...)``: the histories of a list of configs, training only what the cache lacks, longest
  runs first (``cached_and_todo``: what the cache holds and what is left, each run's file read once).
  ``jobs > 1`` runs them in parallel processes (joblib); ``dask="local[:N]"`` on a ``LocalCluster`` of N
  workers, ``dask="tcp://host:port"`` on a running scheduler (``dask_runner.run_on_dask``, handed the task
  ``train_in_worker``). Workers send each history back and the client writes the cache, so Dask workers need
  no shared disk. A diverged run is recorded as diverged and the sweep goes on. Ctrl-C, ``kill PID`` (SIGTERM)
  and a closed terminal (SIGHUP) all stop the sweep the same way: the workers are stopped, every finished run
  and the last checkpoint of each run in progress are kept.
- ``check_configs(configs)``: every field of every config checked before any run trains (``run_many`` calls it),
  one ValueError naming the field, the bad value, what is accepted and the fix.
- ``sweep_configs(base, grid, seeds)``: the one sweep layout every figure uses,
  ``{field: [[config per value] per seed]}``, each sweep changing one field (any field of ``RunConfig``) of
  ``base``; ``by_sweep(sweeps, histories)`` lays ``run_many``'s flat list out the same way.
"""
import contextlib
import time

from .cache import code_hash, load_run, run_key, run_path, versions, write_json
from .config import RunConfig, check_config
from .dask_runner import run_on_dask, worker_checkpoint_dir


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


def _n_classes(dataset, target=False):
    """How many classes ``dataset`` has (``target``: as a pool of target classes), without loading it."""
    from .. import data

    if dataset.endswith(data.ROTATED_SUFFIX):
        return data.N_ROTATIONS * _n_classes(dataset[: -len(data.ROTATED_SUFFIX)])
    if dataset == "cifarfs":  # its 64 train classes are the source; its 20 test classes the target pool
        return len(data.CIFARFS_TEST) if target else len(data.cifarfs_class_names("train"))
    return 100 if dataset == "cifar100" else 10


def field_checks(config):
    """(field, check) for every field of ``config`` but model and activation (``config.check_config``'s).

    Each check raises a ValueError or TypeError saying what is accepted: the checkers of ``minigcnc.checks``,
    with the bounds ``train.fit`` uses too.
    """
    from numbers import Integral

    from .. import checks, data
    from ..backend import backend_module
    from ..gc import PENALTY_METHODS
    from .measure import EXTRAS

    def sequence(name, v):
        if not isinstance(v, (tuple, list)):
            raise TypeError(f"{name} must be a tuple; got {type(v).__name__} {v!r}")
        return v

    def backend(v):
        """numpy, cupy (CuPy itself is loaded, and checked, when the backends load) or a device backend
        registered with ``backend.register_device`` (``backend_module`` names them all when ``v`` is unknown)."""
        if v in ("numpy", "cupy"):
            return
        if not isinstance(v, str) or v != v.lower():
            checks.one_of("backend", v, ("numpy", "cupy"))
        backend_module(v)

    def sizes(name):
        return lambda v: [checks.integer(f"{name}[{i}]", x, minimum=1) for i, x in enumerate(sequence(name, v))]

    def labels(name, dataset, target=False):
        n = _n_classes(dataset, target)

        def check(v):
            ints = all(isinstance(c, Integral) and not isinstance(c, bool) and 0 <= c < n for c in sequence(name, v))
            if not ints or len(v) == 1 or len(set(v)) < len(v):
                raise ValueError(f"{name} must be empty (every class) or 2 or more distinct labels among the {n} "
                                 f"{'target ' if target else ''}classes of {dataset} (0..{n - 1}); got {v!r}")
        return check

    known = config.dataset in data.DATASETS and config.target_dataset in ("",) + data.DATASETS
    target = config.target_dataset or config.dataset
    return [
        ("dataset", lambda v: checks.one_of("dataset", v, data.DATASETS)),
        ("target_dataset", lambda v: checks.one_of("target_dataset", v, ("",) + data.DATASETS)),
        ("hidden", sizes("hidden")),
        ("channels", sizes("channels")),
        ("width", lambda v: checks.number("width", v, 0.0, low_open=True)),
        ("classes", labels("classes", config.dataset) if known else lambda v: None),
        ("target_classes", labels("target_classes", target, target=True) if known else lambda v: None),
        ("lr", lambda v: checks.number("lr", v, 0.0, low_open=True)),
        ("batch_size", lambda v: checks.integer("batch_size", v, minimum=1)),
        ("steps", lambda v: checks.integer("steps", v, minimum=1)),
        ("l2", lambda v: checks.number("l2", v, 0.0)),
        ("gc_reg", lambda v: checks.number("gc_reg", v, 0.0)),
        ("gc_reg_method", lambda v: checks.one_of("gc_reg_method", v, PENALTY_METHODS)),
        ("momentum", lambda v: checks.number("momentum", v, 0.0, high=1.0)),
        ("eval_every", lambda v: checks.integer("eval_every", v, minimum=1)),
        ("eval_per_class", lambda v: checks.integer("eval_per_class", v, minimum=1)),
        ("fewshot_episodes", lambda v: checks.integer("fewshot_episodes", v, minimum=0)),
        ("fewshot_probe", lambda v: checks.one_of("fewshot_probe", v, (False, True))),
        ("extras", lambda v: [checks.one_of("extras", x, tuple(EXTRAS)) for x in sequence("extras", v)]),
        ("seed", lambda v: checks.integer("seed", v, minimum=0)),
        ("dtype", lambda v: checks.one_of("dtype", v, ("float32", "float64"))),
        ("backend", backend),
    ]


def check_configs(configs, options=None):
    """Check every field of every config before any run trains; a bad one raises one ValueError.

    The message names the field, the bad value, what is accepted and the fix (``options``: {field: the
    command-line option that set it}, named in the fix).

    It lives here and not in ``config.py``: that module is part of the code hash (``cache.py``), and a new check
    there would make every cached run look like a run of other code.
    """
    configs = list(configs)
    for i, c in enumerate(configs):
        try:
            check_config(c)  # model and activation: the messages start with the field's name
        except ValueError as e:
            raise ValueError(f"{e}{_fix_of(str(e).partition(':')[0], i, configs, options)}") from None
        for field, check in field_checks(c):
            try:
                check(getattr(c, field))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{e}{_fix_of(field, i, configs, options)}") from None


def _fix_of(field, i, configs, options):
    """The end of ``check_configs``'s message: which run, and where to change the value."""
    if options and field in options:
        return f"; fix: give another {options[field]}"
    value, n = getattr(configs[i], field), len(configs)
    if n == 1:
        return f"; fix: set {field} to an accepted value"
    if all(getattr(c, field) == value for c in configs):
        return f"; fix: set {field} to an accepted value (all {n} runs have this one)"
    return f"; fix: set {field} to an accepted value in run {i + 1} of {n} (seed {configs[i].seed}) of the sweep"


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
                    write_json(run_path_of(history, cache_dir), history)
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
