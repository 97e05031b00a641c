"""The tutorial notebook runs top to bottom, its numbers make sense, and its committed outputs are current.

``notebooks/tutorial.ipynb`` is committed *with* its outputs, so that a student browsing the repository sees its
numbers and pictures. This file executes the committed notebook afresh, exactly as ``scripts/run_notebook.py``
does (nbclient, a fresh ``python3`` kernel, in the notebooks folder, one thread per BLAS library), then

- reads the dict ``summary`` that the notebook's last cell builds: a cell appended to the test's own copy prints
  it as JSON, so the student never sees a blob, and its numbers are checked here;
- compares the committed outputs with the fresh ones, cell by cell: the same text with every number equal to
  about three significant digits (one unit in the last printed digit is allowed), and the same number of
  pictures. Stale outputs fail: rerun ``python scripts/run_notebook.py`` and commit the notebook.

Every ``docs/theory.md#anchor`` the notebook cites must exist.
"""
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: pip install -e '.[test]'")
pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="ipykernel (the python3 kernel) is not installed: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
THEORY = ROOT / "docs" / "theory.md"
RUNNER = ROOT / "scripts" / "run_notebook.py"
RERUN = "rerun `python scripts/run_notebook.py` and commit notebooks/tutorial.ipynb"
MAX_BYTES = 300_000
N_PICTURES = 3  # the untrained embedding, the embedding before/after training, the training curves
READ_SUMMARY = 'import json\nprint("SUMMARY " + json.dumps(summary, sort_keys=True))'
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
REL_TOL = 5e-3


def runner():
    """scripts/run_notebook.py as a module: the test executes the notebook the way its outputs were made."""
    spec = importlib.util.spec_from_file_location("run_notebook", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def committed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def stdout(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.output_type == "stream" and o.get("name") == "stdout")


def pictures(cell):
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(fresh notebook without the appended cell, summary dict, seconds): run once for every test of this file."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(nb):
        cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(READ_SUMMARY))
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIGCNC_CACHE", str(tmp_path_factory.mktemp("cache")))  # nothing of the user's is touched
    try:
        seconds = runner().execute(nb)  # one BLAS thread, inline figures: as the committed outputs were made
    finally:
        mp.undo()
    print(f"\nnotebooks/tutorial.ipynb executed in {seconds:.1f} s")
    lines = [line for line in stdout(nb.cells.pop()).splitlines() if line.startswith("SUMMARY ")]
    assert lines, "the notebook's last cell built no `summary` dict"
    return nb, json.loads(lines[-1][len("SUMMARY "):]), seconds


@pytest.fixture(scope="module")
def summary(executed):
    return executed[1]


# ---- the committed file ------------------------------------------------------------------------------------

def test_the_committed_notebook_was_run_top_to_bottom_and_is_small():
    nb = committed()
    cells = code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), \
        f"the committed outputs are not one clean top-to-bottom run (execution counts {counts}): {RERUN}"
    bad = [i for i, c in enumerate(cells) for o in c.outputs
           if o.output_type == "error" or (o.output_type == "stream" and o.get("name") == "stderr")]
    assert not bad, f"code cells {bad} carry errors or warnings in the committed outputs"
    assert sum(pictures(c) for c in cells) == N_PICTURES, f"expected {N_PICTURES} pictures: {RERUN}"
    size = NOTEBOOK.stat().st_size
    assert size < MAX_BYTES, f"{NOTEBOOK.name} is {size} bytes; keep figures small (dpi 80, small figsize)"


def test_the_student_sees_no_blob():
    cells = code_cells(committed())
    assert not cells[-1].outputs, "the last cell (the summary the test reads) must print nothing"
    for i, cell in enumerate(cells):
        text = stdout(cell)
        assert len(text) < 1000, f"code cell {i} prints {len(text)} characters"
        assert not any(line.lstrip().startswith("{") for line in text.splitlines()), f"code cell {i} prints a dict"


def test_every_cited_theory_anchor_exists():
    text = "\n".join(c.source for c in committed().cells)
    cited = set(re.findall(r"docs/theory\.md#([\w\-]+)", text))
    anchors = {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", THEORY.read_text(), flags=re.M)}
    assert cited, "the notebook cites no section of docs/theory.md"
    assert cited <= anchors, f"anchors cited by the notebook but missing in docs/theory.md: {sorted(cited - anchors)}"


# ---- committed outputs against a fresh run -----------------------------------------------------------------

def split_numbers(text):
    """(the text with every number replaced by '#' and blanks collapsed, [(value, unit of its last digit)])."""
    numbers = []
    for m in NUMBER.finditer(text):
        token = m.group()
        mantissa, _, exponent = token.lower().partition("e")
        decimals = len(mantissa.partition(".")[2])
        numbers.append((float(token), 10.0 ** (int(exponent or 0) - decimals)))
    skeleton = " ".join(NUMBER.sub("#", text).split())
    return skeleton, numbers


def same_number(a, b):
    (x, unit_x), (y, unit_y) = a, b
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y)) + 1.01 * max(unit_x, unit_y)


def test_split_numbers_and_the_tolerance():
    skeleton, numbers = split_numbers("GC  60.10 (-3.3%)  mlp784-256 1.2e-05 [100 100]")
    assert skeleton == "GC # (#%) mlp784-# # [# #]"
    assert [v for v, _ in numbers] == [60.10, -3.3, 256, 1.2e-05, 100, 100]
    assert numbers[0][1] == pytest.approx(0.01) and numbers[3][1] == pytest.approx(1e-6)
    assert same_number((0.132, 0.001), (0.133, 0.001))     # one unit in the last digit
    assert same_number((1040.6, 0.1), (1042.0, 0.1))       # 0.13%
    assert not same_number((0.132, 0.001), (0.135, 0.001))
    assert not same_number((119.28, 0.01), (121.0, 0.01))


