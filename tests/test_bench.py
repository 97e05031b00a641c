"""minigcnc.bench: the package's command line and a section's report, at the smallest sizes (no timing asserted)."""
import subprocess
import sys

import pytest

from minigcnc.bench.collapse import bench_collapse

pytestmark = pytest.mark.bench  # the lab's checks: out of the default run (python -m pytest -m bench runs them)


def test_bench_collapse_reports_cdnv_and_nc1_timings():
    rows = []
    times = bench_collapse(lambda name, s, note: rows.append((name, s, note)), n=400, p=8, k=5, repeats=1)
    assert [r[0] for r in rows] == ["collapse.cdnv", "collapse.nc1"]
    assert set(times) == {"collapse.cdnv", "collapse.nc1"}
    assert all(isinstance(s, float) for s in times.values())
    assert all("400 x 8 features, 5 classes" in note for _, _, note in rows)


def test_python_m_minigcnc_bench_lists_its_sections_and_options():
    out = subprocess.run([sys.executable, "-m", "minigcnc.bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--only {train,gc,estimators,collapse,floor,threads,gpu}" in out.stdout and "--quick" in out.stdout and "--backend" in out.stdout


# ---- the training-step bench: minigcnc against its reference route, PyTorch and JAX ---------------------------
def test_bench_train_runs_and_its_table_has_a_row_per_model_and_dtype():
    from minigcnc.bench.train import bench_train

    printed, reports = [], []
    out = bench_train(lambda name, s, note: reports.append(name), quick=True, batch=8,
                      frameworks=("minigcnc", "reference"), printer=printed.append)
    assert [(r["model"], r["dtype"]) for r in out["rows"]] == [
        ("mlp", "float32"), ("mlp", "float64"), ("convnet", "float32"), ("convnet", "float64")]
    for r in out["rows"]:
        assert r["minigcnc_ms"] > 0 and r["reference_ms"] > 0 and r["torch_ms"] is None and r["jax_ms"] is None
        assert abs(r["ratio_reference"] - r["minigcnc_ms"] / r["reference_ms"]) < 1e-12
    table = printed[0].splitlines()
    assert "threads: numpy BLAS" in table[0] and "torch n/a" in table[0]
    assert table[2].split() == ["model", "dtype", "minigcnc", "ms", "reference", "ms", "torch", "ms", "jax", "ms",
                                "/reference", "/torch", "/jax", "loss"]
    assert [line.split()[:2] for line in table[3:7]] == [["mlp", "float32"], ["mlp", "float64"],
                                                          ["convnet", "float32"], ["convnet", "float64"]]
    assert all(line.split()[4:6] == ["n/a", "n/a"] for line in table[3:7])
    assert len(reports) == 8


@pytest.mark.slow
def test_bench_train_against_torch_and_jax_checks_their_losses_first():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    from minigcnc.bench.train import bench_train

    printed = []
    out = bench_train(lambda *a: None, quick=True, batch=16, printer=printed.append)
    for r in out["rows"]:
        assert r["torch_ms"] > 0 and r["jax_ms"] > 0 and r["ratio_torch"] > 0 and r["ratio_jax"] > 0
    assert "(set_num_threads)" in out["threads"] and "jax n/a" not in out["threads"]
    assert all("n/a" not in line for line in printed[0].splitlines()[3:7])


def test_python_m_minigcnc_bench_train_prints_the_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "minigcnc.bench.train", "--quick", "--batch", "4", "--no-torch",
                          "--no-jax", "--models", "mlp", "--dtypes", "float32"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "minigcnc ms" in out.stdout and "\nmlp      float32" in out.stdout


def test_bench_estimators_times_every_level_against_the_exact_gc():
    from minigcnc.bench.estimators import bench_estimators
    from minigcnc.experiments.measure import GC_ESTIMATOR_LEVELS

    rows = []
    out = bench_estimators(lambda name, s, note: rows.append(name), quick=True)
    assert len(out) == 1 + sum(len(levels) for _, levels in GC_ESTIMATOR_LEVELS.values())
    assert out["gc"][1] == 1.0 and all(secs > 0 and sd >= 0 for secs, _, sd in out.values())
    assert out["gc_subset_100"][2] == 0.0  # a subset of all 100 images is the exact GC
    assert rows[0] == "estimators.exact" and len(rows) == len(out)



def test_bench_floor_sums_every_reproduce_run_steps_per_figure():
    from minigcnc.bench.floor import bench_floor, reproduce_configs
    from minigcnc.registry import FIGURES

    printed, reports = [], []
    out = bench_floor(lambda name, s, note: reports.append((name, s)), quick=True, printer=printed.append)
    configs = reproduce_configs("tiny")
    assert list(out["figures"]) == list(configs) == list(FIGURES)  # every figure reproduce makes, in its order
    for name, row in out["figures"].items():
        assert row["steps"] == sum(c.steps for c in configs[name])  # distinct runs, each counted once per figure
        assert row["minigcnc_s"] > 0
    assert out["total_minigcnc_s"] == pytest.approx(sum(r["minigcnc_s"] for r in out["figures"].values()))
    assert all(s > 0 for _, s in reports)
    assert printed[0].splitlines()[-1].startswith("total on 2 jobs: minigcnc")


def test_bench_threads_times_fit_three_ways_idle_and_busy_and_prints_default_over_best_fixed():
    from minigcnc.bench.threads import WAYS, bench_threads, models_to_time

    printed, reports = [], []
    out = bench_threads(lambda name, s, note: reports.append(name), quick=True, steps=2, n=130, printer=printed.append)
    labels = list(models_to_time())
    assert len(reports) == 2 * len(labels) * len(WAYS) and set(out) == {"idle", "busy", "loads"}
    for condition in ("idle", "busy"):
        for label in labels:
            r = out[condition][label]
            assert all(r[w] > 0 for w in WAYS)
            assert r["ratio"] == r["default"] / min(r["one thread"], r["all threads"])
    lines = printed[0].splitlines()
    assert "float32 on 130 mnist5k images" in lines[0] and "BLAS: " in lines[0]
    assert lines[1].split()[-1] == "default/best" and sum(line.startswith("busy ") for line in lines) == len(labels)
    assert any("busy: load" in line and "cores idle" in line for line in lines)
