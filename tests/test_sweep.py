"""experiments/sweep.py: a sweep goes on past a diverged run, keeps its finished runs when interrupted or killed
and resumes, runs in parallel with the same numbers, reads the cache once, and checks every config before any
run trains (one run: test_run.py; on Dask: test_dask_runner.py; the checks themselves: test_config.py)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minigcnc.experiments import sweep
from minigcnc.experiments.cache import load_run, run_key, run_path
from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.grid import flat, sweep_configs
from minigcnc.experiments.history import final
from minigcnc.experiments.run import run

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    bad = TINY.replace(lr=1e6)
    hs = sweep.run_many([bad, TINY], tmp_path, jobs=1, progress=False)
    assert hs[0]["status"] == "diverged" and "diverged at step" in hs[0]["message"]
    assert hs[1]["status"] == "finished"
    assert np.isnan(final(hs[0], "gc"))


def test_interrupted_sweep_keeps_finished_runs(tmp_path, monkeypatch):
    cfgs = [TINY.replace(seed=s) for s in range(3)]
    real_run = sweep.run
    calls = []

    def interrupted(config, *a, **k):
        calls.append(config.seed)
        if config.seed == 1:
            raise KeyboardInterrupt
        return real_run(config, *a, **k)

    monkeypatch.setattr(sweep, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_many(cfgs, tmp_path, jobs=1, progress=False)
    assert load_run(cfgs[0], tmp_path) is not None
    monkeypatch.setattr(sweep, "run", lambda config, *a, **k: (calls.append(config.seed), real_run(config, *a, **k))[1])
    calls.clear()
    hs = sweep.run_many(cfgs, tmp_path, jobs=1, progress=False)
    assert calls == [1, 2]  # seed 0 was not redone
    assert all(h["status"] == "finished" for h in hs)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from minigcnc.experiments.config import RunConfig
    from minigcnc.experiments.sweep import run_many
    cfgs = [RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=240,
                      eval_every=20, eval_per_class=5, seed=s) for s in range(3)]
    run_many(cfgs, sys.argv[1], jobs=1, progress=False)
""")


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    """SIGKILL a sweep mid-way; the rerun keeps the finished run's file and resumes the one in progress."""
    script = tmp_path / "sweep.py"
    script.write_text(KILL_SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(cache)])
    folder = cache / "runs"
    deadline = time.time() + 120
    # wait until the first run is finished and the second has a checkpoint
    while time.time() < deadline:
        done = list(folder.glob("*.json")) if folder.exists() else []
        ckpts = list(folder.glob("*.ckpt.npz")) if folder.exists() else []
        if done and ckpts:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = list(folder.glob("*.json"))
    assert len(finished) >= 1, "the first run should have finished before the kill"
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    subprocess.run([sys.executable, str(script), str(cache)], check=True)
    assert len(list(folder.glob("*.json"))) == 3
    assert not list(folder.glob("*.ckpt.npz")), "checkpoints are removed once a run finishes"
    for p, t in stamps.items():
        assert p.stat().st_mtime_ns == t, f"{p.name} was recomputed"
    # a run resumed from its checkpoint gives the same numbers as an uninterrupted one
    cfg = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=240, eval_every=20,
                    eval_per_class=5, seed=1)
    resumed = json.loads(run_path(cfg, cache).read_text())
    clean = run(cfg, tmp_path / "clean", progress=False)
    assert [e["gc"] for e in resumed["evals"]] == [e["gc"] for e in clean["evals"]]


def test_parallel_sweep_matches_sequential(tmp_path):
    cfgs = [TINY.replace(seed=s) for s in range(2)]
    par = sweep.run_many(cfgs, tmp_path / "par", jobs=2, progress=False)
    seq = sweep.run_many(cfgs, tmp_path / "seq", jobs=1, progress=False)
    assert [h["evals"] for h in par] == [h["evals"] for h in seq]



def test_a_sweep_reads_each_cached_run_once_and_a_repeated_config_gets_its_own_copy(tmp_path, monkeypatch):
    cfgs = [TINY.replace(seed=s) for s in range(2)]
    sweep.run_many(cfgs, tmp_path, jobs=1, progress=False)
    real, reads = sweep.load_run, []
    monkeypatch.setattr(sweep, "load_run", lambda config, cache_dir=None: reads.append(config.seed) or
                        real(config, cache_dir))
    plan = sweep.cached_and_todo(cfgs + cfgs[:1], tmp_path)  # what cli.run_sweep counts before the sweep starts
    assert sorted(reads) == [0, 1] and sorted(plan[0]) == sorted(map(run_key, cfgs)) and plan[1] == []
    hs = sweep.run_many(cfgs + cfgs[:1], tmp_path, jobs=1, progress=False, plan=plan)
    assert sorted(reads) == [0, 1]  # the sweep read no file again
    assert hs[2] == hs[0] and hs[2] is not hs[0] and [h["config"]["seed"] for h in hs] == [0, 1, 0]
    reads.clear()
    assert sweep.run_many(cfgs, tmp_path, jobs=1, progress=False) == hs[:2] and sorted(reads) == [0, 1]
    reads.clear()
    assert sweep.cached_and_todo(cfgs, tmp_path, fresh=True) == ({}, cfgs)
    assert reads == []  # fresh: nothing is read, everything trains
    bigger = sweep.cached_and_todo(cfgs + [TINY.replace(seed=2)], tmp_path)  # a plan for more configs
    assert sweep.run_many(cfgs, tmp_path, jobs=1, progress=False, plan=bigger) == hs[:2]
    assert not run_path(TINY.replace(seed=2), tmp_path).exists()  # only the configs given are trained
    with pytest.raises(ValueError, match=r"^run_many: plan was made for other configs"):
        sweep.run_many(cfgs, tmp_path, jobs=1, progress=False, plan=sweep.cached_and_todo(cfgs[:1], tmp_path))


# ---- every config is checked before any run trains ---------------------------------------------------------

def test_a_sweep_with_one_bad_config_trains_nothing(tmp_path):
    from minigcnc.data import DATASETS

    configs = flat(sweep_configs(TINY, {"dataset": ["digits", "imagenet"]}, [0]))
    with pytest.raises(ValueError) as bad:
        sweep.run_many(configs, tmp_path, jobs=1, progress=False)
    assert str(bad.value) == (f"dataset must be one of {', '.join(repr(d) for d in DATASETS)}; got 'imagenet'; "
                              "fix: set dataset to an accepted value in run 2 of 2 (seed 0) of the sweep")
    assert not (tmp_path / "runs").exists()  # the digits run was not trained first
    configs = flat(sweep_configs(TINY, {"lr": [0.1, -0.1]}, [0, 1]))
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0; got -0.1; fix: set lr to an accepted "
                                         r"value in run 2 of 4 \(seed 0\) of the sweep$"):
        sweep.run_many(configs, tmp_path, jobs=2, progress=False)  # in this process, before any worker starts
    assert not (tmp_path / "runs").exists()
