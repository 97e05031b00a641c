"""The command line every figure shares, checked before any work, and the figure's outputs.

    python -m minigcnc.figureN [--scale tiny|laptop|paper] [--seeds N] [--jobs N] [--fresh] [--out DIR]
                               [--cache DIR] [--backend numpy|cupy] [--data-root DIR] [--quiet] [--dask ADDRESS]
                               [--yes]

- ``figure_parser(prog, doc, epilog=None)``: the shared options; ``parse(parser, argv)`` parses and checks them
  (``--jobs`` at least 1, ``--seeds`` at least 1, ``--out`` and cache folders that can be written, a ``--dask``
  address of the accepted forms) so that a mistake ends the command with one line before anything trains. The
  cache is ``--cache``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc``: ``--out`` moves only the PNG and JSON.
- ``run_sweep(name, args, configs)``: checks every field of every config (``config.check_configs``) and loads
  the backends, says how many runs come from the cache and how many will train and where the cache is, asks
  before training estimated over an hour (``estimate.confirm``: ``--yes`` goes on without asking), then runs
  them; Ctrl-C, ``kill PID`` (SIGTERM) and a closed terminal (SIGHUP) end with one line saying what was kept
  and that the same command resumes.
- ``write_figure(...)``: the common end of every figure: the PNG and the JSON (claims, versions, wall time); the
  figure judges its claims before (``claims.judge``) and prints their table after (``table.print_table``).

Every fault ends the command with one line that says what was kept and how to go on (``run_sweep``,
``write_figure``): a full or unwritable disk, a dataset file that fails its checksum, a worker killed twice, a
Dask cluster lost, Ctrl-C (or SIGTERM) at any moment after the options are parsed (``interrupt_anywhere``:
while starting, training, drawing or writing). Empty strings and absurd integers are refused when parsed.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

from ..checks import write_atomically
from .cache import default_cache_dir, load_run, run_key, run_path, versions, write_json
from .config import SCALES, check_configs

DEFAULT_OUT = "results"  # a figure's own outputs (git-ignored): the committed figures/ stay as reproduce wrote them
MAX_JOBS = 1024  # more parallel runs than any machine holds: refused as a typo
MAX_SEEDS = 10000  # (every seed is one training run per point of a sweep)


class Interrupted(SystemExit):
    """A sweep stopped by Ctrl-C, SIGTERM or SIGHUP: the command ends with what was kept (``reproduce`` stops
    too, rather than going on to the next figure)."""


def figure_parser(prog, description, epilog=None):
    """argparse parser with the options every ``python -m minigcnc.figureN`` takes; ``epilog``: the last lines of
    ``--help`` (a figure's runs at every scale, ``driver.runs_epilog``)."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="laptop",
                   help="tiny: seconds (tests); laptop: the default, minutes on 2 cores; paper: the paper's models (GPU)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds, 0..N-1 (default: the scale's own)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel runs (default: 2)")
    p.add_argument("--fresh", action="store_true", help="recompute runs even if cached")
    p.add_argument("--out", default=None, help=f"folder for the figure PNG and JSON (default: ./{DEFAULT_OUT}; the "
                   "committed reference figures in figures/ are written by python -m minigcnc.reproduce)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="result cache (default: $MINIGCNC_CACHE, else ~/.cache/minigcnc; --out does not move it; "
                        "python -m minigcnc.experiments.cache --info or --prune describes or prunes it)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None, help="array backend (default: numpy; cupy at paper scale)")
    p.add_argument("--data-root", default=None, help="folder with local dataset files (CIFAR, MNIST)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the sweep on Dask: 'local[:N]' starts N workers here, 'tcp://host:port' uses a running "
                        "scheduler (needs the dask extra)")
    p.add_argument("--yes", action="store_true", help="no question when training is estimated over an hour")
    return p


def writable_folder(folder):
    """None when files can be created in ``folder`` (made if missing), else the reason."""
    if Path(folder).exists() and not Path(folder).is_dir():
        return "it is a file, not a folder"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"{e.strerror or e}"
    return None


def parse(parser, argv):
    """Parse ``argv`` and check the options; a bad one ends the command with a one-line message.

    Run as a command (``argv`` None), Ctrl-C and SIGTERM from here on end it with one line too
    (``interrupt_anywhere``)."""
    args = parser.parse_args(argv)
    if argv is None:
        interrupt_anywhere(parser.prog)
    for action in parser._actions:  # an empty string never stands for a default: say so
        value = getattr(args, action.dest, None)
        if isinstance(value, str) and not value.strip() and action.option_strings:
            parser.error(f"{action.option_strings[-1]}: got an empty string; give a value, or leave the option out "
                         "for its default")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1 (the number of runs trained at once); got {args.jobs}")
    if args.jobs > MAX_JOBS:
        parser.error(f"--jobs must be at most {MAX_JOBS} (it is capped by the runs to train anyway); got {args.jobs}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    if args.seeds is not None and args.seeds > MAX_SEEDS:
        parser.error(f"--seeds must be at most {MAX_SEEDS} (each seed is a training run per sweep point); got "
                     f"{args.seeds}")
    out = Path(args.out) if args.out else Path(DEFAULT_OUT)
    why = writable_folder(out)
    if why:
        parser.error(f"--out {out}: cannot write there ({why}); give a folder you can write to")
    cache = resolve_cache(args)
    why = writable_folder(cache)
    where = "there"
    if not why:  # the folder itself may be writable while its runs/ is a file, or read-only
        why, where = writable_folder(cache / "runs"), "its runs/ folder"
    if why:
        source = "--cache" if args.cache else ("$MINIGCNC_CACHE" if os.environ.get("MINIGCNC_CACHE") else "the cache")
        parser.error(f"{source} {cache}: cannot write {where} ({why}); give a folder you can write to with "
                     "--cache DIR")
    if args.dask:
        from .dask_runner import check_address

        try:
            check_address(args.dask)
        except ValueError as e:
            parser.error(str(e))
    return args


_PHASE = {"now": "starting"}  # what the command is doing, for the line Ctrl-C ends it with


def interrupt_anywhere(name):
    """From now on, SIGINT and SIGTERM end the command ``name`` with one line (``Interrupted``) that says what
    was kept: nothing yet while starting; every finished run while training (``run_sweep`` says which); every
    run while drawing or writing (files are written atomically: none is left half-written)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        if _PHASE["now"] == "training":
            raise KeyboardInterrupt(signal.Signals(signum).name)  # run_sweep says what was kept
        what = {"starting": "no run had started, nothing to keep",
                "drawing": "every run is kept in the cache; the same command draws the figure again from it",
                "writing": "every run is kept in the cache and no file is half-written; the same command writes the "
                           "figure again from it"}[_PHASE["now"]]
        raise Interrupted(f"\n{name}: interrupted while {_PHASE['now']}: {what}.")

    _PHASE["now"] = "starting"
    for sig_name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, sig_name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)


def resolve_cache(args):
    """The cache folder: ``--cache``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc``. Never inside ``--out``:
    a figure written elsewhere reuses the same runs."""
    return Path(args.cache) if args.cache else default_cache_dir()


def run_sweep(name, args, configs):
    """The histories of ``configs`` for a figure's parsed command line (cache, jobs, fresh, quiet, dask).

    Before any run trains: every field of every config is checked (a bad one ends the command with one line
    naming the field, the value, what is accepted and the fix), the backends are loaded once (CuPy missing ends
    the command with its message) and a line says how many runs come from the cache and how many will train.
    Training estimated over an hour is said, with how to go faster, and asked about (``estimate.confirm``; with
    ``--yes`` it goes on, with no terminal and no ``--yes`` the command ends with one line naming ``--yes``).
    A dataset file not on disk ends the command with a message naming ``--data-root``; Ctrl-C, SIGTERM or
    SIGHUP with one line saying what was kept (the workers are stopped too).
    """
    from ..backend import backend_module
    from .sweep import cached_and_todo, run_many

    cache = resolve_cache(args)
    options = {f: "--" + f for f in ("dataset", "model", "backend") if getattr(args, f, None)}  # the fields they set
    try:
        check_configs(configs, options)
        for b in sorted({c.backend for c in configs}) if not args.dask else ():  # (Dask workers have their own)
            try:
                backend_module(b)
            except ValueError as e:  # the library's words for the library; the command line's here
                raise ValueError(re.sub(r"\b([Uu]se) backend='(\w+)'", r"\1 --backend \2", str(e))) from None
    except ValueError as e:
        raise SystemExit(f"{name}: {e}") from None
    plan = cached_and_todo(configs, cache, args.fresh)  # (the cached histories, the runs to train): read once
    cached, left = plan
    resuming = sum(run_path(c, cache).with_suffix(".ckpt.npz").exists() for c in left) if not args.fresh else 0
    print(f"{name}: scale={args.scale}, {len(cached) + len(left)} runs: {len(cached)} from the cache, "
          f"{len(left)} to train" + (f" ({resuming} resuming from their last checkpoint)" if resuming else "")
          + f"; cache {cache}", file=sys.stderr)
    try:  # over an hour of training: said, with how to go faster, and asked (``estimate``), before anything trains
        from .estimate import confirm

        confirm(name, args, configs, left)
    except FileNotFoundError as e:
        raise SystemExit(missing_file(name, e)) from None
    except ValueError as e:  # a run its data cannot train (``sweep.check_feasible``)
        raise SystemExit(f"{name}: {' '.join(str(e).split())}") from None
    from .dask_runner import DaskLost
    from .sweep import WorkerDied

    _PHASE["now"] = "training"
    try:
        return run_many(configs, cache, jobs=args.jobs, fresh=args.fresh, progress=not args.quiet, dask=args.dask,
                        plan=plan)
    except FileNotFoundError as e:
        raise SystemExit(missing_file(name, e)) from None
    except KeyboardInterrupt:
        raise Interrupted("\n" + interrupted_message(name, configs, cache) + remote_note(args)) from None
    except (WorkerDied, DaskLost) as e:
        raise SystemExit(f"{name}: {e}. {kept(configs, cache)}{remote_note(args)}") from None
    except OSError as e:  # a full disk, a folder made read-only meanwhile
        where = f" {e.filename}" if e.filename else ""
        raise SystemExit(f"{name}: cannot write{where} ({e.strerror or e}). {kept(configs, cache)} once there is "
                         "room (or give another --cache)") from None
    except ValueError as e:  # a dataset file that fails its checksum, a run its data cannot train, a bad address
        if os.environ.get("MINIGCNC_DEBUG"):
            raise
        line = " ".join(str(e).split())
        so_far = kept(configs, cache)
        raise SystemExit(f"{name}: {line}" + ("" if "--dask" in line or "fix:" in line or so_far.startswith("0 of ")
                                              and "more kept" not in so_far else f" {so_far}")) from None
    finally:
        _PHASE["now"] = "drawing"


def missing_file(name, error):
    """The message a figure ends with when a dataset file is not on disk."""
    return f"{name}: a dataset file is missing (give its folder with --data-root DIR).\n{error}"


def remote_note(args):
    """What a sweep on a remote Dask cluster cannot keep: the progress of workers that do not see the cache."""
    if not args.dask or args.dask.startswith(("local", "inproc")):
        return ""
    return (" (a run in progress on a worker that does not see this cache folder kept its checkpoint on that "
            "worker's disk only: it starts again)")


def kept(configs, cache):
    """What a sweep stopped by a fault kept, and how to go on (the end of its one line)."""
    unique = {run_key(c): c for c in configs}.values()
    done = sum(load_run(c, cache) is not None for c in unique)
    ckpts = sum(run_path(c, cache).with_suffix(".ckpt.npz").exists() for c in unique)
    more = f", {ckpts} more kept {'its' if ckpts == 1 else 'their'} last checkpoint" if ckpts else ""
    return f"{done} of {len(unique)} runs finished and are kept in {cache}{more}; the same command resumes from there"


def interrupted_message(name, configs, cache):
    """The one line Ctrl-C ends a figure with: what finished, what was kept, how to go on."""
    unique = {run_key(c): c for c in configs}.values()
    done = [c for c in unique if load_run(c, cache) is not None]
    ckpts = sum(run_path(c, cache).with_suffix(".ckpt.npz").exists() for c in unique)
    resume = f", {ckpts} more kept {'its' if ckpts == 1 else 'their'} last checkpoint" if ckpts else ""
    return (f"{name}: interrupted. {len(done)} of {len(unique)} runs finished and are kept in {cache}{resume}; "
            "the same command resumes from there.")


def figure_outputs(name, scale, out=None):
    """(png path, json path): ``OUT/<name>.png`` at laptop scale, ``<name>_<scale>.png`` otherwise (OUT:
    ``out``, else ``results``)."""
    folder = Path(out) if out else Path(DEFAULT_OUT)
    stem = name if scale == "laptop" else f"{name}_{scale}"
    return folder / f"{stem}.png", folder / f"{stem}.json"


def save_figure(fig, path):
    """Save a matplotlib figure atomically, then close it (a figure script draws each picture once)."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight", format=fmt))
    plt.close(fig)
    return path


def write_figure(name, scale, out, fig, doc, claims, t0):
    """Save ``fig`` and the JSON ``doc`` (plus the claims as judged, versions, wall time): the common end of
    every ``python -m minigcnc.figureN``, which judges its claims first (``claims.judge``) and prints their table
    after (``table.print_table``). Returns (png path, json path).
    """
    png, js = figure_outputs(name, scale, out)
    _PHASE["now"] = "writing"
    remove_stale_temps(png.parent)
    try:
        save_figure(fig, png)
        write_json(js, {**doc, "claims": [c.to_dict() for c in claims], "versions": versions(),
                        "wall_seconds": time.time() - t0})
    except OSError as e:
        raise SystemExit(f"{name}: cannot write {e.filename or png.parent} ({e.strerror or e}); every run is kept in "
                         "the cache: free some space (or give another --out) and run the same command again, it "
                         "draws from the cache in seconds") from None
    finally:
        _PHASE["now"] = "drawing"
    print(f"\nwrote {png} and {js} in {time.time() - t0:.1f} s", file=sys.stderr)
    return png, js


def remove_stale_temps(folder):
    """Delete the temporary files (``.<name>.tmp-<pid>``) that killed writers left in ``folder``
    (``cache.stale_temps``: their process is gone)."""
    from .cache import stale_temps

    for path in stale_temps(folder):
        path.unlink(missing_ok=True)
