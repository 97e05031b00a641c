"""`python -m minigcnc.reproduce`: every figure at its default scale in one command, and one report of them.

    python -m minigcnc.reproduce                       # all figures, laptop scale, into ./figures
    python -m minigcnc.reproduce --only figure3 figure2 --jobs 2 --out figures
    python -m minigcnc.reproduce --scale tiny          # seconds per figure (a smoke run), into ./results

Runs, in the order of ``registry.FIGURES``, Figure 3 (the main job), Figure 2, Figure 1, the flatness of Figure
1's runs and of the convnet appendix's (``figure_flatness``, which trains no run of its own: the appendix's runs
train here, for ``figure_mnist`` later), the GC-regularization appendix, Figure 4 (rotations) and
Figure 4 on the digit split (``figure4_digits``, i.e. ``figure4 --split digits``), NC at three levels on Figure 4's
runs (``figure_nc_levels``, which trains nothing), the VGG/convnet appendix (``figure_mnist``) and the per-layer
figure (``figure_layers``), each by its own ``main([...])`` with ``--scale``, ``--out``, ``--jobs``, ``--cache``,
``--seeds``, ``--quiet`` and ``--yes`` passed through (a figure estimated at over an hour of training asks first,
or without a terminal stops, unless ``--yes``). ``--only NAME ...`` picks some of them.

Where: ``--out DIR``; by default ``figures/`` (the committed reference figures and ``REPORT.md``) at laptop
scale only, and the git-ignored ``results/`` at any other scale, so a smoke run never overwrites the committed
report (``--out figures`` at another scale is refused: those are laptop-scale figures).

Resumable: every training run is kept in the result cache, the same one the figure commands use (``--cache
DIR``, else ``$MINIGCNC_CACHE``, else ``~/.cache/minigcnc``: never inside the repository), so running the same
command again reuses every finished run and trains only what is missing (an interrupted run restarts from its
last checkpoint). One progress bar counts the figures; each figure still shows its own bar over its
runs (``--quiet`` hides both).

Writes ``OUT/REPORT.md`` (atomically, after every figure, so it always describes what is done): for every
figure its claim table (``experiments.table.claim_table``), its wall time and its outputs, then the versions of
the software (``experiments.cache.versions()``) and the total wall time. A figure that stops with an error is
reported as such and the others still run; the command then exits with status 1 (``main`` returns).
"""
import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from .checks import write_atomically
from .experiments.cache import versions
from .experiments.cli import Interrupted
from .experiments.table import claim_table, data_names
from .experiments.config import SCALES
from .registry import FIGURES, figure_module

def parser():
    """The command line of ``python -m minigcnc.reproduce``."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(FIGURES), default=None, metavar="NAME",
                   help=f"run only these figures, in the order given ({', '.join(FIGURES)})")
    p.add_argument("--scale", choices=SCALES, default="laptop", help="every figure's scale (default: laptop)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel runs per figure")
    p.add_argument("--out", default=None, help="folder for the figures and REPORT.md (default: figures at laptop "
                   "scale, results at any other scale)")
    p.add_argument("--cache", default=None, help="result cache (default: $MINIGCNC_CACHE, else ~/.cache/minigcnc, "
                   "as for the figure commands)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per figure (default: each figure's own)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--yes", action="store_true", help="every figure goes on without asking when its training is "
                   "estimated over an hour (without a terminal such a figure stops otherwise)")
    return p


def figure_argv(args, extra):
    """The argument list handed to one figure's ``main``."""
    argv = ["--scale", args.scale, "--out", str(args.out), "--jobs", str(args.jobs),
            *(["--cache", str(args.cache)] if args.cache else []), *extra]  # (else the figures' own default)
    if args.seeds is not None:
        argv += ["--seeds", str(args.seeds)]
    if args.quiet:
        argv.append("--quiet")
    if getattr(args, "yes", False):
        argv.append("--yes")
    return argv


def run_figure(name, args):
    """Run one figure; returns its entry of the report: name, command, seconds, claims or the error."""
    module, extra, what = FIGURES[name]
    argv = figure_argv(args, extra)
    entry = {"name": name, "what": what, "command": " ".join(["python -m minigcnc." + module] + argv)}
    t0 = time.time()
    try:
        result = figure_module(module).main(argv)
    except Interrupted:  # Ctrl-C, SIGTERM or SIGHUP: the whole command stops, not only this figure
        raise
    except (Exception, SystemExit) as e:  # a figure's SystemExit carries its one-line message
        entry["error"] = (str(e) or type(e).__name__) if isinstance(e, SystemExit) else traceback.format_exc(limit=3)
        result = None
    entry["seconds"] = time.time() - t0
    if isinstance(result, dict):
        entry["claims"] = result.get("claims")
        entry["summary"] = result.get("summary")  # a figure's own lines after its table (Figure 3's final values)
        entry["outputs"] = [result[k] for k in ("png", "scatter", "json") if result.get(k)]
        histories = [h for h in result.get("histories") or [] if h]
        entry["data"] = data_names([h["config"] for h in histories if "config" in h])
        entry["runs"] = len({h["key"] for h in histories})
        entry["train_seconds"] = sum({h["key"]: h["seconds"] for h in histories}.values())
    return entry


