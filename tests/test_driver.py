"""experiments/driver.py: a sweep figure over a field whose values are not numbers (here the activation)."""
import json

from minigcnc.experiments.config import scale_base
from minigcnc.experiments.driver import sweep_figure, sweep_positions


def test_sweep_positions_are_the_values_or_their_order():
    assert sweep_positions([0.1, 0.2]) == [0.1, 0.2]
    assert sweep_positions(["relu", "tanh"]) == [0.0, 1.0]
    assert sweep_positions([(64,), (128,)]) == [0.0, 1.0]


def test_a_sweep_figure_over_the_activation_runs_draws_and_judges(tmp_path):
    base = scale_base("tiny", hidden=(16, 8), steps=40, eval_every=20, eval_per_class=5)

    def setup(args):
        return base, {"activation": ("relu", "tanh")}, list(range(args.seeds or 2))

    out = sweep_figure(["--scale", "tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--jobs", "1",
                        "--quiet"], "my_activation_sweep", "An activation sweep.", setup,
                       directions={"activation": ("activation (relu -> tanh)", -1)})
    doc = json.loads((tmp_path / "my_activation_sweep_tiny.json").read_text())
    assert doc["grid"] == {"activation": ["relu", "tanh"]}
    assert [c["statistic"] for c in doc["claims"]][:2] == ["spearman(activation, gc)", "spearman(activation, nc_train)"]
    assert (tmp_path / "my_activation_sweep_tiny.png").stat().st_size > 10_000
    assert {h["config"]["activation"] for h in out["histories"]} == {"relu", "tanh"}
