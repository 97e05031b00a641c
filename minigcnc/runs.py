"""Experiment runs: a config, a cached result, parallel sweeps, and the command line every figure shares.

- ``RunConfig``: one training run (dataset, model, lr, batch size, steps, L2, GC penalty, seed, ...).
- ``run(config, cache_dir)``: trains with ``train.fit`` and records ``measure.measure`` at every evaluation;
  returns the run's history (a JSON-able dict). The result is cached under a hash of the config, written
  atomically; a finished run is reused; an interrupted run resumes from its last checkpoint.
- ``run_many(configs, ...)``: a sweep, in parallel with joblib (``jobs``), or on a cluster through
  joblib's Dask backend (``dask="tcp://scheduler:8786"``; needs the ``dask`` extra). Finished runs are
  never redone; a diverged run is recorded as diverged and the sweep goes on.
- ``figure_parser`` / ``figure_outputs`` / ``write_json``: the shared command line
  (``--scale tiny|laptop|paper --jobs --fresh --out --cache --backend --quiet --dask``) and outputs.

Cache location: ``--cache DIR``, else ``$MINIGCNC_CACHE``, else ``DIR/cache`` when ``--out DIR`` is given,
else ``~/.cache/minigcnc``.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as onp

from . import data as data_mod
from .backend import asarray, backend_module, set_backend
from .models import build

SCHEMA = 1  # bump when the recorded metrics change meaning, so old cached runs are not reused
SCALES = ("tiny", "laptop", "paper")


@dataclass
class RunConfig:
    """One training run. ``hidden``/``channels``/``width`` shape the model (see ``models.build``)."""

    dataset: str = "mnist5k"
    model: str = "mlp"
    hidden: tuple = (256, 256, 64)
    channels: tuple = ()
    width: float = 1.0
    classes: tuple = ()  # source classes (empty: all)
    target_classes: tuple = ()  # unseen classes for transfer metrics (empty: none, or all of target_dataset)
    target_dataset: str = ""  # dataset of the target classes (empty: the source dataset; "cifarfs": its test classes)
    lr: float = 0.05
    batch_size: int = 128
    steps: int = 3000
    l2: float = 0.0
    gc_reg: float = 0.0
    gc_reg_method: str = "exact"
    momentum: float = 0.0
    eval_every: int = 250
    eval_per_class: int = 50
    fewshot_episodes: int = 0
    fewshot_probe: bool = False  # also a logistic-regression probe per few-shot episode (measure: fewshot5_logreg)
    extras: tuple = ()  # names of extra metric groups (measure.register_extra), e.g. ("gc_estimators",)
    seed: int = 0
    dtype: str = "float64"
    backend: str = "numpy"
    data_root: str = None  # where local dataset files live; not part of the hash

    def key(self):
        """A short hash of everything that changes the result."""
        defaults = RunConfig.__new__(RunConfig)
        defaults.__init__()
        d = {k: v for k, v in dataclasses.asdict(self).items()
             if k != "data_root" and json.dumps(v, default=list) != json.dumps(getattr(defaults, k), default=list)}
        d["schema"] = SCHEMA  # fields at their defaults are left out, so adding a field keeps old keys
        blob = json.dumps(d, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass
class RunData:
    """The arrays of one run: standardized train/test images of the source classes, the fixed evaluation
    subset for GC, Gaussian-proxy Poincare constants per class, and the target classes (if any)."""

    X_train: object
    y_train: onp.ndarray
    X_test: object
    y_test: onp.ndarray
    X_eval: object
    y_eval: onp.ndarray
    rho: onp.ndarray
    n_classes: int
    input_shape: tuple
    X_target: object = None
    y_target: onp.ndarray = None
    n_target_classes: int = 0
    y_train_dev: object = None
    y_test_dev: object = None
    y_eval_dev: object = None


CIFARFS_TEST_FRACTION = 1 / 6  # CIFAR-FS source classes: 500 train / 100 test of each class's 600 images


def _source_splits(dataset, data_root):
    """(X_train, y_train, X_test, y_test) of ``dataset``; for ``"cifarfs"`` the 64 train classes, split 5:1 per class."""
    if dataset == "cifarfs":
        X, y = data_mod.load("cifarfs", "train", root=data_root)
        tr, te = data_mod.split_per_class(y, CIFARFS_TEST_FRACTION, seed=0)
        return X[tr], y[tr], X[te], y[te]
    Xtr, ytr = data_mod.load(dataset, "train", root=data_root)
    Xte, yte = data_mod.load(dataset, "test", root=data_root)
    return Xtr, ytr, Xte, yte


def _target_pool(dataset, data_root):
    """(X, y): every image of ``dataset`` (train and test) for transfer; for ``"cifarfs"`` its 20 test classes."""
    if dataset == "cifarfs":
        return data_mod.load("cifarfs", "test", root=data_root)
    Xtr, ytr = data_mod.load(dataset, "train", root=data_root)
    Xte, yte = data_mod.load(dataset, "test", root=data_root)
    return onp.concatenate([Xtr, Xte]), onp.concatenate([ytr, yte])


@lru_cache(maxsize=4)
def _host_data(dataset, classes, target_classes, eval_per_class, data_root, target_dataset=""):
    Xtr, ytr, Xte, yte = _source_splits(dataset, data_root)
    Xt = yt = None
    if target_classes or target_dataset:
        if target_dataset or dataset == "cifarfs":
            Xt, yt = _target_pool(target_dataset or dataset, data_root)
        else:  # the source dataset's own arrays, already loaded
            Xt, yt = onp.concatenate([Xtr, Xte]), onp.concatenate([ytr, yte])
        if target_classes:
            Xt, yt = data_mod.class_split(Xt, yt, list(target_classes))
    if classes:
        Xtr, ytr = data_mod.class_split(Xtr, ytr, list(classes))
        Xte, yte = data_mod.class_split(Xte, yte, list(classes))
    std = data_mod.standardize(Xtr, Xte, *([Xt] if Xt is not None else []))
    Xtr, Xte = std[2], std[3]
    Xt = std[4] if Xt is not None else None
    idx = data_mod.stratified_subset(ytr, eval_per_class, onp.random.default_rng(12345))
    from .bounds import poincare_constants

    rho = poincare_constants(Xtr.reshape(len(Xtr), -1), ytr)
    return Xtr, ytr, Xte, yte, idx, rho, Xt, yt


def prepare_data(config):
    """``RunData`` for ``config``: loaded once per process, standardized with the source-train statistics."""
    Xtr, ytr, Xte, yte, idx, rho, Xt, yt = _host_data(
        config.dataset, tuple(config.classes), tuple(config.target_classes), config.eval_per_class, config.data_root,
        config.target_dataset)
    dev = lambda a: asarray(a, dtype=config.dtype, backend=config.backend)  # noqa: E731
    ints = lambda a: asarray(a, backend=config.backend)  # noqa: E731
    return RunData(
        X_train=dev(Xtr), y_train=ytr, X_test=dev(Xte), y_test=yte, X_eval=dev(Xtr[idx]), y_eval=ytr[idx], rho=rho,
        n_classes=int(ytr.max()) + 1, input_shape=tuple(Xtr.shape[1:]),
        X_target=None if Xt is None else dev(Xt), y_target=yt, n_target_classes=0 if yt is None else int(yt.max()) + 1,
        y_train_dev=ints(ytr), y_test_dev=ints(yte), y_eval_dev=ints(ytr[idx]),
    )


def build_model(config, n_classes, input_shape):
    """The model named by ``config.model`` with its size fields."""
    if config.model == "mlp":
        return build("mlp", input_shape, n_classes, hidden=tuple(config.hidden))
    if config.model == "convnet":
        kw = {"hidden": tuple(config.hidden)}
        if config.channels:
            kw["channels"] = tuple(config.channels)
        return build("convnet", input_shape, n_classes, **kw)
    if config.model in ("vgg11", "vgg13"):
        return build(config.model, input_shape, n_classes, width=config.width)
    return build(config.model, input_shape, n_classes, width=config.width)


# --------------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------------
def default_cache_dir():
    """``$MINIGCNC_CACHE`` or ``~/.cache/minigcnc``."""
    return Path(os.environ.get("MINIGCNC_CACHE") or Path.home() / ".cache" / "minigcnc")


def run_path(config, cache_dir=None):
    """Where the finished run of ``config`` is stored: ``<cache>/runs/<hash>.json``."""
    return Path(cache_dir or default_cache_dir()) / "runs" / f"{config.key()}.json"


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
    os.replace(tmp, path)


def load_run(config, cache_dir=None):
    """The cached history of ``config``, or None when it has not finished."""
    path = run_path(config, cache_dir)
    if not path.exists():
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError:
        return None  # a damaged file is recomputed


def versions():
    """Versions of the software that produced a result (read from package metadata: no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("minigcnc", "numpy", "autograd", "matplotlib", "scikit-learn", "cupy-cuda12x", "cupy-cuda13x", "cupy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------
def run(config, cache_dir=None, fresh=False, progress=True):
    """Train ``config`` (or reuse its cached result) and return its history.

    history = {"config", "key", "status": "finished" | "diverged", "message", "seconds",
               "evals": [{"step": s, metric: value, ...}, ...], "versions"}.
    """
    from . import gc
    from .measure import measure
    from .train import fit

    path = run_path(config, cache_dir)
    ckpt = path.with_suffix(".ckpt.npz")
    if not fresh:
        done = load_run(config, cache_dir)
        if done is not None:
            return done
    elif ckpt.exists():
        ckpt.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    set_backend(config.backend)
    t0 = time.time()
    data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    params = model.init(config.seed, dtype=config.dtype, backend=config.backend)
    penalty = gc.make_gc_penalty(model, config.gc_reg, method=config.gc_reg_method) if config.gc_reg else None
    res = fit(model, params, data.X_train, data.y_train_dev, lr=config.lr, batch_size=config.batch_size,
              steps=config.steps, l2=config.l2, momentum=config.momentum, penalty=penalty,
              eval_every=config.eval_every, seed=config.seed, progress=progress, checkpoint=str(ckpt),
              on_eval=lambda step, p: measure(model, p, data, config.fewshot_episodes, config.seed, tuple(config.extras),
                                              probe=config.fewshot_probe, step=step),
              desc=f"{config.model} lr={config.lr:g} bs={config.batch_size} l2={config.l2:g} seed={config.seed}")
    history = {
        "config": config.to_dict(), "key": config.key(), "model": model.name,
        "status": "diverged" if res.diverged else "finished", "message": res.message,
        "seconds": time.time() - t0, "evals": res.history,
        "losses": res.losses[:: max(1, len(res.losses) // 500)], "versions": versions(),
    }
    write_json(path, history)
    if ckpt.exists():
        ckpt.unlink()
    return history


def _run_quiet(config, cache_dir, fresh):
    return run(config, cache_dir, fresh=fresh, progress=False)


def run_many(configs, cache_dir=None, jobs=1, fresh=False, progress=True, dask=None):
    """Histories of every config (in order), running only those not already cached.

    jobs > 1 runs them in parallel processes with joblib; ``dask`` (a scheduler address) sends them to a
    Dask cluster through joblib's Dask backend. An interrupted sweep keeps every finished run.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    todo = [c for c in configs if fresh or load_run(c, cache_dir) is None]
    unique = list({c.key(): c for c in todo}.values())
    if unique:
        if dask:
            _run_with_dask(unique, cache_dir, fresh, dask)
        elif jobs == 1 or len(unique) == 1:
            for c in tqdm(unique, desc="runs", disable=None if progress else True):
                run(c, cache_dir, fresh=fresh, progress=progress)
        else:
            from joblib import Parallel, delayed

            par = Parallel(n_jobs=jobs, return_as="generator_unordered")
            gen = par(delayed(_run_quiet)(c, cache_dir, fresh) for c in unique)
            for _ in tqdm(gen, total=len(unique), desc=f"runs ({jobs} jobs)", disable=None if progress else True):
                pass
    return [load_run(c, cache_dir) for c in configs]


def _run_with_dask(configs, cache_dir, fresh, address):
    try:
        from dask.distributed import Client
        from joblib import Parallel, delayed, parallel_config
    except ImportError as e:
        raise ValueError("--dask needs dask.distributed: pip install -e \".[dask]\"") from e
    with Client(address):
        with parallel_config(backend="dask"):
            Parallel()(delayed(_run_quiet)(c, cache_dir, fresh) for c in configs)


# --------------------------------------------------------------------------------------------------
# the command line every figure shares
# --------------------------------------------------------------------------------------------------
def figure_parser(prog, description):
    """argparse parser with the options every ``python -m minigcnc.figureN`` takes."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="laptop",
                   help="tiny: seconds (tests); laptop: the default, minutes on 2 cores; paper: the paper's models (GPU)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel runs (default: 2)")
    p.add_argument("--fresh", action="store_true", help="recompute runs even if cached")
    p.add_argument("--out", default=None, help="folder for the figure PNG and JSON (default: ./figures)")
    p.add_argument("--cache", default=None, help="result cache (default: $MINIGCNC_CACHE, OUT/cache, ~/.cache/minigcnc)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None, help="array backend (default: numpy; cupy at paper scale)")
    p.add_argument("--data-root", default=None, help="folder with local dataset files (CIFAR, MNIST) for paper scale")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="run the sweep on a Dask scheduler (needs the dask extra)")
    return p


def resolve_cache(args):
    """The cache folder chosen by ``--cache``, ``$MINIGCNC_CACHE`` or ``--out``."""
    if args.cache:
        return Path(args.cache)
    if os.environ.get("MINIGCNC_CACHE"):
        return Path(os.environ["MINIGCNC_CACHE"])
    if args.out:
        return Path(args.out) / "cache"
    return default_cache_dir()


def figure_outputs(name, scale, out=None):
    """(png path, json path): ``figures/<name>.png`` at laptop scale, ``<name>_<scale>.png`` otherwise."""
    folder = Path(out) if out else Path("figures")
    stem = name if scale == "laptop" else f"{name}_{scale}"
    return folder / f"{stem}.png", folder / f"{stem}.json"


def save_figure(fig, path):
    """Save a matplotlib figure atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)


def write_figure(name, scale, out, fig, doc, claims, t0):
    """Save ``fig`` and the JSON ``doc`` (plus claims, versions, wall time), print the claim table.

    The common end of every ``python -m minigcnc.figureN``; returns (png path, json path).
    """
    from .experiments.claims import claim_table

    png, js = figure_outputs(name, scale, out)
    save_figure(fig, png)
    write_json(js, {**doc, "claims": [c.to_dict() for c in claims], "versions": versions(),
                    "wall_seconds": time.time() - t0})
    print(claim_table(claims))
    print(f"\nwrote {png} and {js} in {time.time() - t0:.1f} s", file=sys.stderr)
    return png, js


def seed_groups(histories, configs, by):
    """{value of field ``by``: [histories over seeds]} in the order the values first appear."""
    out = {}
    for h, c in zip(histories, configs):
        out.setdefault(getattr(c, by), []).append(h)
    return out


def series(history, metric):
    """(steps, values) of ``metric`` over the evaluations of one run (NaN where missing)."""
    evals = history["evals"]
    steps = onp.array([e["step"] for e in evals], dtype=float)
    vals = onp.array([e.get(metric, float("nan")) for e in evals], dtype=float)
    return steps, vals


def final(history, metric):
    """The last recorded value of ``metric`` (NaN for a diverged run: its end state is not comparable)."""
    if history["status"] != "finished" or not history["evals"]:
        return float("nan")
    return float(history["evals"][-1].get(metric, float("nan")))


def run_sweep(name, args, configs):
    """The histories of ``configs`` for a figure's parsed command line (cache, jobs, fresh, quiet, dask).

    The two mistakes a user of the command line makes most, a backend this machine lacks and a dataset file
    not on disk, end the command with their message (which names the fix) instead of a traceback.
    """
    cache = resolve_cache(args)
    print(f"{name}: scale={args.scale}, {len({c.key() for c in configs})} runs, cache={cache}", file=sys.stderr)
    try:
        for b in sorted({c.backend for c in configs}) if not args.dask else ():  # (Dask workers have their own)
            backend_module(b)  # loads and checks CuPy once, before any run starts
    except ValueError as e:
        raise SystemExit(f"{name}: {e}") from None
    try:
        return run_many(configs, cache, jobs=args.jobs, fresh=args.fresh, progress=not args.quiet, dask=args.dask)
    except FileNotFoundError as e:
        raise SystemExit(f"{name}: a dataset file is missing (give its folder with --data-root DIR).\n{e}") from None