def _duration(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def render_report(entries, args, total_seconds, done):
    """REPORT.md as a string: a summary table, then each figure's claim table, then the versions."""
    lines = ["# minigcnc: reproduction report", "",
             f"`python -m minigcnc.reproduce` at scale **{args.scale}**, {args.jobs} parallel run(s) per figure, "
             f"written {datetime.datetime.now().isoformat(timespec='seconds')}.", ""]
    status = "finished" if done else "in progress"
    lines += [f"Total wall time: **{_duration(total_seconds)}** ({total_seconds:.1f} s), {status}.", "",
              "Wall time is this command's; a figure whose runs came from the cache only redraws. *Run-seconds* is the",
              "time its distinct runs took when they were trained (each in one worker process), cached or not:",
              "divided by the parallel jobs, it is what the figure costs from an empty cache.", "",
              "| figure | wall time | runs | run-seconds | result |", "| --- | --- | --- | --- | --- |"]
    for e in entries:
        if "error" in e:
            result = "error: " + e["error"].strip().splitlines()[-1]
        elif e.get("claims") is not None:
            result = claim_table(e["claims"], scale=args.scale, data=e.get("data")).strip().splitlines()[-1]
        else:
            result = "done"
        runs = f"{e['runs']} | {e['train_seconds']:.0f} s" if "runs" in e else "- | -"
        lines.append(f"| {e['name']} | {_duration(e['seconds'])} ({e['seconds']:.1f} s) | {runs} | "
                     f"{result.replace('|', '/')} |")
    for e in entries:
        lines += ["", f"## {e['name']}", "", e["what"] + ".", "",
                  f"Wall time: {_duration(e['seconds'])} ({e['seconds']:.1f} s). Command: `{e['command']}`"]
        if e.get("outputs"):
            lines += ["", "Outputs: " + ", ".join(f"`{o}`" for o in e["outputs"])]
        if "error" in e:
            lines += ["", "Error:", "", "```", e["error"].rstrip(), "```"]
        if e.get("claims") is not None:
            lines += ["", "```", claim_table(e["claims"], scale=args.scale, data=e.get("data")), "```"]
        if e.get("summary"):
            lines += ["", "```", e["summary"], "```"]
    if any("runs" in e for e in entries):
        total_runs = sum(e.get("train_seconds", 0.0) for e in entries)
        lines.insert(lines.index("| figure | wall time | runs | run-seconds | result |") - 4,
                     f"From an empty cache these runs take {total_runs:.0f} run-seconds ({_duration(total_runs / args.jobs)} "
                     f"with {args.jobs} jobs, if the jobs are kept busy; a run shared by two figures counts in each).")
        lines.insert(lines.index("| figure | wall time | runs | run-seconds | result |") - 4, "")
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions().items()]
    return "\n".join(lines) + "\n"


def write_report(path, text):
    """Write ``text`` to ``path`` atomically (a reader never sees half a report)."""

    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")

    return write_atomically(path, write)


def main(argv=None):
    """Run the figures and write ``OUT/REPORT.md``; returns {"report", "figures", "seconds"}."""
    from .experiments.cli import MAX_JOBS, MAX_SEEDS, interrupt_anywhere, writable_folder

    p = parser()
    args = p.parse_args(argv)
    if argv is None:
        interrupt_anywhere(p.prog)  # Ctrl-C at any moment: one line
    for option in ("out", "cache"):
        if getattr(args, option) is not None and not getattr(args, option).strip():
            p.error(f"--{option}: got an empty string; give a folder, or leave the option out for its default")
    if not 1 <= args.jobs <= MAX_JOBS:
        p.error(f"--jobs must be between 1 and {MAX_JOBS}; got {args.jobs}")
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        p.error(f"--seeds must be between 1 and {MAX_SEEDS}; got {args.seeds}")
    if args.out is None:
        args.out = "figures" if args.scale == "laptop" else "results"
    elif args.scale != "laptop" and Path(args.out).resolve() == (Path(__file__).resolve().parents[1] / "figures"):
        p.error(f"--out {args.out}: the committed figures/ hold the laptop-scale figures and their REPORT.md; "
                f"write a {args.scale}-scale run elsewhere (the default is results/)")
    why = writable_folder(args.out)
    if why:
        p.error(f"--out {args.out}: cannot write there ({why}); give a folder you can write to")
    names = args.only or list(FIGURES)
    report = Path(args.out) / "REPORT.md"
    t0 = time.time()
    entries = []
    bar = tqdm(names, desc="reproduce", unit="figure", disable=True if args.quiet else None)
    for name in bar:
        bar.set_postfix_str(name)
        entries.append(run_figure(name, args))
        write_report(report, render_report(entries, args, time.time() - t0, done=False))
    bar.close()
    total = time.time() - t0
    write_report(report, render_report(entries, args, total, done=True))
    failed = [e["name"] for e in entries if "error" in e]
    print(f"reproduce: {len(entries) - len(failed)} of {len(entries)} figures done in {_duration(total)}; "
          f"report {report}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    if failed and argv is None:
        sys.exit(1)
    return {"report": str(report), "figures": entries, "seconds": total}


if __name__ == "__main__":
    main()
