"""figure_flatness: Figure 1's runs and the convnet appendix's exactly (reproduce trains nothing for it), its claims
from synthetic runs, and the tiny figure end to end (slow: it trains Figure 1's 14 tiny runs and the appendix's 14
when nothing is cached)."""
import json

import numpy as np
import pytest

from minigcnc import figure_flatness as F
from minigcnc.experiments import claims as C
from minigcnc.experiments.config import SCALES
from minigcnc.registry import figure_configs


@pytest.mark.parametrize("scale", SCALES)
def test_the_runs_are_figure1s_and_the_convnet_appendixs_and_record_the_hessian_trace(scale):
    appendix = figure_configs("figure_mnist", scale) if scale != "paper" else []  # (no trace on VGG-11's GPU runs)
    assert figure_configs("figure_flatness", scale) == figure_configs("figure1", scale) + appendix
    assert all("flatness" in c.extras for c in F.configs(scale))
    assert (F.appendix_setup(scale) is None) == (scale == "paper")


def _hist(grid, trace, gc, seeds=3):
    """Synthetic histories {field: [[history per value] per seed]} with final tr H = trace(field, i, s)."""
    out = {}
    for field, values in grid.items():
        out[field] = [[{"status": "finished", "key": f"{field}{v}{s}" if i else f"base{s}",
                        "config": {"seed": s, "field": field if i else "", "value": v if i else 0},
                        "evals": [{"step": 0, "hessian_trace": trace(field, i, s), "gc": gc(field, i, s),
                                   "nc_train": gc(field, i, s)}]}
                       for i, v in enumerate(values)] for s in range(seeds)]
    return out


def test_the_claims_follow_the_data_both_ways():
    grid = {"lr": (0.1, 0.2, 0.3, 0.4, 0.5), "batch_size": (512, 256, 128, 64, 32), "l2": (0.0, 1e-3, 1e-2)}
    noise = np.random.default_rng(0).standard_normal(1000) * 1e-3
    flatter = lambda f, i, s: 10.0 - i + noise[i + 7 * s + 50 * len(f)]  # noqa: E731 - flatter along each sweep
    claims = C.judge(F.flatness_claims(grid, _hist(grid, flatter, flatter, seeds=5)))
    by = {c.statement: c for c in claims}
    assert by["a larger learning rate ends flatter (lower final Hessian trace)"].verdict == "holds"
    assert by["a smaller batch ends flatter (lower final Hessian trace)"].verdict == "holds"
    # the L2 sweep, and each seed alone beside the two counted sweep claims
    assert [c.kind for c in claims].count("description") == 3
    assert by["a larger learning rate ends flatter (lower final Hessian trace) (each seed alone)"].kind == "description"
    sharper = lambda f, i, s: 1.0 + i + noise[i + 7 * s + 50 * len(f)]  # noqa: E731
    claims = C.judge(F.flatness_claims(grid, _hist(grid, sharper, flatter, seeds=5)))
    assert {c.verdict for c in claims if "ends flatter" in c.statement and c.kind == "claim"} == {"fails"}
    # the convnet appendix's claims: the same functions, their statements prefixed
    appendix = F.flatness_claims(grid, _hist(grid, flatter, flatter, seeds=5), prefix="convnet appendix: ")
    assert [c.statement for c in appendix] == ["convnet appendix: " + c.statement for c in claims]
    assert {c.verdict for c in C.judge(appendix) if "ends flatter" in c.statement and c.kind == "claim"} == {"holds"}


@pytest.mark.slow
def test_the_tiny_figure_writes_its_outputs(tmp_path):
    F.main(["--scale", "tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--jobs", "1", "--quiet"])
    doc = json.loads((tmp_path / "figure_flatness_tiny.json").read_text())
    assert (tmp_path / "figure_flatness_across_configs_tiny.png").exists()
    # 3 values per sweep at tiny scale cannot reach 0.05 over their means: the sweep claims are descriptions, and
    # each seed alone is shown beside them
    assert sum(c["kind"] == "claim" for c in doc["claims"]) == 8 and doc["seconds_flatness_per_eval"] > 0
    assert sum(c["statement"].startswith("convnet appendix: ") for c in doc["claims"]) == 9  # 4 claims, 5 descriptions
    assert (tmp_path / "figure_flatness_appendix_across_configs_tiny.png").exists()
    assert doc["appendix"]["base"]["model"] == "convnet" and doc["appendix"]["seconds_flatness_per_eval"] > 0