def test_the_committed_outputs_match_a_fresh_run(executed):
    fresh = code_cells(executed[0])
    stored = code_cells(committed())
    assert [c.source for c in stored] == [c.source for c in fresh]
    for i, (old, new) in enumerate(zip(stored, fresh)):
        where = f"code cell {i} (starts {old.source.splitlines()[0][:50]!r})" if old.source else f"code cell {i}"
        assert pictures(old) == pictures(new), f"{where}: {pictures(old)} committed pictures, {pictures(new)} now; {RERUN}"
        old_text, old_numbers = split_numbers(stdout(old))
        new_text, new_numbers = split_numbers(stdout(new))
        assert old_text == new_text, f"{where} now prints other text:\n{stdout(new)}\n{RERUN}"
        for a, b in zip(old_numbers, new_numbers):
            assert same_number(a, b), f"{where}: committed {a[0]}, fresh run {b[0]}; {RERUN}"


def test_the_notebook_runs_and_draws_its_figures(executed):
    nb, _, seconds = executed
    cells = code_cells(nb)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert sum(pictures(c) for c in cells) == N_PICTURES
    print(f"notebook execution time: {seconds:.1f} s (target: well under 60 s on one core)")


# ---- the numbers -------------------------------------------------------------------------------------------

def test_the_definitions_agree_with_the_package(summary):
    # gc.reference_gc (autograd.jacobian) squares and sums the float32 Jacobians in float32; the fast route sums in float64
    assert summary["gc_reference"] == pytest.approx(summary["gc_untrained"], rel=1e-6)
    assert summary["nc_reference"] == pytest.approx(summary["nc_untrained"], rel=1e-8)  # collapse.reference_cdnv


def test_geometric_complexity_and_its_estimates(summary):
    gc = summary["gc_untrained"]
    assert math.isfinite(gc) and gc > 0
    assert abs(summary["gc_subset"] / gc - 1) < 0.5  # one unbiased draw
    assert abs(summary["gc_hutchinson"] / gc - 1) < 0.5
    assert abs(summary["gc_hutchinson_mean20"] / gc - 1) < 0.05  # 20 draws average out
    assert len(summary["class_gc"]) == 10 and all(v > 0 for v in summary["class_gc"])
    assert summary["convnet_gc"] > 0


def test_training_collapses_the_classes(summary):
    assert not summary["diverged"] and summary["steps"] == 300
    assert summary["test_accuracy"] > 0.5
    assert summary["nc"] < summary["nc_untrained"]  # what the before/after picture shows
    assert summary["gc"] > summary["gc_untrained"]  # the notebook says GC grows within this run
    for key in ("nc", "nc1", "gcol", "convnet_nc", "implied_rho"):
        assert math.isfinite(summary[key]) and summary[key] > 0, key


def test_proposition_41_and_the_proxy(summary):
    assert summary["nc"] <= summary["rho_max"] * summary["gcol"]
    assert summary["implied_rho"] == pytest.approx(summary["nc"] / summary["gcol"])
    assert summary["implied_rho"] < summary["rho_max"]  # the Poincare step leaves slack (theory.md)


def test_ncc_error_and_the_bounds(summary):
    err = summary["ncc_test_error"]
    assert 0.0 <= err <= 1.0 and 0.0 <= summary["convnet_ncc_error"] <= 1.0
    assert err < 0.5, "300 steps should teach the MLP something"
    # by construction on the same (balanced) test sample: err <= directional <= Markov
    assert err <= summary["directional_bound"] <= summary["markov_bound"]
    # a measured diagnostic, not a theorem (proxy rho): far above Markov at this scale, as the notebook says
    assert summary["gc_bound"] >= summary["markov_bound"]


def test_the_training_history(summary):
    history = summary["history"]
    assert [h["step"] for h in history] == list(range(0, 301, 50))
    assert all(math.isfinite(h[k]) for h in history for k in ("gc", "gcol", "nc", "ncc_test_error"))
    assert history[-1]["nc"] < history[0]["nc"]  # training collapses the classes
    assert history[-1]["gcol"] < history[0]["gcol"]
    assert history[-1]["ncc_test_error"] < history[0]["ncc_test_error"]
    assert history[-1]["gc"] == pytest.approx(summary["gc"]) and history[0]["gc"] == pytest.approx(summary["gc_untrained"])


def test_the_transfer_section(summary):
    """Section 15 (issue 31 item 6): two runs on digits 0-4, measured on digits 5-9; what its text says."""
    t = summary["transfer"]
    assert set(t) == {"untrained", "lr=0.02", "lr=0.2"}
    for name in ("lr=0.02", "lr=0.2"):
        assert not t[name]["diverged"] and t[name]["steps"] == 300
        assert t[name]["target_nc"] < t["untrained"]["target_nc"]  # training on 0-4 collapses 5-9 too
        assert t[name]["fewshot5"] > t["untrained"]["fewshot5"] + 2 * t[name]["ci95"]  # and helps 5-shot
    assert t["lr=0.2"]["gc"] < t["lr=0.02"]["gc"] and t["lr=0.2"]["target_nc"] < t["lr=0.02"]["target_nc"]
    gap = abs(t["lr=0.2"]["fewshot5"] - t["lr=0.02"]["fewshot5"])
    assert gap < max(t["lr=0.2"]["ci95"], t["lr=0.02"]["ci95"])  # "within each other's intervals"
    assert all(0.2 < row["fewshot5"] <= 1.0 for row in t.values())  # above chance (5-way)
