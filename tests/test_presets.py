"""experiments/presets.py: runs that two figures train are declared once, and give the same runs (the same
cache keys) in both figures."""
from minigcnc import figure1, figure2, figure3
from minigcnc.experiments.cache import run_key
from minigcnc.experiments.config import scale_base
from minigcnc.experiments import presets
from minigcnc.experiments.presets import MOMENT_EXTRAS, SWEEP_GRIDS, sweep_base, training_run


def test_the_training_run_of_figure2_is_declared_once():
    assert training_run("tiny") == scale_base("tiny", steps=300)
    assert training_run("laptop") == scale_base("laptop", steps=3000, eval_every=150)
    assert training_run("paper") == scale_base("paper", lr=0.01, batch_size=128)
    assert [c.replace(extras=()) for c in figure2.configs("laptop")] == [
        training_run("laptop").replace(seed=s) for s in range(5)]
    assert all(c.extras == ("gc_estimators",) for c in figure2.configs("laptop"))


def test_figure3_trains_figure1s_lr_and_batch_runs_which_record_the_moment_bounds():
    for scale in ("laptop", "paper"):
        assert figure1.GRIDS[scale] == SWEEP_GRIDS[scale]
        base = sweep_base(scale)
        assert set(MOMENT_EXTRAS) <= set(base.extras)
        f1 = {run_key(c) for c in figure1.configs(scale, seeds=3)}
        digits = [c for _, per_seed in figure3.design(scale)["digits"] for c in per_seed]
        assert digits and {run_key(c) for c in digits} <= f1


def test_the_convnet_appendix_records_the_hessian_trace_below_paper_scale_and_sweeps_figure_1s_fields():
    for scale in ("tiny", "laptop", "paper"):
        base = presets.appendix_base(scale)
        assert base.extras == (presets.FLATNESS_EXTRAS if scale != "paper" else ())
        assert base.model == ("vgg11" if scale == "paper" else "convnet")
        assert list(presets.APPENDIX_GRIDS[scale]) == list(presets.SWEEP_GRIDS[scale]) == ["lr", "batch_size", "l2"]
        assert presets.APPENDIX_SEEDS[scale] >= 2
