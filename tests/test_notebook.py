"""The tutorial notebook runs top to bottom and its numbers make sense.

``notebooks/tutorial.ipynb`` is executed with nbclient in a fresh ``python3`` kernel, in the notebooks folder,
one thread per BLAS library; its last cell prints one JSON line of key numbers, which are checked here. The
committed notebook must carry no outputs, and every ``docs/theory.md#anchor`` it cites must exist.
"""
import json
import math
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="ipykernel (the python3 kernel) is not installed: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
THEORY = ROOT / "docs" / "theory.md"
CELL_TIMEOUT = 120  # seconds per cell
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(executed notebook, seconds it took): run once for every test of this file."""
    mp = pytest.MonkeyPatch()
    for name in THREAD_VARIABLES:  # the kernel inherits them: one core, as the notebook promises
        mp.setenv(name, "1")
    mp.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so the figure becomes an output
    mp.setenv("MINIGCNC_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        mp.undo()
    print(f"\nnotebooks/tutorial.ipynb executed in {seconds:.1f} s")
    return nb, seconds


def stream_text(cell):
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


@pytest.fixture(scope="module")
def summary(executed):
    """The dict printed as a JSON line by the notebook's last cell."""
    nb, _ = executed
    lines = [line for line in stream_text(nb.cells[-1]).splitlines() if line.startswith("{")]
    assert lines, "the notebook's last cell printed no JSON line of key numbers"
    return json.loads(lines[-1])


def test_the_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} of {NOTEBOOK.name} carry outputs; clear them before committing"


def test_every_cited_theory_anchor_exists():
    text = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    cited = set(re.findall(r"docs/theory\.md#([\w\-]+)", text))
    anchors = {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", THEORY.read_text(), flags=re.M)}
    assert cited, "the notebook cites no section of docs/theory.md"
    assert cited <= anchors, f"anchors cited by the notebook but missing in docs/theory.md: {sorted(cited - anchors)}"


def test_the_notebook_runs_and_draws_its_figure(executed):
    nb, seconds = executed
    errors = [out for c in nb.cells if c.cell_type == "code" for out in c.outputs if out.output_type == "error"]
    assert not errors
    images = [out for c in nb.cells if c.cell_type == "code" for out in c.outputs
              if "image/png" in out.get("data", {})]
    assert len(images) == 1, f"expected the one training plot, found {len(images)} images"
    print(f"notebook execution time: {seconds:.1f} s (target: well under 60 s on one core)")


def test_geometric_complexity_and_its_estimates(summary):
    gc = summary["gc_exact"]
    assert math.isfinite(gc) and gc > 0
    assert abs(summary["gc_subset"] / gc - 1) < 0.5  # one unbiased draw
    assert abs(summary["gc_hutchinson"] / gc - 1) < 0.5
    assert abs(summary["gc_hutchinson_mean20"] / gc - 1) < 0.05  # 20 draws average out
    assert len(summary["class_gc"]) == 10 and all(v > 0 for v in summary["class_gc"])
    assert summary["convnet_gc"] > 0


def test_collapse_measures(summary):
    for key in ("nc", "nc1", "gcol", "convnet_nc", "implied_rho"):
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert summary["implied_rho"] < summary["rho_max"]  # the Poincare step leaves slack (theory.md)


def test_ncc_error_and_the_bounds(summary):
    err = summary["ncc_test_error"]
    assert 0.0 <= err <= 1.0 and 0.0 <= summary["convnet_ncc_error"] <= 1.0
    assert err < 0.5, "300 steps should teach the MLP something"
    # by construction on the same (balanced) test sample: err <= directional <= Markov
    assert err <= summary["directional_bound"] <= summary["markov_bound"]
    # a measured diagnostic, not a theorem (proxy rho): about 100x above Markov at this scale
    assert summary["gc_bound"] >= summary["markov_bound"]
    assert summary["rho_max"] > 0


def test_the_training_history(summary):
    history = summary["history"]
    assert not summary["diverged"] and summary["steps"] == 300
    assert [h["step"] for h in history] == list(range(0, 301, 50))
    assert all(math.isfinite(h[k]) for h in history for k in ("gc", "gcol", "nc", "ncc_test_error"))
    assert history[-1]["nc"] < history[0]["nc"]  # training collapses the classes
    assert history[-1]["ncc_test_error"] < history[0]["ncc_test_error"]
