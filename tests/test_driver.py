"""experiments/driver.py: a sweep of one's own from the engine's pieces, over a field whose values are not numbers
(here the activation), and the runs a figure's ``--help`` ends with."""
import json
import time

from minigcnc.experiments.cli import figure_parser, parse, run_sweep, write_figure
from minigcnc.experiments.config import scale_base
from minigcnc.experiments.driver import (claims_of_sweeps, draw_sweeps, runs_epilog, summarize_sweeps,
                                         sweep_positions)
from minigcnc.experiments.grid import by_sweep, flat, sweep_configs


def test_sweep_positions_are_the_values_or_their_order():
    assert sweep_positions([0.1, 0.2]) == [0.1, 0.2]
    assert sweep_positions(["relu", "tanh"]) == [0.0, 1.0]
    assert sweep_positions([(64,), (128,)]) == [0.0, 1.0]


def test_a_sweep_figure_of_ones_own_over_the_activation_runs_draws_and_judges(tmp_path):
    """The steps every figure script takes, in its order: parse, runs, train, claims, draw, write."""
    name = "my_activation_sweep"
    args = parse(figure_parser(name, "An activation sweep."), ["--scale", "tiny", "--out", str(tmp_path), "--cache",
                                                              str(tmp_path / "cache"), "--jobs", "1", "--quiet"])
    t0 = time.time()
    base = scale_base("tiny", hidden=(16, 8), steps=40, eval_every=20, eval_per_class=5)
    grid = {"activation": ("relu", "tanh")}
    sweeps = sweep_configs(base, grid, [0, 1])
    histories = run_sweep(name, args, flat(sweeps))
    hist = by_sweep(sweeps, histories)
    directions = {"activation": ("activation (relu -> tanh)", -1)}
    claims = claims_of_sweeps(name, grid, hist, directions=directions)
    fig = draw_sweeps(grid, hist, "an activation sweep", directions)
    write_figure(name, args.scale, args.out, fig, {"grid": grid, "runs": summarize_sweeps(grid, hist)}, claims, t0)

    doc = json.loads((tmp_path / "my_activation_sweep_tiny.json").read_text())
    assert doc["grid"] == {"activation": ["relu", "tanh"]}
    assert [c["statistic"] for c in doc["claims"]][:2] == ["spearman(activation, gc)", "spearman(activation, nc_train)"]
    assert doc["claims"][0]["statement"].startswith("higher activation (relu -> tanh) gives lower final GC")
    assert (tmp_path / "my_activation_sweep_tiny.png").stat().st_size > 10_000
    assert {h["config"]["activation"] for h in histories} == {"relu", "tanh"}
    assert [r["seed"] for r in doc["runs"]["activation"]] == [0, 0, 1, 1]


def test_the_help_ends_with_the_runs_of_every_scale_printed_from_the_code():
    text = runs_epilog(lambda scale: (scale_base(scale), {"lr": (0.1, 2.5e-4), "hidden": [(64,), (32, 16)]}, [0, 1]))
    lines = text.splitlines()
    assert lines[0].startswith("runs at each scale (--scale), from the code")
    for scale in ("tiny", "laptop", "paper"):
        assert any(line.startswith(f"  {scale} ") for line in lines), scale
    assert "MLP (hidden 256-256-64) on mnist5k, float32, lr 0.05, batch 128, L2 0, 2,000 steps" in text
    assert "sweeps: lr 0.1 0.00025; hidden 64 32-16" in text and "2 seeds" in text
    one_run = runs_epilog(lambda scale: (scale_base(scale), {}, [0]))
    assert "sweeps" not in one_run and "1 seed" in one_run and "seeds" not in one_run
