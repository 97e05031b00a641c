"""Reading a run's history: the curve of a metric over training, its final value, the runs' training time.

A history is the JSON-able dict ``run.run`` returns and the cache stores:
``{"config", "key", "model", "status": "finished" | "diverged", "message", "seconds",
"evals": [{"step": s, metric: value, ...}, ...], "losses", "versions"}``.
"""
import numpy as onp


def series(history, metric):
    """(steps, values) of ``metric`` over the evaluations of one run: int64 steps, float values (NaN if missing)."""
    evals = history["evals"]
    steps = onp.array([int(e["step"]) for e in evals], dtype=onp.int64)
    vals = onp.array([e.get(metric, float("nan")) for e in evals], dtype=float)
    return steps, vals


def final(history, metric):
    """The last recorded value of ``metric`` (NaN for a diverged run: its end state is not comparable)."""
    if history["status"] != "finished" or not history["evals"]:
        return float("nan")
    return float(history["evals"][-1].get(metric, float("nan")))


def finals(histories_per_seed, metric):
    """[[final metric per run] per seed] for histories laid out [[history per value] per seed]."""
    return [[final(h, metric) for h in hs] for hs in histories_per_seed]


def train_seconds(histories):
    """Wall seconds the distinct runs took when they were trained (a cached run keeps its first time)."""
    return float(sum({h["key"]: h["seconds"] for h in histories}.values()))
