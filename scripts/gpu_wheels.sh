#!/usr/bin/env bash
# Fetch into .whl/ the wheels that a GPU machine without network lacks, for tests/gpu/check.sh.
#
#   bash scripts/gpu_wheels.sh                 # on a machine that reaches PyPI, before the GPU run
#
# The lent GPU image ships CuPy (cupy-cuda13x), NumPy, scikit-learn, matplotlib, tqdm, joblib and pytest, but
# not autograd. autograd is pure Python, so one wheel serves every platform; its version is the one installed
# here, so the GPU run differentiates with the same autograd as the CPU tests. .whl/ is kept out of git
# (.git/info/exclude) and travels to the device as a carried path; check.sh installs from it with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
if [ -d .git ] && ! grep -qx '/.whl/' .git/info/exclude 2>/dev/null; then
  echo '/.whl/' >> .git/info/exclude
fi
PY="${PYTHON:-python3}"
ver="$("$PY" -c 'from importlib.metadata import version; print(version("autograd"))' 2>/dev/null || true)"
spec="autograd${ver:+==$ver}"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d .whl "$spec"
ls -l .whl
