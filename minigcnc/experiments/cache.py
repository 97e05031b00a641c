"""Where finished runs are kept, keyed by their config *and* the code that computes them.

A run's file is ``<cache>/runs/<key>.json`` with ``key = config.key(code_hash())``: a hash of the fields that
change the result and of the source of every module that can change it (``result_modules``: ``experiments/run.py``,
the glue from a config to ``train.fit``, and every module its ``train_run`` imports, directly or not; derived
from the imports, so the figure scripts, the benchmarks and the parts of the engine that only draw, judge, lay
out or schedule are outside it because no run imports them). Comments and
docstrings are not part of the hash (it is taken over the parsed code), so editing a comment retrains
nothing, while editing a line of ``gc.py`` or ``train.py`` retrains every run.

Files are written atomically (``checks.write_atomically``) with a digest of their content and of the key they
were written for (``store_run``); a file that cannot be read, does not match its digest (edited by hand, a
flipped bit) or holds another run (its stored key or config differs from the requested one) is named in a
one-line warning and its run is recomputed, never reused. Checkpoints carry their own digest and the run's key
(``train.fit(checkpoint_key=...)``).

A metric of your own (``measure.register_extra``) defined outside ``minigcnc`` is part of the key of the runs
that record it: the parsed source of its function and of the functions and constants of its module that it
names (``extra_code``), so editing it recomputes those runs.

Temporary files left by a killed writer (``.<name>.tmp-<pid>``) are counted by ``--info`` and deleted by
``--prune`` once their process is gone (``stale_temps``).

Cache folder: ``--cache DIR``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc`` (``--out`` moves only a
figure's PNG and JSON, never the cache). Runs of other code are never read again, and never deleted on their
own::

    python -m minigcnc.experiments.cache --info               # the folder, its runs (of this code, of other code), size
    python -m minigcnc.experiments.cache --prune [--dry-run]  # delete the runs of other code [only list them]
    ... [--cache DIR]                                         # another cache folder
"""
import argparse
import ast
import hashlib
import json
import os
import platform
import re
import warnings
from functools import lru_cache
from pathlib import Path

from ..checks import write_atomically

PACKAGE = Path(__file__).resolve().parents[1]
RESULT_ROOT = ("experiments/run.py", "train_run")  # the function that turns a config into a run's numbers


def result_modules(root=None):
    """The package's source files that can change a run's result, sorted (paths relative to the package
    folder ``root``, by default this package).

    Derived, not listed: ``experiments/run.py`` and every module that ``run.train_run`` imports, with
    everything those import in turn (module-level and function-level relative imports alike). The modules
    that ``run.py`` imports only to schedule or store runs (``cache.py``, ``dask_runner.py``) are outside it,
    as are the figure scripts, the claims engine, the plotting and the benchmarks, which no run imports."""
    root = Path(root) if root else PACKAGE
    module, function = RESULT_ROOT
    tree = ast.parse((root / module).read_text())
    body = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
    todo = sorted(_relative_imports(root, module, body))
    seen = {module}
    while todo:
        rel = todo.pop()
        if rel not in seen:
            seen.add(rel)
            todo.extend(sorted(_relative_imports(root, rel, ast.parse((root / rel).read_text())) - seen))
    return sorted(seen)


def _relative_imports(root, rel, tree):
    """The package files (relative to ``root``) that the relative imports anywhere under ``tree`` name, for a
    module at ``rel``: ``from .x import y`` names x.py (or x/__init__.py) and, when y is a module, x/y.py."""
    out = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.level > 0):
            continue
        base = Path(rel).parent
        for _ in range(node.level - 1):
            base = base.parent
        parts = base / Path(*node.module.split(".")) if node.module else base
        names = ([parts] if node.module else []) + [parts / a.name for a in node.names]
        for name in names:
            for f in (name.with_suffix(".py"), name / "__init__.py"):
                if (root / f).is_file():
                    out.add(f.as_posix())
    return out


def _code_of(path):
    """The parsed code of one file, without docstrings and comments, as a canonical string."""
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@lru_cache(maxsize=8)
def code_hash(root=None):
    """A short hash of the code of every module in ``result_modules(root)`` (read once per process and root;
    ``root``: a copy of the package folder, by default this package)."""
    root = Path(root) if root else PACKAGE
    h = hashlib.sha256()
    for rel in result_modules(root):
        h.update(rel.encode())
        h.update(_code_of(root / rel).encode())
    return h.hexdigest()[:12]


def run_key(config):
    """The cache key of ``config`` under the current code (its own metrics' code included, ``extra_code``)."""
    extras = extra_code(getattr(config, "extras", ()))
    return config.key(code_hash() + (f"+{extras}" if extras else ""))


PINNED_EXTRAS = {}  # name -> the hash of a registered extra as the client computed it (set in workers)


