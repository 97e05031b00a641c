"""The command line every figure shares, checked before any work, and the figure's outputs.

    python -m minigcnc.figureN [--scale tiny|laptop|paper] [--seeds N] [--jobs N] [--fresh] [--out DIR]
                               [--cache DIR] [--backend numpy|cupy] [--data-root DIR] [--quiet] [--dask ADDRESS]

- ``figure_parser(prog, doc, epilog=None)``: the shared options; ``parse(parser, argv)`` parses and checks them
  (``--jobs`` at least 1, ``--seeds`` at least 1, ``--out`` and cache folders that can be written, a ``--dask``
  address of the accepted forms) so that a mistake ends the command with one line before anything trains. The
  cache is ``--cache``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc``: ``--out`` moves only the PNG and JSON.
- ``run_sweep(name, args, configs)``: checks every field of every config (``config.check_configs``) and loads
  the backends, says how many runs come from the cache and how many will train and where the cache is, then
  runs them; Ctrl-C, ``kill PID`` (SIGTERM) and a closed terminal (SIGHUP) end with one line saying what was
  kept and that the same command resumes.
- ``write_figure(...)``: the common end of every figure: the claims judged as one family (q-values), the PNG,
  the JSON (claims, versions, wall time) and the claim table on stdout.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from ..checks import write_atomically
from .cache import default_cache_dir, load_run, run_key, run_path, versions, write_json
from .config import SCALES, check_configs

DEFAULT_OUT = "results"  # a figure's own outputs (git-ignored): the committed figures/ stay as reproduce wrote them


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
    p.add_argument("--data-root", default=None, help="folder with local dataset files (CIFAR, MNIST) for paper scale")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the sweep on Dask: 'local[:N]' starts N workers here, 'tcp://host:port' uses a running "
                        "scheduler (needs the dask extra)")
    return p


def writable_folder(folder):
    """None when files can be created in ``folder`` (made if missing), else the reason."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"{e.strerror or e}"
    return None


def parse(parser, argv):
    """Parse ``argv`` and check the options; a bad one ends the command with a one-line message."""
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1 (the number of runs trained at once); got {args.jobs}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1; got {args.seeds}")
    out = Path(args.out) if args.out else Path(DEFAULT_OUT)
    why = writable_folder(out)
    if why:
        parser.error(f"--out {out}: cannot write there ({why}); give a folder you can write to")
    cache = resolve_cache(args)
    why = writable_folder(cache)
    if why:
        source = "--cache" if args.cache else ("$MINIGCNC_CACHE" if os.environ.get("MINIGCNC_CACHE") else "the cache")
        parser.error(f"{source} {cache}: cannot write there ({why}); give a folder you can write to with --cache DIR")
    if args.dask:
        from .dask_runner import check_address

        try:
            check_address(args.dask)
        except ValueError as e:
            parser.error(str(e))
    return args


def resolve_cache(args):
    """The cache folder: ``--cache``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc``. Never inside ``--out``:
    a figure written elsewhere reuses the same runs."""
    return Path(args.cache) if args.cache else default_cache_dir()


def run_sweep(name, args, configs):
    """The histories of ``configs`` for a figure's parsed command line (cache, jobs, fresh, quiet, dask).

    Before any run trains: every field of every config is checked (a bad one ends the command with one line
    naming the field, the value, what is accepted and the fix), the backends are loaded once (CuPy missing ends
    the command with its message) and a line says how many runs come from the cache and how many will train.
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
            backend_module(b)
    except ValueError as e:
        raise SystemExit(f"{name}: {e}") from None
    plan = cached_and_todo(configs, cache, args.fresh)  # (the cached histories, the runs to train): read once
    cached, left = plan
    print(f"{name}: scale={args.scale}, {len(cached) + len(left)} runs: {len(cached)} from the cache, "
          f"{len(left)} to train; cache {cache}", file=sys.stderr)
    try:
        return run_many(configs, cache, jobs=args.jobs, fresh=args.fresh, progress=not args.quiet, dask=args.dask,
                        plan=plan)
    except FileNotFoundError as e:
        raise SystemExit(f"{name}: a dataset file is missing (give its folder with --data-root DIR).\n{e}") from None
    except ValueError as e:
        if "--dask" in str(e):
            raise SystemExit(f"{name}: {e}") from None
        raise
    except KeyboardInterrupt:
        raise Interrupted("\n" + interrupted_message(name, configs, cache)) from None


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
    """Judge the claims as one family (``claims.judge``: Benjamini-Hochberg q-values, verdicts on q), save
    ``fig`` and the JSON ``doc`` (plus claims, versions, wall time), print the claim table.

    The common end of every ``python -m minigcnc.figureN``; returns (png path, json path).
    """
    from .claims import claim_table, judge

    judge(claims)
    png, js = figure_outputs(name, scale, out)
    save_figure(fig, png)
    write_json(js, {**doc, "claims": [c.to_dict() for c in claims], "versions": versions(),
                    "wall_seconds": time.time() - t0})
    print(claim_table(claims, scale=scale))
    print(f"\nwrote {png} and {js} in {time.time() - t0:.1f} s", file=sys.stderr)
    return png, js
