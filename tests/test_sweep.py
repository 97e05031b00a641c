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
    assert hs[0]["status"] == "diverged" and "diverged after step" in hs[0]["message"]
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


# ---- kill -9 leaves no worker; a killed worker costs only its run's steps; own metrics in the workers ----------

PARALLEL_SCRIPT = textwrap.dedent("""
    import sys
    from minigcnc.experiments.config import RunConfig
    from minigcnc.experiments.sweep import run_many
    cfgs = [RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=20000,
                      eval_every=20, eval_per_class=5, seed=s) for s in range(3)]
    run_many(cfgs, sys.argv[1], jobs=2, progress=False)
""")


def test_kill_9_of_a_parallel_sweep_leaves_no_worker(tmp_path):
    """SIGKILL to the main process only: its joblib workers (and loky's resource tracker) notice their parent is
    gone and end within seconds, though nobody could stop them; their checkpoints stay for the rerun."""
    from test_cli import alive, descendants

    script = tmp_path / "sweep.py"
    script.write_text(PARALLEL_SCRIPT)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(cache)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(cache.glob("runs/*.ckpt.npz"))) < 2 and proc.poll() is None:
            time.sleep(0.05)
        workers = descendants(proc.pid)
        assert len(workers) >= 2 and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and any(alive(*w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if alive(*w)], "worker processes outlived a kill -9 of their command"
        assert len(list(cache.glob("runs/*.ckpt.npz"))) >= 2  # kept for the rerun
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_the_watchdog_ends_a_process_whose_parent_is_gone():
    """``watch_parent`` in a grandchild whose parent exits at once: the grandchild ends instead of sleeping."""
    code = textwrap.dedent("""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import os, time\\n"
                                  "from minigcnc.experiments.sweep import watch_parent\\n"
                                  f"watch_parent({os.getpid()}, interval=0.05)\\n"
                                  "time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(1.5)  # (the grandchild has started its watchdog)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    grandchild = int(out.stdout.split()[0])
    from test_cli import alive

    with open(f"/proc/{grandchild}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    deadline = time.time() + 10
    while time.time() < deadline and alive(grandchild, start):
        time.sleep(0.05)
    assert not alive(grandchild, start)


def test_jobs_are_capped_by_the_runs_to_train(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sweep, "run_parallel_resilient", lambda configs, cache_dir, jobs, fresh:
                        seen.append(jobs) or iter(()))
    monkeypatch.setattr(sweep, "run", lambda config, *a, **k: seen.append("one at a time"))
    monkeypatch.setattr(sweep, "load_run", lambda config, cache_dir=None: {"seed": config.seed})
    sweep.run_many([TINY.replace(seed=s) for s in range(2)], tmp_path, jobs=40, progress=False,
                   plan=({}, [TINY.replace(seed=s) for s in range(2)]))
    sweep.run_many([TINY], tmp_path, jobs=40, progress=False, plan=({}, [TINY]))
    assert seen == [2, "one at a time"]


@pytest.mark.parametrize("change,message", [
    ({"batch_size": 5000}, r"^batch_size 5000 is larger than the training set of digits \(\d+ images\), in run 2 of 2 "
                           r"\(seed 1\); fix: a batch_size of at most \d+$"),
    ({"eval_per_class": 900}, r"^eval_per_class 900 is more than class \d of digits has \(\d+ training images\), in "
                              r"run 2 of 2 \(seed 1\); fix: eval_per_class of at most \d+$"),
])
def test_a_run_its_data_cannot_train_stops_the_sweep_before_any_run_trains(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        sweep.run_many([TINY, TINY.replace(seed=1, **change)], tmp_path, jobs=1, progress=False)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


OWN_METRIC_SCRIPT = textwrap.dedent('''
    import sys
    from minigcnc.experiments.measure import register_extra
    from minigcnc.experiments.config import RunConfig
    from minigcnc.experiments.sweep import run_many

    OFFSET = float(sys.argv[3])

    @register_extra("mine")
    def mine(model, params, data, seed, step):
        return {"mine": step + OFFSET}

    if __name__ == "__main__":
        cfgs = [RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=40,
                          eval_every=20, eval_per_class=5, extras=("mine",), seed=s) for s in range(2)]
        dask = sys.argv[4] if len(sys.argv) > 4 else None
        hs = run_many(cfgs, sys.argv[1], jobs=int(sys.argv[2]), progress=False, dask=dask)
        print([[e["mine"] for e in h["evals"]] for h in hs])
''')


@pytest.mark.slow  # (~14 s: three commands of two parallel runs each)
def test_an_own_metric_is_recorded_by_parallel_workers_and_its_code_is_part_of_the_key(tmp_path):
    """A metric registered in the user's script (``__main__``) under jobs=2: the workers record it; changing its
    code (here a constant it reads) recomputes the runs instead of reusing them."""
    script = tmp_path / "mine.py"
    script.write_text(OWN_METRIC_SCRIPT)
    cache = str(tmp_path / "cache")

    def run_script(jobs, offset):
        done = subprocess.run([sys.executable, str(script), cache, str(jobs), str(offset)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run_script(2, 0) == "[[0.0, 20.0, 40.0], [0.0, 20.0, 40.0]]"
    assert len(list((tmp_path / "cache" / "runs").glob("*.json"))) == 2
    assert run_script(1, 0) == "[[0.0, 20.0, 40.0], [0.0, 20.0, 40.0]]"  # the same key in this process: reused
    assert len(list((tmp_path / "cache" / "runs").glob("*.json"))) == 2
    assert run_script(2, 0.5) == "[[0.5, 20.5, 40.5], [0.5, 20.5, 40.5]]"  # its code changed: recomputed
    assert len(list((tmp_path / "cache" / "runs").glob("*.json"))) == 4


def test_an_own_metrics_code_is_part_of_the_key_and_travels_to_the_workers(tmp_path, monkeypatch):
    """In this process: registering another function under the same name changes the key; the package's own
    extras leave it alone; a worker given the client's extras records them under the client's key."""
    from minigcnc.experiments import cache, measure

    monkeypatch.setattr(measure, "EXTRAS", dict(measure.EXTRAS))
    monkeypatch.setattr(cache, "PINNED_EXTRAS", {})
    plain = TINY.replace(extras=("gc_estimators",))
    assert cache.extra_code(plain.extras) == "" and run_key(plain) == plain.key(cache.code_hash())

    def first(model, params, data, seed, step):
        return {"mine": 1.0}

    def second(model, params, data, seed, step):
        return {"mine": 2.0}

    mine = TINY.replace(extras=("mine",), steps=20)
    measure.register_extra("mine")(first)
    key_first = run_key(mine)
    measure.register_extra("mine")(second)
    assert run_key(mine) != key_first
    extras = sweep.own_extras([mine])
    assert set(extras) == {"mine"} and extras["mine"][0] is second
    measure.EXTRAS.pop("mine")  # as in a fresh worker process, which never ran the user's script
    history = sweep.quiet_run(mine, tmp_path, False, 1, None, extras)
    assert [e["mine"] for e in history["evals"]] == [2.0, 2.0] and history["key"] == run_key(mine)
    assert cache.load_run(mine, tmp_path) == history
