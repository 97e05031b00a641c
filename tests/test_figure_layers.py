"""figure_layers: its runs, its two new tests (false-"holds" rate on noise and power measured here), and the tiny
figure end to end."""
import json

import numpy as np
import pytest

from minigcnc import figure_layers as F


def test_the_runs_are_a_deep_mlp_on_five_digits_with_the_layers_extra_and_enough_seeds():
    cfgs = F.configs("laptop")
    assert len(cfgs) == 8 and [c.seed for c in cfgs] == list(range(8))
    c = cfgs[0]
    assert c.hidden == (100,) * 8 and c.classes == (0, 1, 2, 3, 4) and c.target_classes == (5, 6, 7, 8, 9)
    assert c.extras == ("layers",) and c.steps == 6000 and c.dataset == "mnist5k"
    assert len(F.configs("tiny", seeds=2)) == 2
    with pytest.raises(ValueError, match="scale must be one of"):
        F.base_run("huge")


def _rates(make, draws=300, **kw):
    """Fractions of 'holds' and 'fails' over ``draws`` noise draws of a claim built by ``make(rng)``."""
    verdicts = [make(np.random.default_rng(i)).verdict for i in range(draws)]
    return verdicts.count("holds") / draws, verdicts.count("fails") / draws


def test_the_depth_rate_claim_holds_on_noise_at_most_at_alpha_and_finds_a_geometric_law():
    """Noise (log D_l i.i.d. over 8 layers, 8 seeds): 'holds' in 2.0% of 300 draws and 'fails' in 1.3% (measured;
    the permutation test is valid under exchangeable layers, and the verdict asks the expected sign too, so about
    alpha/2 each). A geometric law with noise (log D_l = -0.2 l + N(0, 0.3)): 'holds' in every draw."""
    noise = lambda rng: F.depth_rate_claim("x", rng.standard_normal((8, 8)), -1, "log D", n_perm=199)  # noqa: E731
    holds, fails = _rates(noise)
    assert holds <= 0.05 and fails <= 0.05
    law = lambda rng: F.depth_rate_claim("x", -0.2 * np.arange(8) + 0.3 * rng.standard_normal((8, 8)), -1,  # noqa
                                         "log D", n_perm=199)
    assert _rates(law, draws=50)[0] == 1.0
    opposite = F.depth_rate_claim("x", 0.2 * np.arange(8)[None] + 0.01 * np.random.default_rng(0).standard_normal(
        (8, 8)), -1, "log D", n_perm=199)
    assert opposite.verdict == "fails"
    desc = F.depth_rate_claim("x", np.random.default_rng(0).standard_normal((3, 8)), 0, "log GC", kind="description")
    assert desc.kind == "description" and desc.verdict == "n/a"


def test_the_paired_claim_is_an_exact_sign_flip_test_over_seeds():
    """Noise (8 paired differences N(0, 1)): 'holds' in 2.0% of 300 draws, 'fails' in 2.0% (measured; exact
    sign-flip, expected sign required); a shift of 2 sd: 'holds' in every draw; 4 seeds cannot reach alpha (said in detail)."""
    p, p_min = F.sign_flip_p([1.0, 2.0, 3.0])
    assert p == pytest.approx(2 / 8) and p_min == pytest.approx(2 / 8)
    noise = lambda rng: F.paired_claim("x", list(rng.standard_normal(8)), [0.0] * 8, -1, "r")  # noqa: E731
    holds, fails = _rates(noise)
    assert holds <= 0.05 and fails <= 0.05
    shift = lambda rng: F.paired_claim("x", list(rng.standard_normal(8) - 2.0), [0.0] * 8, -1, "r")  # noqa: E731
    assert _rates(shift, draws=50)[0] == 1.0
    assert "underpowered" in F.paired_claim("x", [-1.0, -2.0, -3.0, -4.0], [0.0] * 4, -1, "r").detail


def test_the_tiny_figure_writes_its_png_json_and_claims(tmp_path):
    res = F.main(["--scale", "tiny", "--seeds", "2", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"),
                  "--jobs", "1", "--quiet"])
    doc = json.loads((tmp_path / "figure_layers_tiny.json").read_text())
    assert (tmp_path / "figure_layers_tiny.png").stat().st_size > 10_000
    stats = [c["statistic"] for c in doc["claims"]]
    assert stats.count("pearson(l, log D_l)") == 2 and "spearman(layer, fewshot5)" in stats
    assert len(doc["D_l"]["trained"]) == 2 and len(doc["D_l"]["trained"][0]) == 7  # the pixels and 6 layers
    h = res["histories"][0]
    assert h["evals"][0]["step"] == 0 and h["evals"][-1]["step"] == 300
    assert doc["D_l"]["trained"][0][-1] == pytest.approx(5 * h["evals"][-1]["layer_nc1"][-1])
