"""The GPU tests and the GPU benchmark, dry-run on the CPU against a fake CuPy (``tests/fake_cupy``).

``tests/test_gpu.py`` and ``minigcnc.bench.gpu`` only run where a CUDA GPU is lent, which most machines of
this project are not. Here a child process finds the strict stand-in device array (``strict_device``) under
the name ``cupy``, so every line of the GPU tests that does not need CUDA itself runs on every CI run: the
``"cupy"`` backend's registration, the float64 parity checks against NumPy (on the stand-in, the two routes
are the same arithmetic, so these check plumbing and the no-host-copy rule, not CUDA's numerics), and the
benchmark's code path at its smallest size. The full-width paper-scale tests are left out (-k): VGG-13 at
batch 128 on two CPU cores would take minutes, and the stand-in says nothing new about them.
"""
import json
import os
import subprocess
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAPER_SCALE = "not paper_scale and not float32_convolutional_run"


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "fake_cupy"), ROOT] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MINIGCNC_REQUIRE_GPU"] = "1"  # a skip would be a failure: the fake must be taken for a GPU
    env.pop("MINIGCNC_BACKEND", None)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def test_the_fake_cupy_is_not_visible_to_this_process():
    try:
        import cupy
    except ImportError:
        return
    assert not getattr(cupy, "FAKE", False), "tests/fake_cupy leaked onto sys.path of the main test process"


def test_the_gpu_tests_pass_against_the_strict_stand_in(tmp_path):
    junit = tmp_path / "gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", os.path.join(HERE, "test_gpu.py"), "-q", "-rs",
           "-p", "no:cacheprovider", "-k", PAPER_SCALE, f"--junitxml={junit}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    xml = junit.read_text()
    assert 'skipped="0"' in xml and 'failures="0"' in xml and 'errors="0"' in xml, xml[:400]
    n = int(xml.split('tests="')[1].split('"')[0])
    assert n >= 40, f"only {n} GPU tests ran against the stand-in:\n{out[-3000:]}"


def test_the_gpu_benchmark_runs_against_the_strict_stand_in(tmp_path):
    path = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "minigcnc.bench.gpu", "--quick", "--batch", "2", "--gc-inputs", "2",
           "--gc-batch", "1", "--repeats", "1", "--no-torch", "--json", str(path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    res = json.loads(path.read_text())["results"]
    assert "skipped" not in res and res["device"] == "strict stand-in (CPU)", res
    agree = {k: v for k, v in res.items() if k.startswith("agree.")}
    assert agree and all(v <= 1e-3 for v in agree.values()), agree
