"""Execute notebooks/tutorial.ipynb top to bottom in a fresh kernel and save it with its outputs.

    python scripts/run_notebook.py             # rewrites notebooks/tutorial.ipynb in place
    python scripts/run_notebook.py OUT.ipynb   # or writes the executed copy elsewhere

The notebook is committed with its outputs, so that its numbers and pictures show on GitHub;
``tests/test_notebook.py`` executes it afresh and fails when the committed outputs no longer match. Rerun this
script after changing the notebook or the code it calls. It runs the kernel as the test does: in ``notebooks/``,
one thread per BLAS library (several times faster on a small shared machine), the inline plotting backend,
no per-cell timing metadata (so an unchanged notebook gives an unchanged file). Needs ``pip install -e
".[notebook]"`` (or ``.[test]``).
"""
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CELL_TIMEOUT = 120  # seconds per cell


def execute(nb, cwd=NOTEBOOK.parent):
    """Run ``nb`` (a NotebookNode, changed in place) in a fresh python3 kernel; return the seconds it took.

    The kernel inherits this process's environment, set for the run to one BLAS thread and no ``MPLBACKEND``
    (the kernel's inline backend then turns each figure into a PNG output); the environment is restored after.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES + ("MPLBACKEND",)}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    os.environ.pop("MPLBACKEND", None)
    try:
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": str(cwd)}})
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else NOTEBOOK
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # start clean: no stale output survives a cell that now prints nothing
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    seconds = execute(nb)
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"executed {NOTEBOOK.relative_to(ROOT)} in {seconds:.1f} s; wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
