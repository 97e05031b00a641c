"""experiments/estimate.py: the cost model of a sweep, and the question a figure command asks before training
estimated over an hour (issue 31 item 5): said before anything trains, --yes goes on, no terminal stops."""
import io
import math

import pytest

from minigcnc.experiments import cli, estimate
from minigcnc.experiments.config import scale_base

RATE = 2e10  # a fixed matrix-product rate, so that no test depends on this machine's speed


@pytest.fixture
def fixed_rate(monkeypatch):
    monkeypatch.setattr(estimate, "host_rate", lambda dtype: RATE)


@pytest.fixture
def nothing_trains(monkeypatch):
    """Any attempt to train fails the test; the data check passes (CIFAR need not be on this machine)."""
    import minigcnc.train
    from minigcnc.experiments import sweep

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    monkeypatch.setattr(sweep, "run_many", lambda *a, **k: pytest.fail("the sweep started"))
    monkeypatch.setattr(sweep, "check_feasible", lambda *a, **k: None)


@pytest.fixture
def recorded_sweep(monkeypatch):
    """sweep.run_many records its configs and trains nothing; the data check passes."""
    from minigcnc.experiments import sweep

    seen = []
    monkeypatch.setattr(sweep, "run_many", lambda configs, *a, **k: seen.append(list(configs)) or [])
    monkeypatch.setattr(sweep, "check_feasible", lambda *a, **k: None)
    return seen


class Terminal(io.StringIO):
    """stdin of a terminal, with the user's answer typed in."""

    def isatty(self):
        return True


def args_of(tmp_path, *argv):
    return cli.parse(cli.figure_parser("fig", ""), ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                                                    *argv])


PAPER_ON_NUMPY = scale_base("paper", backend="numpy", dtype="float64")  # VGG-13 on CIFAR-10, 20,000 steps


# ---- the cost model ----------------------------------------------------------------------------------------

def test_forward_macs_count_dense_layers_and_every_position_of_a_convolution():
    mlp = estimate.forward_macs(scale_base("laptop"))  # 784-256-256-64, head 64 x 10
    assert mlp == {"dense": 784 * 256 + 256 * 256 + 256 * 64 + 64 * 10, "conv": 0, "layers": 4, "embed_dim": 64}
    vgg = estimate.forward_macs(PAPER_ON_NUMPY)
    convs, size, c_in = 0, 32, 3  # VGG-13: 3x3 convs, 'same' padding, 2x2 pools
    for v in [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            size //= 2
        else:
            convs, c_in = convs + size * size * v * c_in * 9, v
    assert vgg["conv"] == convs == 228_261_888 and vgg["dense"] == 512 * 512 + 512 * 10
    small = estimate.forward_macs(scale_base("laptop", model="convnet", hidden=(128,), channels=(16, 32)))
    assert small["conv"] == 28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9 and small["dense"] == 7 * 7 * 32 * 128 + 1280


def test_a_step_is_three_passes_of_the_batch_and_evaluations_include_step_0_and_the_end():
    c = scale_base("laptop")
    step, evaluation, evals = estimate.run_macs(c)
    forward = estimate.forward_macs(c)["dense"]
    assert step == 3 * c.batch_size * forward and evals == 2000 // 250 + 1
    assert estimate.run_macs(c.replace(steps=2010))[2] == 10  # the last, off the grid, evaluation too
    assert evaluation > 10 * forward * 5000  # the exact GC of the evaluation subsets outweighs the embeddings
    with_extras = estimate.run_macs(c.replace(extras=("gc_estimators",)))[1]
    assert with_extras > evaluation
    hutchinson, exact = (estimate.run_macs(c.replace(gc_reg=1e-5, gc_reg_method=m))[0] for m in ("hutchinson", "exact"))
    assert step < hutchinson < exact  # a GC penalty costs more per step, the exact one most


def test_run_seconds_grows_with_the_work_and_a_sweep_divides_by_its_jobs(fixed_rate):
    c = scale_base("laptop")
    one = estimate.run_seconds(c)
    assert 1.8 * one < estimate.run_seconds(c.replace(steps=4000)) < 2 * one  # twice the steps, 17 evaluations not 9
    assert estimate.run_seconds(c, rate=2 * RATE) < one
    runs = [c.replace(seed=s) for s in range(4)]
    big = 1 + estimate.PARALLEL_BLAS  # the laptop MLP's step is above threads.SMALL_WORK: one job gets both cores
    assert estimate.sweep_seconds(runs, jobs=1, cores=2) == pytest.approx(4 * one / big)
    assert estimate.sweep_seconds(runs, jobs=2, cores=2) == pytest.approx(estimate.PARALLEL_SLOWDOWN * 4 * one / 2)
    assert estimate.sweep_seconds(runs, jobs=8, cores=2) == estimate.sweep_seconds(runs, jobs=2, cores=2)  # cores cap
    gpu = [r.replace(backend="cupy", dtype="float32") for r in runs]  # one GPU: the runs one after another
    assert estimate.sweep_seconds(gpu, jobs=2) == pytest.approx(4 * estimate.run_seconds(gpu[0]))
    assert estimate.sweep_seconds([]) == 0.0


def test_the_paper_scale_on_numpy_is_days_and_the_scales_below_are_not_an_hour(fixed_rate):
    assert estimate.run_seconds(PAPER_ON_NUMPY) > 2 * 86400
    assert estimate.run_seconds(scale_base("laptop")) < 600
    assert estimate.run_seconds(scale_base("tiny")) < 10


def test_durations_are_said_without_false_digits():
    assert estimate.duration(20) == "about 20 seconds" and estimate.duration(0.01) == "about 1 seconds"
    assert estimate.duration(40 * 60) == "about 40 minutes"
    assert estimate.duration(3.46 * 3600) == "about 3.5 hours" and estimate.duration(20 * 3600) == "about 20 hours"
    assert estimate.duration(12.2 * 86400) == "about 12 days"


# ---- the question, before anything trains -------------------------------------------------------------------

def test_a_paper_scale_run_on_numpy_is_flagged_before_any_training_and_without_a_terminal_stops(
        tmp_path, monkeypatch, capsys, fixed_rate, nothing_trains):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a pipe: not a terminal
    args = args_of(tmp_path, "--scale", "paper", "--backend", "numpy", "--jobs", "1")
    with pytest.raises(SystemExit) as stop:
        cli.run_sweep("fig", args, [PAPER_ON_NUMPY])
    message = str(stop.value)
    assert message.startswith("fig: not started: about ") and " days of training and no terminal to ask" in message
    assert message.endswith("give --yes to go on without asking") and "\n" not in message
    err = capsys.readouterr().err
    assert "fig: estimated training time about " in err and " days for 1 run on numpy" in err
    assert "a factor of a few" in err  # said to be an estimate
    assert "--backend cupy" in err and "--scale laptop" in err  # and how to go faster


def test_a_tiny_run_is_not_flagged_and_nothing_is_timed_for_it(tmp_path, monkeypatch, capsys, recorded_sweep):
    monkeypatch.setattr(estimate, "host_rate", lambda dtype: pytest.fail("a short sweep was timed"))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    configs = [scale_base("tiny", seed=s) for s in range(3)]
    assert cli.run_sweep("fig", args_of(tmp_path, "--scale", "tiny"), configs) == []
    assert recorded_sweep == [configs]
    assert "estimated" not in capsys.readouterr().err


def test_yes_goes_on_without_asking(tmp_path, monkeypatch, capsys, fixed_rate, recorded_sweep):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    cli.run_sweep("fig", args_of(tmp_path, "--scale", "paper", "--backend", "numpy", "--yes"), [PAPER_ON_NUMPY])
    assert recorded_sweep == [[PAPER_ON_NUMPY]]
    err = capsys.readouterr().err
    assert "estimated training time" in err and "fig: going on (--yes)" in err and "go on?" not in err


@pytest.mark.parametrize("answer, goes_on", [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False),
                                             ("", False)])
