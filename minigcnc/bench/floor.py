"""The training floor of ``python -m minigcnc.reproduce``: how long its SGD steps alone take, ours and PyTorch's.

Run ``python -m minigcnc.bench.floor [--scale laptop] [--jobs 2] [--repeats 15]``; ``python -m minigcnc.bench
--only floor`` calls ``bench_floor(report)``.

Every distinct run of every figure that ``reproduce`` makes (``registry.FIGURES``, the same configs, a run
shared by two figures counted in each, as REPORT.md does) is grouped by the network and the batch it trains
(model, widths, batch size, dtype, classes, input shape). For each group one SGD step is timed, with one BLAS
thread (what each of ``reproduce``'s jobs has when the jobs fill the cores, as its default 2 jobs do on 2 cores;
``reproduce`` gives each job cores // jobs threads), for minigcnc (``train.fit``'s fused step) and, when torch
is importable, for PyTorch's eager CPU step on the same parameters (``bench.train.torch_step``, one torch
thread; MLPs and ``convnet`` only). The floor of a figure is the sum over its runs of steps x step time; the
total is divided by ``--jobs``. Everything else a run does is left out: data preparation, and the evaluations
at every checkpoint (exact GC, collapse metrics, few-shot episodes). A GC-regularized run is timed as a plain
step, so its floor is a lower bound. Median over ``--repeats`` steps; compare ratios, not seconds.
"""
import argparse
import time
from collections import Counter, defaultdict

import numpy as onp

from .train import minigcnc_step, optional_torch, torch_step


def reproduce_configs(scale="laptop"):
    """{figure name: [RunConfig of each distinct run]} of every figure ``python -m minigcnc.reproduce`` makes."""
    from ..registry import FIGURES, figure_configs

    out = {}
    for name in FIGURES:
        cfgs = figure_configs(name, scale)  # the figure's configs(scale, **options), e.g. split="digits"
        out[name] = list({c.key(): c for c in cfgs}.values())
    return out


def step_group(config):
    """What a run's step time depends on: (model, hidden, channels, width, activation, batch, dtype, dataset,
    classes)."""
    return (config.model, config.hidden, config.channels, config.width, config.activation, config.batch_size,
            config.dtype, config.dataset, config.classes)


def _median_step(step, repeats):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(onp.median(times))


def time_group(config, repeats, torch=None):
    """(minigcnc seconds, torch seconds or None) of one SGD step of ``config``'s network on random inputs."""
    from ..experiments.prepare import build_model, prepare_data


    data = prepare_data(config.replace(fewshot_episodes=0, target_classes=(), target_dataset=""))
    model = build_model(config, data.n_classes, data.input_shape)
    params = model.init(0, dtype=config.dtype)
    rng = onp.random.default_rng(0)
    X = rng.standard_normal((config.batch_size,) + tuple(data.input_shape)).astype(config.dtype)
    y = rng.integers(0, data.n_classes, config.batch_size)
    ours = _median_step(minigcnc_step(model, params, X, y), repeats)
    theirs = None
    if torch is not None and config.model in ("mlp", "convnet") and config.activation == "relu":
        Xt = X if config.model == "convnet" else X.reshape(len(X), -1)
        theirs = _median_step(torch_step(torch, config.model, model.init(0, dtype=config.dtype), Xt, y)[0], repeats)
    return ours, theirs


def bench_floor(report, quick=False, scale=None, jobs=2, repeats=None, printer=print):
    """Time every step group of ``reproduce`` at ``scale`` (laptop; ``quick``: tiny) and print the floor table.

    Returns ``{"figures": {name: {"steps", "minigcnc_s", "torch_s"}}, "total_minigcnc_s", "total_torch_s",
    "jobs"}`` (torch entries None without torch).
    """
    from threadpoolctl import threadpool_limits

    scale = scale or ("tiny" if quick else "laptop")
    repeats = repeats or (3 if quick else 15)
    torch = optional_torch()
    if torch is not None:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    figures = reproduce_configs(scale)
    steps = defaultdict(Counter)
    examples = {}
    for name, cfgs in figures.items():
        for c in cfgs:
            steps[name][step_group(c)] += c.steps
            examples.setdefault(step_group(c), c)
    times = {}
    try:
        with threadpool_limits(1, user_api="blas"):
            for group, config in examples.items():
                times[group] = time_group(config, repeats, torch)
                ours, theirs = times[group]
                label = (f"step {config.model} {'-'.join(map(str, config.channels or config.hidden))} "
                         f"bs {config.batch_size} {config.dataset} {len(config.classes) or 'all'} classes")
                report(f"{label} (minigcnc)", ours, config.dtype)
                if theirs is not None:
                    report(f"{label} (torch)", theirs, config.dtype)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    out, total_ours, total_torch = {}, 0.0, 0.0
    for name, counts in steps.items():
        ours = sum(n * times[g][0] for g, n in counts.items())
        theirs = None if any(times[g][1] is None for g in counts) else sum(n * times[g][1] for g, n in counts.items())
        out[name] = {"steps": sum(counts.values()), "minigcnc_s": ours, "torch_s": theirs}
        total_ours += ours
        total_torch = None if theirs is None or total_torch is None else total_torch + theirs
    lines = [f"training floor of python -m minigcnc.reproduce --scale {scale}: SGD steps only, one BLAS thread "
             f"per job, median of {repeats} steps per network",
             f"{'figure':<26s} {'steps':>8s} {'minigcnc s':>11s} {'torch s':>9s}"]
    for name, row in out.items():
        torch_cell = f"{row['torch_s']:9.1f}" if row["torch_s"] is not None else f"{'n/a':>9s}"
        lines.append(f"{name:<26s} {row['steps']:8d} {row['minigcnc_s']:11.1f} {torch_cell}")
    torch_total = f"{total_torch / jobs / 60:.1f} min" if total_torch is not None else "n/a"
    lines.append(f"total on {jobs} jobs: minigcnc {total_ours / jobs / 60:.1f} min, torch {torch_total} "
                 "(evaluations, data preparation and start-up not included; GC-regularized runs as plain steps)")
    printer("\n".join(lines))
    return {"figures": out, "total_minigcnc_s": total_ours, "total_torch_s": total_torch, "jobs": jobs}


def main(argv=None):
    """Command line of ``python -m minigcnc.bench.floor``."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("tiny", "laptop"), default="laptop")
    p.add_argument("--jobs", type=int, default=2, help="parallel jobs the total is divided by (default 2)")
    p.add_argument("--repeats", type=int, default=15, help="timed steps per network (default 15)")
    args = p.parse_args(argv)
    return bench_floor(lambda *a: None, scale=args.scale, jobs=args.jobs, repeats=args.repeats)


if __name__ == "__main__":
    main()
