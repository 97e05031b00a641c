"""Where finished runs are kept, keyed by their config *and* the code that computes them.

A run's file is ``<cache>/runs/<key>.json`` with ``key = config.key(code_hash())``: a hash of the fields that
change the result and of the source of every module that can change it (``RESULT_MODULES``: all of
``minigcnc`` but the figure scripts, the benchmarks and the parts of the engine that only draw, judge or
schedule) and of ``sweep.train_run``, the glue from a config to ``train.fit``. Comments and docstrings are
not part of the hash (it is taken over the parsed code), so editing a comment retrains nothing, while editing
a line of ``gc.py`` or ``train.py`` retrains every run.

Files are written atomically (``checks.write_atomically``); a damaged file, or one that holds another run
(its stored key or config differs from the requested one), is named in a warning and its run is recomputed. Cache folder: ``--cache DIR``, else ``$MINIGCNC_CACHE``, else ``DIR/cache`` when ``--out
DIR`` is given, else ``~/.cache/minigcnc``.
"""
import ast
import hashlib
import json
import os
import platform
import warnings
from functools import lru_cache
from pathlib import Path

from ..checks import write_atomically

PACKAGE = Path(__file__).resolve().parents[1]
# modules (relative to the package) whose code cannot change a run's numbers: they draw, judge, schedule or time
NOT_RESULT_MODULES = ("__init__.py", "__main__.py", "reproduce.py", "bench/", "experiments/cli.py",
                      "experiments/claims.py", "experiments/plotting.py", "experiments/driver.py",
                      "experiments/history.py", "experiments/cache.py", "experiments/sweep.py",
                      "experiments/progress.py", "experiments/dask_runner.py")
# functions of the modules above that do change a run's numbers (the glue from a RunConfig to ``train.fit``)
RESULT_FUNCTIONS = {"experiments/sweep.py": ("train_run",)}


def result_modules(root=None):
    """The package's source files that can change a run's result, sorted (paths relative to the package
    folder ``root``, by default this package)."""
    root = Path(root) if root else PACKAGE
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("figure") or any(rel == m or (m.endswith("/") and rel.startswith(m))
                                           for m in NOT_RESULT_MODULES):
            continue
        out.append(rel)
    return out


def _code_of(path, functions=None):
    """The parsed code of one file (or only of its top-level ``functions``), without docstrings and comments,
    as a canonical string."""
    tree = ast.parse(Path(path).read_text())
    if functions is not None:
        tree.body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in functions]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@lru_cache(maxsize=8)
def code_hash(root=None):
    """A short hash of the code of every module in ``result_modules(root)`` and of ``RESULT_FUNCTIONS``
    (read once per process and root; ``root``: a copy of the package folder, by default this package)."""
    root = Path(root) if root else PACKAGE
    h = hashlib.sha256()
    for rel in result_modules(root):
        h.update(rel.encode())
        h.update(_code_of(root / rel).encode())
    for rel, functions in sorted(RESULT_FUNCTIONS.items()):
        h.update(rel.encode())
        h.update(_code_of(root / rel, functions).encode())
    return h.hexdigest()[:12]


def run_key(config):
    """The cache key of ``config`` under the current code."""
    return config.key(code_hash())


def default_cache_dir():
    """``$MINIGCNC_CACHE`` or ``~/.cache/minigcnc``."""
    return Path(os.environ.get("MINIGCNC_CACHE") or Path.home() / ".cache" / "minigcnc")


def run_path(config, cache_dir=None):
    """Where the finished run of ``config`` is stored: ``<cache>/runs/<key>.json``."""
    return Path(cache_dir or default_cache_dir()) / "runs" / f"{run_key(config)}.json"


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
    return write_atomically(path, write)


def load_run(config, cache_dir=None):
    """The cached history of ``config``, or None when it has not finished (or its file cannot be read:
    then a warning names the file, and the run is recomputed)."""
    path = run_path(config, cache_dir)
    if not path.exists():
        return None
    try:
        with open(path) as f:
            history = json.load(f)
        if not isinstance(history, dict) or not isinstance(history.get("evals"), list) or "status" not in history:
            raise ValueError("not a run history (no 'evals' list or 'status')")
        if history.get("key") != run_key(config) or not _same_config(history.get("config"), config):
            raise ValueError(f"it holds another run (key {history.get('key')!r}, seed "
                             f"{(history.get('config') or {}).get('seed')!r}), not {run_key(config)!r}")
        return history
    except (OSError, ValueError, UnicodeDecodeError) as e:
        try:
            seen = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
        except OSError:
            seen = (str(path), None, None)
        if seen not in _WARNED:  # once per damaged file, not at every look a sweep takes at it
            _WARNED.add(seen)
            warnings.warn(f"cached run {path} cannot be read ({type(e).__name__}: {e}); it will be recomputed",
                          stacklevel=2)
        return None


_WARNED = set()  # (path, mtime, size) of the damaged files already named in a warning


def _same_config(stored, config):
    """True when the stored config dict agrees with ``config`` on every field that changes the result."""
    if not isinstance(stored, dict):
        return False
    want = json.loads(json.dumps(config.fields_that_matter(), default=list))
    return all(stored.get(k) == v for k, v in want.items())


def versions():
    """Versions of the software that produced a result (read from package metadata: no imports), and the
    code hash of the cache key."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform(), "code_hash": code_hash()}
    for pkg in ("minigcnc", "numpy", "scipy", "autograd", "matplotlib", "scikit-learn", "cupy-cuda12x",
                "cupy-cuda13x", "cupy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