def test_in_a_terminal_it_asks_once(tmp_path, monkeypatch, capsys, fixed_rate, recorded_sweep, answer, goes_on):
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    args = args_of(tmp_path, "--scale", "paper", "--backend", "numpy")
    if goes_on:
        cli.run_sweep("fig", args, [PAPER_ON_NUMPY])
        assert recorded_sweep == [[PAPER_ON_NUMPY]]
    else:
        with pytest.raises(SystemExit, match=r"^fig: not started, nothing trained \(--yes goes on without asking\)$"):
            cli.run_sweep("fig", args, [PAPER_ON_NUMPY])
        assert recorded_sweep == []
    assert capsys.readouterr().err.count("fig: go on? [y/N] ") == 1


def test_a_missing_dataset_is_said_before_the_question(tmp_path, monkeypatch, capsys, fixed_rate):
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    config = PAPER_ON_NUMPY.replace(data_root=str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match=r"^fig: a dataset file is missing \(give its folder with --data-root DIR\)"):
        cli.run_sweep("fig", args_of(tmp_path, "--scale", "paper", "--backend", "numpy"), [config])
    assert "go on?" not in capsys.readouterr().err


def test_cached_runs_cost_nothing_and_a_remote_cluster_gets_no_estimate(tmp_path, fixed_rate):
    args = args_of(tmp_path, "--scale", "paper", "--backend", "numpy")
    assert estimate.confirm("fig", args, [PAPER_ON_NUMPY], []) is None  # everything from the cache
    remote = args_of(tmp_path, "--scale", "paper", "--dask", "tcp://127.0.0.1:8786")
    assert estimate.confirm("fig", remote, [PAPER_ON_NUMPY], [PAPER_ON_NUMPY]) is None  # its speed is unknown here
    short = args_of(tmp_path, "--scale", "laptop")
    seconds = estimate.confirm("fig", short, [scale_base("laptop")] * 2, [scale_base("laptop", extras=("layers",))])
    assert seconds is None or seconds < estimate.LIMIT_S


def test_the_faster_ways_fit_the_command(tmp_path):
    paper = args_of(tmp_path, "--scale", "paper", "--backend", "numpy", "--jobs", "1")
    text = estimate.faster(paper, [PAPER_ON_NUMPY.replace(seed=s) for s in range(3)])
    assert "--backend cupy" in text and "--scale laptop" in text and "fewer --seeds" in text
    gpu = estimate.faster(args_of(tmp_path, "--scale", "paper"), [scale_base("paper")])
    assert "--backend cupy" not in gpu and gpu == "--scale laptop (minutes on 2 cores)"


def test_yes_is_an_option_of_every_figure_and_reproduce_hands_it_on(tmp_path):
    from minigcnc import reproduce

    assert args_of(tmp_path, "--yes").yes and not args_of(tmp_path).yes
    args = reproduce.parser().parse_args(["--out", str(tmp_path), "--yes"])
    assert reproduce.figure_argv(args, [])[-1] == "--yes"
    assert "--yes" not in reproduce.figure_argv(reproduce.parser().parse_args(["--out", str(tmp_path)]), [])
    assert math.isfinite(estimate.LIMIT_S) and estimate.LIMIT_S == 3600


def test_the_extras_recorded_at_the_ends_are_the_measure_modules():
    from minigcnc.experiments import estimate, measure

    assert estimate.AT_ENDS == measure.AT_ENDS
