#!/usr/bin/env bash
# Runs a fast subset of the tests under each pair of autograd and NumPy versions that setup.cfg's floors admit:
# autograd 1.7 / 1.8 / 1.9 and NumPy 1.26 / 2.x, one virtual environment each, and prints the matrix.
#
#   scripts/check_floors.sh [WORKDIR]      (default WORKDIR: a fresh temporary directory, removed at the end)
#
# Each environment gets only autograd and NumPy from the package registry (pip, the usual index or
# $PIP_INDEX_URL / $PIP_FIND_LINKS); every other dependency (scipy, scikit-learn, threadpoolctl, ...) comes from
# the Python running the script, through a .pth file placed after the environment's own packages, so that
# building an environment takes seconds. Override the versions with AUTOGRAD_VERSIONS and NUMPY_VERSIONS
# (space-separated pip specifiers) and the tests with FLOOR_TESTS. Exit status: 0 when every cell passes.
set -u
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
AUTOGRAD_VERSIONS="${AUTOGRAD_VERSIONS:-==1.7.0 ==1.8.0 ==1.9.*}"
NUMPY_VERSIONS="${NUMPY_VERSIONS:-==1.26.* >=2,<3}"
FLOOR_TESTS="${FLOOR_TESTS:-tests/test_autograd_internals.py tests/test_backend.py tests/test_ops.py tests/test_layers.py
  tests/test_fused.py tests/test_fast_step.py tests/test_models.py tests/test_train.py tests/test_threads.py
  tests/test_jacobians.py tests/test_jacobian_passes.py tests/test_gc.py tests/test_collapse.py}"
WORK="${1:-}"
if [ -z "$WORK" ]; then WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT; else mkdir -p "$WORK"; fi
BASE_SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
failed=0
results=()
for ag in $AUTOGRAD_VERSIONS; do
  for np in $NUMPY_VERSIONS; do
    env_dir="$WORK/venv_autograd${ag//[^0-9a-z]/_}_numpy${np//[^0-9a-z]/_}"
    log="$env_dir.log"
    cell="autograd$ag numpy$np"
    if ! { "$PYTHON" -m venv "$env_dir" &&
           "$env_dir/bin/python" -m pip install -q --no-deps "autograd$ag" "numpy$np" &&
           site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" &&
           echo "$BASE_SITE" > "$site/zz_base_packages.pth"; } >"$log" 2>&1; then
      results+=("$cell: INSTALL FAILED (see $log)"); failed=1; continue
    fi
    versions="$("$env_dir/bin/python" -c 'import autograd, numpy; from importlib.metadata import version; print("autograd", version("autograd"), "numpy", numpy.__version__)')"
    # shellcheck disable=SC2086
    if (cd "$HERE" && PYTHONPATH="$HERE" "$env_dir/bin/python" -m pytest -q -x -p no:cacheprovider $FLOOR_TESTS) >>"$log" 2>&1; then
      results+=("$versions: pass ($(tail -n 1 "$log" | sed 's/=//g; s/^ *//; s/ *$//'))")
    else
      results+=("$versions: FAIL ($(grep -m1 -E '^(FAILED|ERROR)' "$log" || tail -n 1 "$log"))"); failed=1
      [ -n "${1:-}" ] || cp "$log" "$HERE/floors_$(basename "$env_dir").log"
    fi
  done
done
printf '%s\n' "${results[@]}"
exit $failed
