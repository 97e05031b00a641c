#!/usr/bin/env bash
# The GPU checks of minigcnc in one go, within 8 minutes: the machine, the `gpu` tests, the GPU benchmark.
#
#   bash tests/gpu/check.sh          (from any folder; PYTHON=... picks the interpreter, default python3)
#
# Outputs go to $OUT when it is set, else to a fresh temporary folder (printed at the end): env.txt,
# nvidia_smi.txt, gpu_tests.log, gpu_tests.xml, bench_gpu.log, bench_gpu.json, summary.txt.
# Installs only what is missing of `pip install -e ".[gpu,test]"` (the package's dependencies and extras): an
# image that already ships CuPy (e.g. cupy-cuda13x) keeps it; wheels in .whl/ are used first (no network:
# e.g. autograd, pure Python, from `pip download --no-deps autograd -d .whl` on a machine that has one).
# minigcnc itself is imported from this checkout through PYTHONPATH, so site-packages is left alone.
# Fails loudly when CuPy cannot see a GPU; the tests then fail instead of skipping (MINIGCNC_REQUIRE_GPU=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET="${CHECK_BUDGET:-470}"  # seconds for everything (8 minutes less a margin)
PY="${PYTHON:-python3}"
OUTDIR="${OUT:-}"
[ -n "$OUTDIR" ] || OUTDIR="$(mktemp -d "${TMPDIR:-/tmp}/minigcnc-gpu-XXXXXX")"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MINIGCNC_REQUIRE_GPU=1
left() { echo $((BUDGET - SECONDS)); }
cap() { local t=$1 max=$2; [ "$t" -lt "$max" ] || t=$max; [ "$t" -gt 10 ] || t=10; echo "$t"; }
say() { echo "== [$SECONDS s] $*"; }

say "nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
  { timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
    timeout 30 nvidia-smi | grep -o "CUDA Version: *[0-9.]*" || true; } | tee "$OUTDIR/nvidia_smi.txt"
else
  echo "WARNING: nvidia-smi not found (no NVIDIA driver tools on PATH)" | tee "$OUTDIR/nvidia_smi.txt"
fi

say "python packages"
missing="$("$PY" - <<'EOF'
import importlib.util
need = {"numpy": "numpy", "autograd": "autograd", "sklearn": "scikit-learn", "matplotlib": "matplotlib",
        "tqdm": "tqdm", "joblib": "joblib", "pytest": "pytest", "cupy": "cupy-cuda12x"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)"
{
  if [ -n "$missing" ]; then
    echo "installing: $missing"
    src=()
    [ -d .whl ] && src=(--no-index --find-links .whl)
    # shellcheck disable=SC2086
    if ! timeout "$(cap $(($(left) - 380)) 120)" "$PY" -m pip install -q --disable-pip-version-check \
        --retries 1 --timeout 15 "${src[@]}" $missing; then
      echo "FAIL: could not install: $missing. Without network, carry wheels in .whl/ (see the device notes);"
      echo "      CuPy itself must match the CUDA driver (cupy-cuda12x or cupy-cuda13x)."
      exit 2
    fi
  fi
} 2>&1 | tee "$OUTDIR/env.txt"

say "cupy and the GPU"
if ! timeout 120 "$PY" - 2>&1 <<'EOF' | tee -a "$OUTDIR/env.txt"; then
import platform, sys
import numpy, autograd, cupy
from importlib.metadata import version
from minigcnc.bench.gpu import cupy_or_reason, device_info
cp, reason = cupy_or_reason()
if cp is None:
    sys.exit(f"FAIL: {reason}")
info = device_info(cp)
print(f"python {platform.python_version()}, numpy {numpy.__version__}, autograd {version('autograd')}, "
      f"cupy {cupy.__version__}")
print(f"device {info['device']}, {info['memory_total_gib']} GiB ({info['memory_free_gib']} free), "
      f"CUDA runtime {info['cuda_runtime']}, driver {info['cuda_driver']}")
x = cp.arange(10, dtype=cp.float32)
assert float(cp.asnumpy((x * x).sum())) == 285.0, "a CUDA kernel gave a wrong sum"
try:
    import torch
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
except ImportError:
    print("torch not importable: the benchmark skips the PyTorch comparison")
EOF
  echo "FAIL: CuPy cannot use a GPU here (see above); stopping." | tee -a "$OUTDIR/env.txt"
  exit 3
fi

say "gpu tests"
set +e
timeout -s INT -k 15 "$(cap $(($(left) - 170)) 220)" "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs \
  -p no:cacheprovider --junitxml="$OUTDIR/gpu_tests.xml" 2>&1 | tee "$OUTDIR/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

say "gpu benchmark"
timeout -s INT -k 15 "$(cap $(($(left) - 5)) 300)" "$PY" -m minigcnc.bench.gpu --json "$OUTDIR/bench_gpu.json" 2>&1 \
  | tee "$OUTDIR/bench_gpu.log"
bench_rc=${PIPESTATUS[0]}
set -e

status="tests rc=$tests_rc, benchmark rc=$bench_rc, $SECONDS s in all; outputs in $OUTDIR"
say "$status"
echo "$status" >"$OUTDIR/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
