"""The experiment engine: cached, resumable, parallel runs; claim statistics; Figure 3 end to end."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minigcnc.experiments import claims as C
from minigcnc import runs
from minigcnc.runs import RunConfig

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


# ---- config keys --------------------------------------------------------------------------------
def test_key_depends_on_what_changes_the_result():
    assert TINY.key() == TINY.replace().key()
    assert TINY.key() != TINY.replace(lr=0.2).key()
    assert TINY.key() != TINY.replace(seed=1).key()


def test_key_ignores_data_root_and_fields_at_their_defaults():
    assert TINY.key() == TINY.replace(data_root="/somewhere").key()
    assert RunConfig().key() == RunConfig(lr=RunConfig().lr).key()


# ---- one run, cache -----------------------------------------------------------------------------
def test_run_records_every_metric_at_every_evaluation(tmp_path):
    h = runs.run(TINY, tmp_path, progress=False)
    assert h["status"] == "finished"
    assert [e["step"] for e in h["evals"]] == [0, 20, 40, 60]
    for key in ["train_loss", "train_acc", "test_acc", "gc", "class_gc", "gcol", "nc_train", "nc_test", "nc1",
                "nc2_equinorm", "nc3", "nc4", "ncc_test_error", "logit_gc", "bound_markov", "bound_directional",
                "bound_gc", "bound_gc_directional"]:
        assert key in h["evals"][-1], key
    last = h["evals"][-1]
    assert np.isfinite(last["gc"]) and last["gc"] > 0
    assert last["bound_markov"] >= last["bound_directional"]
    assert runs.run_path(TINY, tmp_path).exists()


def test_finished_run_is_reused_without_training(tmp_path, monkeypatch):
    first = runs.run(TINY, tmp_path, progress=False)
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("a cached run was retrained"))
    assert runs.run(TINY, tmp_path, progress=False) == first


def test_fresh_recomputes_the_same_numbers(tmp_path):
    a = runs.run(TINY, tmp_path, progress=False)
    b = runs.run(TINY, tmp_path, progress=False, fresh=True)
    assert a["evals"] == b["evals"]


def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    bad = TINY.replace(lr=1e6)
    hs = runs.run_many([bad, TINY], tmp_path, jobs=1, progress=False)
    assert hs[0]["status"] == "diverged" and "diverged at step" in hs[0]["message"]
    assert hs[1]["status"] == "finished"
    assert np.isnan(runs.final(hs[0], "gc"))


def test_interrupted_sweep_keeps_finished_runs(tmp_path, monkeypatch):
    cfgs = [TINY.replace(seed=s) for s in range(3)]
    real_run = runs.run
    calls = []

    def interrupted(config, *a, **k):
        calls.append(config.seed)
        if config.seed == 1:
            raise KeyboardInterrupt
        return real_run(config, *a, **k)

    monkeypatch.setattr(runs, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.run_many(cfgs, tmp_path, jobs=1, progress=False)
    assert runs.load_run(cfgs[0], tmp_path) is not None
    monkeypatch.setattr(runs, "run", lambda config, *a, **k: (calls.append(config.seed), real_run(config, *a, **k))[1])
    calls.clear()
    hs = runs.run_many(cfgs, tmp_path, jobs=1, progress=False)
    assert calls == [1, 2]  # seed 0 was not redone
    assert all(h["status"] == "finished" for h in hs)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from minigcnc.runs import RunConfig, run_many
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
    resumed = json.loads(runs.run_path(cfg, cache).read_text())
    clean = runs.run(cfg, tmp_path / "clean", progress=False)
    assert [e["gc"] for e in resumed["evals"]] == [e["gc"] for e in clean["evals"]]


def test_parallel_sweep_matches_sequential(tmp_path):
    cfgs = [TINY.replace(seed=s) for s in range(2)]
    par = runs.run_many(cfgs, tmp_path / "par", jobs=2, progress=False)
    seq = runs.run_many(cfgs, tmp_path / "seq", jobs=1, progress=False)
    assert [h["evals"] for h in par] == [h["evals"] for h in seq]


def test_dask_backend_runs_a_sweep(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        hs = runs.run_many([TINY], tmp_path, dask=cl.scheduler_address, progress=False)
    assert hs[0]["status"] == "finished"


# ---- claim statistics ---------------------------------------------------------------------------
def test_spearman_of_hand_cases():
    assert C.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert C.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert C.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert np.isnan(C.spearman([1, 1, 1], [1, 2, 3]))
    assert C.spearman([1, 2, np.nan, 4], [1, 3, 100, 2]) == pytest.approx(0.5)  # non-finite pairs dropped


def test_rank_correlation_claim_verdicts():
    up = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, +1, "x", "y")
    assert up.verdict == "holds" and up.n_seeds == 3
    down = C.rank_correlation_claim("f", "s", [[1, 2, 3]] * 3, [[1, 2, 3]] * 3, -1, "x", "y")
    assert down.verdict == "fails"
    mixed = C.rank_correlation_claim("f", "s", [[1, 2, 3], [1, 2, 3]], [[1, 2, 3], [3, 2, 1]], +1, "x", "y")
    assert mixed.verdict == "mixed"


def test_fraction_above_claim():
    c = C.fraction_above_claim("f", "s", [[2, 2], [2, 0]], [[1, 1], [1, 1]], "b", "e")
    assert c.value == pytest.approx(0.75) and c.verdict == "mixed"
    assert "statistic" in C.claim_table([c]).splitlines()[0]


# ---- Figure 3 end to end --------------------------------------------------------------------------
def test_figure3_tiny_writes_png_json_and_claims_then_reuses_the_cache(tmp_path, monkeypatch, capsys):
    from minigcnc import figure3

    t0 = time.time()
    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert time.time() - t0 < 30
    png, js = tmp_path / "figure3_tiny.png", tmp_path / "figure3_tiny.json"
    assert png.stat().st_size > 10_000
    doc = json.loads(js.read_text())
    stats = {c["statistic"] for c in doc["claims"]}
    assert "pearson(bound_gc, ncc_test_error)" in stats
    assert "fraction(bound_markov >= ncc_test_error)" in stats
    assert len(doc["runs"]) == 2 and all(r["status"] == "finished" for r in doc["runs"])
    # the rigorous rho-free bounds really bound the measured error
    for c in doc["claims"]:
        if c["statistic"] in ("fraction(bound_markov >= ncc_test_error)", "fraction(bound_directional >= ncc_test_error)"):
            assert c["value"] == 1.0
    assert "verdict" in capsys.readouterr().out
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("figure3 retrained a cached run"))
    t0 = time.time()
    again = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert time.time() - t0 < 10
    assert [h["evals"] for h in again["histories"]] == [h["evals"] for h in out["histories"]]


def test_a_figure_command_ends_with_the_message_when_a_dataset_file_is_missing(tmp_path):
    from minigcnc import figure_mnist

    with pytest.raises(SystemExit) as stop:
        figure_mnist.main(["--scale", "paper", "--backend", "numpy", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    message = str(stop.value)
    assert "figure_mnist: a dataset file is missing" in message and "--data-root" in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "empty") in message


def test_a_figure_command_ends_with_the_message_when_cupy_is_missing(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    from minigcnc import figure3

    with pytest.raises(SystemExit, match=r"figure3: backend='cupy' needs CuPy.*\.\[gpu\]"):
        figure3.main(["--scale", "tiny", "--backend", "cupy", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
