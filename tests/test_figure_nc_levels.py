"""figure_nc_levels: Figure 4's runs (its default pool only; it trains none of its own), its claims from synthetic
runs both ways, and the tiny figure end to end (slow: it trains Figure 4's tiny runs when nothing is cached)."""
import json

import numpy as np
import pytest

from minigcnc import figure_nc_levels as F
from minigcnc.experiments import claims as C
from minigcnc.registry import figure_configs


def test_the_runs_are_figure4s_on_its_default_target_pool():
    cfgs, all4 = F.configs("laptop"), figure_configs("figure4", "laptop")
    assert set(c.key() for c in cfgs) <= set(c.key() for c in all4)
    assert len({c.target_classes for c in cfgs}) == 1 and len(cfgs) < len(all4)  # the sensitivity pool left out
    assert F.scale_setup("laptop")[2] == [0, 1, 2, 3, 4]


def _histories(n_configs, seeds, gc, level):
    out = []
    for c in range(n_configs):
        for s in range(seeds):
            out.append({"key": f"{c}-{s}", "status": "finished", "config": {"seed": s, "lr": c},
                        "evals": [{"step": 0, "gc": gc(c), **{m: level(m, c, s) for m, _ in F.LEVELS}}]})
    return out


def test_the_level_claims_hold_when_nc_follows_gc_and_fail_when_it_goes_the_other_way():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((8, 3, 3)) * 1e-3
    idx = {m: i for i, (m, _) in enumerate(F.LEVELS)}
    follows = _histories(8, 3, lambda c: 1.0 + c, lambda m, c, s: 1.0 + c + noise[c, s, idx[m]])
    claims, units = F.level_claims(follows)
    C.judge(claims)
    assert len(units) == 8 and [c.verdict for c in claims if c.kind == "claim"] == ["holds"] * 3
    against = _histories(8, 3, lambda c: 1.0 + c, lambda m, c, s: 10.0 - c + noise[c, s, idx[m]])
    claims, _ = F.level_claims(against)
    C.judge(claims)
    assert [c.verdict for c in claims if c.kind == "claim"] == ["fails"] * 3


@pytest.mark.slow
def test_the_tiny_figure_writes_its_outputs(tmp_path):
    F.main(["--scale", "tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--jobs", "1", "--quiet"])
    doc = json.loads((tmp_path / "figure_nc_levels_tiny.json").read_text())
    assert sum(c["kind"] == "claim" for c in doc["claims"]) == 3