def extra_code(names):
    """A short hash of the code of the extra metrics ``names`` defined outside ``minigcnc`` ("" when there are
    none: the package's own are in ``code_hash``); an unregistered name counts as its name."""
    parts = []
    for name in names:
        if name in PINNED_EXTRAS:
            parts.append(f"{name}:{PINNED_EXTRAS[name]}")
            continue
        from .measure import EXTRAS

        fn = EXTRAS.get(name)
        if fn is None or (getattr(fn, "__module__", "") or "").split(".")[0] == "minigcnc":
            continue
        parts.append(f"{name}:{function_code(fn)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12] if parts else ""


def function_code(fn):
    """A short hash of ``fn``'s parsed source (comments and docstrings aside) and of the functions and plain
    constants of its module that it names, recursively (the code object when the source cannot be read)."""
    import inspect
    import textwrap
    import types

    h, seen, todo = hashlib.sha256(), set(), [fn]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        try:
            h.update(_code_of_text(textwrap.dedent(inspect.getsource(f))).encode())
        except (OSError, TypeError, SyntaxError):
            code = f.__code__
            h.update(code.co_code + repr((code.co_consts, code.co_names)).encode())
        for name in sorted(_names_used(f.__code__)):
            value = f.__globals__.get(name)
            if isinstance(value, types.FunctionType) and value.__module__ == f.__module__:
                todo.append(value)
            elif isinstance(value, (int, float, str, bytes, tuple, frozenset, bool)) and not isinstance(value, type):
                h.update(f"{name}={value!r}".encode())
    return h.hexdigest()[:12]


def _names_used(code):
    """The global names a code object (and the code nested in it) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const)
    return names


def _code_of_text(text):
    """``_code_of`` for source text."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    for node in ast.walk(tree):  # the decorator line is the registration, not the code
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.decorator_list = []
    return ast.dump(tree, annotate_fields=False)


def default_cache_dir():
    """``$MINIGCNC_CACHE`` or ``~/.cache/minigcnc``."""
    return Path(os.environ.get("MINIGCNC_CACHE") or Path.home() / ".cache" / "minigcnc")


def run_path(config, cache_dir=None):
    """Where the finished run of ``config`` is stored: ``<cache>/runs/<key>.json``."""
    return Path(cache_dir or default_cache_dir()) / "runs" / f"{run_key(config)}.json"


def run_digest(history, key):
    """The digest of a run file: sha256 of its content (all but ``digest``) and of the key it is written for."""
    body = {k: v for k, v in history.items() if k != "digest"}
    text = json.dumps({"key": key, "run": body}, sort_keys=True, allow_nan=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def store_run(path, history):
    """Write the run ``history`` to ``path`` (``<cache>/runs/<key>.json``) with its digest (added to
    ``history`` too, so the dict returned equals the one read back)."""
    history.update(json.loads(json.dumps(history, allow_nan=True, default=list)))  # as JSON will give it back
    history.pop("digest", None)
    history["digest"] = run_digest(history, Path(path).stem)
    return write_json(path, history)


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
        if "digest" not in history:
            raise ValueError("it has no digest (written by an older version)")
        if history["digest"] != run_digest(history, path.stem):
            raise ValueError("its content does not match its digest (edited by hand or damaged)")
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


# ---- what the cache holds; pruning the runs of other code -----------------------------------------------------

def stored_code(path):
    """The code hash a run file was computed with (``versions.code_hash``), or None when it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)["versions"]["code_hash"]
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None


def survey(cache_dir=None):
    """The files of a cache folder by kind: the runs of this code, those of other code, interrupted runs, the
    temporary files of killed writers.

    {"folder", "current": [run files of this code], "other": [run files of other code, or unreadable, with the
    checkpoints beside them], "checkpoints": [checkpoints of interrupted runs], "temps": [temporary files whose
    writer is gone, ``stale_temps``]}.
    """
    folder = Path(cache_dir or default_cache_dir())
    runs = sorted((folder / "runs").glob("*.json"))
    ours = {p: stored_code(p) == code_hash() for p in runs}
    current, other = [p for p in runs if ours[p]], [p for p in runs if not ours[p]]
    beside = {p.with_suffix(".ckpt.npz") for p in other}
    checkpoints = sorted((folder / "runs").glob("*.ckpt.npz"))
    other += [p for p in checkpoints if p in beside]
    checkpoints = [p for p in checkpoints if p not in beside]
    temps = stale_temps(folder / "runs") + stale_temps(folder)
    return {"folder": folder, "current": current, "other": other, "checkpoints": checkpoints, "temps": temps}


TEMP = re.compile(r"^\..+\.tmp-(\d+)$")  # checks.write_atomically's temporary files: .<name>.tmp-<pid>


def stale_temps(folder, min_age=60.0):
    """The temporary files ``.<name>.tmp-<pid>`` in ``folder`` whose writer is gone: no process ``pid`` runs
    here, or the file has not changed for a day (a writer on another machine sharing the folder); and none
    younger than ``min_age`` seconds. Sorted."""
    import time

    out = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return out
    now = time.time()
    for path in entries:
        m = TEMP.match(path.name)
        if not m or not path.is_file():
            continue
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if age >= min_age and (age > 86400 or not pid_alive(int(m.group(1)))):
            out.append(path)
    return sorted(out)


def pid_alive(pid):
    """Whether a process ``pid`` runs on this machine (never signals it: on Windows ``os.kill(pid, 0)`` would
    end it, so the process is opened and asked instead)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) != 0  # 0: it has ended
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True
    return True


def _size(paths):
    """Total size in bytes of the files ``paths`` (0 for one that is gone)."""
    return sum(p.stat().st_size if p.exists() else 0 for p in paths)


def _human(n_bytes):
    """``n_bytes`` as a short human-readable size: 512 B, 3.4 kB, 12.0 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000


def _count(n, what):
    """``n`` and ``what``, plural unless ``n`` is 1: "1 run", "3 runs"."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def info(cache_dir=None):
    """What ``--info`` prints: the folder, its runs of this code and of other code, their size."""
    s = survey(cache_dir)
    other = [p for p in s["other"] if p.suffix == ".json"]
    everything = s["current"] + s["other"] + s["checkpoints"]
    lines = [f"cache {s['folder']}: {_count(len(s['current']) + len(other), 'run')}, {_human(_size(everything))}"
             + ("" if s["folder"].is_dir() else " (no such folder yet)"),
             f"  {len(s['current'])} of this code ({code_hash()}): {_human(_size(s['current']))}",
             f"  {len(other)} of other code: {_human(_size(s['other']))}"
             + (" (python -m minigcnc.experiments.cache --prune deletes them)" if other else "")]
    if s["checkpoints"]:
        lines.append(f"  {_count(len(s['checkpoints']), 'checkpoint')} of interrupted runs: "
                     f"{_human(_size(s['checkpoints']))} (kept: the interrupted command resumes from them)")
    if s["temps"]:
        lines.append(f"  {_count(len(s['temps']), 'temporary file')} of killed writers: {_human(_size(s['temps']))} "
                     "(--prune deletes them)")
    return "\n".join(lines)


def prune(cache_dir=None, dry_run=False):
    """Delete the runs of other code, the checkpoints beside them and the temporary files of killed writers
    (``stale_temps``); returns (the files, bytes freed).

    A run is of other code when its stored ``versions.code_hash`` is not this code's, or cannot be read.
    ``dry_run``: delete nothing.

    The runs of this code stay, and so do the checkpoints of interrupted runs: they do not say which code wrote
    them, and the interrupted command resumes from them. A folder shared with a checkout of other code loses
    that checkout's runs.
    """
    s = survey(cache_dir)
    files = s["other"] + s["temps"]
    freed = _size(files)
    if not dry_run:
        for p in files:
            p.unlink(missing_ok=True)
    return files, freed


def main(argv=None):
    """``python -m minigcnc.experiments.cache --info | --prune [--dry-run] [--cache DIR]``."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.experiments.cache",
                                description="What the result cache holds, and deleting the runs of other code.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--info", action="store_true", help="print the folder, the number of runs and their size")
    what.add_argument("--prune", action="store_true",
                      help="delete the runs of other code (their stored code hash is not this code's): no command "
                           "of this code reads them again")
    p.add_argument("--dry-run", action="store_true", help="with --prune: list what would be deleted, delete nothing")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="the cache folder (default: $MINIGCNC_CACHE, else ~/.cache/minigcnc)")
    args = p.parse_args(argv)
    if args.dry_run and not args.prune:
        p.error("--dry-run goes with --prune")
    if args.info:
        print(info(args.cache))
        return
    files, freed = prune(args.cache, dry_run=args.dry_run)
    temps = [f for f in files if TEMP.match(f.name)]
    for f in files if args.dry_run else ():
        code = ("a temporary file of a killed writer" if f in temps else
                "a checkpoint" if f.suffix == ".npz" else f"code {stored_code(f) or 'unreadable'}")
        print(f"would delete {f} ({code}, {_human(_size([f]))})")
    runs = sum(f.suffix == ".json" and f not in temps for f in files)
    n_ckpt = len(files) - runs - len(temps)
    checkpoints = (f" and {_count(n_ckpt, 'checkpoint')}" if n_ckpt else "") + \
                  (f" and {_count(len(temps), 'temporary file')} of killed writers" if temps else "")
    print(f"{'would delete' if args.dry_run else 'deleted'} {_count(runs, 'run')} of other code{checkpoints} from "
          f"{Path(args.cache or default_cache_dir())}, {'freeing' if not args.dry_run else 'which would free'} "
          f"{_human(freed)}" + ("; nothing deleted (--dry-run)" if args.dry_run else ""))


if __name__ == "__main__":
    main()
