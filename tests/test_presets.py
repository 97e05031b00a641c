"""experiments/presets.py: a run that two figures train is declared once, and gives the same runs (the same
cache keys) as when each figure declared it."""
from minigcnc import figure2, figure3
from minigcnc.experiments.config import scale_base
from minigcnc.experiments.presets import training_run


def test_the_training_run_of_figures_2_and_3_is_declared_once():
    assert training_run("tiny") == scale_base("tiny", steps=300)
    assert training_run("laptop") == scale_base("laptop", steps=3000, eval_every=150)
    assert training_run("paper") == scale_base("paper", lr=0.01, batch_size=128)
    assert [c.key() for c in figure3.configs("laptop")] == [training_run("laptop").replace(seed=s).key()
                                                            for s in range(5)]


def test_figure2_trains_figure3s_run_recording_the_estimators_too():
    assert [c.replace(extras=()) for c in figure2.configs("laptop")] == figure3.configs("laptop")
    assert figure2.configs("paper")[0].replace(extras=(), eval_per_class=20) == figure3.configs("paper")[0]
    assert figure2.configs("tiny")[0].steps == 200 and figure3.configs("tiny")[0].steps == 300  # tiny: one seed
    assert all(c.extras == ("gc_estimators",) for c in figure2.configs("laptop"))
