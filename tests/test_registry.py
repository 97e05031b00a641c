"""minigcnc/registry.py: every figure in one table, each with ``configs(scale, *, seeds=None, backend=None,
data_root=None, **options)`` and a short ``--help`` that ends with its runs, printed from the code."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigcnc.experiments.config import SCALES, RunConfig
from minigcnc.registry import FIGURES, figure_configs, figure_module, options_of


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_registered_figure_gives_its_runs_with_the_common_signature(name):
    """configs(scale, *, seeds=None, backend=None, data_root=None, **options): the flat list of RunConfigs."""
    module, extra, _ = FIGURES[name]
    for scale in SCALES:
        cfgs = figure_configs(name, scale)
        assert cfgs and all(isinstance(c, RunConfig) for c in cfgs)
        assert cfgs == figure_module(module).configs(scale, seeds=None, backend=None, data_root=None,
                                                     **options_of(extra))
    one = figure_configs(name, "paper", seeds=1, backend="numpy", data_root="/data")
    assert {(c.seed, c.backend, c.data_root, c.dtype) for c in one} == {(0, "numpy", "/data", "float64")}
    with pytest.raises(TypeError):  # seeds, backend and data root by name only
        figure_module(module).configs("tiny", 1)


def test_a_figures_extra_arguments_are_its_configs_options():
    assert figure_module("figure4_digits") is figure_module("figure4")
    assert options_of(["--split", "digits"]) == {"split": "digits"}
    assert options_of(["--gc-method", "exact"]) == {"gc_method": "exact"}
    assert {c.dataset for c in figure_configs("figure4_digits", "laptop")} == {"mnist5k"}


@pytest.mark.parametrize("module", sorted({m for m, _, _ in FIGURES.values()}))
def test_a_figures_help_is_short_and_ends_with_its_runs_from_the_code(module):
    """--help: the docstring (purpose, commands, what the table tests), the options, then the runs of each scale
    printed from the code. Rationale and history live in docs/figures.md: the figure's own text (the docstring
    and the runs, without the options) stays under 40 lines, the whole help under 80 at 80 columns."""
    text = subprocess.run([sys.executable, "-m", f"minigcnc.{module}", "--help"], capture_output=True, text=True,
                          check=True, env={**os.environ, "COLUMNS": "80"}).stdout
    usage_and_doc, options = text.split("\noptions:\n")
    epilog = options[options.index("runs at each scale (--scale), from the code"):]
    doc = usage_and_doc.split("\n\n", 1)[1]  # (the usage comes first)
    assert doc.strip() == figure_module(module).__doc__.strip()
    assert len(doc.strip().splitlines()) + len(epilog.strip().splitlines()) <= 40, module
    assert len(text.splitlines()) <= 80, module
    base, grid, seeds = figure_module(module).scale_setup("laptop")
    assert f"{base.steps:,} steps" in epilog and f"{len(seeds)} seeds" in epilog
    for field, values in grid.items():
        assert f"{field} {values[0]:g}" in epilog
    assert "docs/figures.md#" + module in doc and "last lines of ``--help``" in doc
    assert f"\n## {module}\n" in (Path(__file__).parents[1] / "docs" / "figures.md").read_text()  # its section
