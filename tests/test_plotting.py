"""experiments/plotting.py: the mean over seeds with a min-max or standard-error band, the bars of the final
values, the step-0 point, diverged runs marked with an x (and named in a title only when one diverged), and the
labels of swept values."""
import matplotlib
import numpy as np
import pytest

from minigcnc.experiments import plotting

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def history(values, status="finished", steps=None):
    steps = range(0, 10 * len(values), 10) if steps is None else steps
    return {"key": str(values), "status": status, "seconds": 1.0,
            "evals": [{"step": s, "gc": v} for s, v in zip(steps, values)]}


SEEDS = [history([4.0, 2.0, 1.0]), history([6.0, 4.0, 3.0]), history([5.0, 3.0, 5.0])]


def test_mean_band_is_the_mean_with_the_min_max_over_seeds():
    steps, mean, low, high = plotting.mean_band(SEEDS, "gc")
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_allclose(mean, [5.0, 3.0, 3.0])
    np.testing.assert_array_equal(low, [4.0, 2.0, 1.0])
    np.testing.assert_array_equal(high, [6.0, 4.0, 5.0])


def test_mean_band_sem_is_one_standard_error_of_the_mean():
    _, mean, low, high = plotting.mean_band(SEEDS, "gc", band="sem")
    values = np.array([[4.0, 2.0, 1.0], [6.0, 4.0, 3.0], [5.0, 3.0, 5.0]])
    se = values.std(axis=0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(low, mean - se)
    np.testing.assert_allclose(high, mean + se)
    with pytest.raises(ValueError, match=r"band must be one of \['minmax', 'sem'\]; got 'std'"):
        plotting.mean_band(SEEDS, "gc", band="std")


def test_mean_band_keeps_the_steps_every_run_reached_and_skips_nan():
    short = history([2.0, np.nan])  # a run that ended early, its last value unknown
    steps, mean, low, high = plotting.mean_band([SEEDS[0], short], "gc")
    np.testing.assert_array_equal(steps, [0, 10])
    np.testing.assert_allclose(mean, [3.0, 2.0])  # the nan is left out, not propagated
    assert [len(a) for a in plotting.mean_band([history([])], "gc")] == [0, 0, 0, 0]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # (step0_mean of a metric no run has: nanmean warns)
def test_after_init_drops_the_step_0_evaluation_and_step0_mean_averages_it():
    later = plotting.after_init(SEEDS)
    assert [e["step"] for e in later[0]["evals"]] == [10, 20] and later[0]["status"] == "finished"
    assert [e["step"] for e in SEEDS[0]["evals"]] == [0, 10, 20]  # the histories themselves are left alone
    assert plotting.step0_mean(SEEDS, "gc") == 5.0
    assert np.isnan(plotting.step0_mean(later, "gc")) and np.isnan(plotting.step0_mean(SEEDS, "nc_train"))


def test_plot_band_draws_the_mean_a_band_and_an_x_at_the_end_of_a_diverged_run():
    fig, ax = plt.subplots()
    diverged = history([5.0, 50.0], status="diverged")
    line = plotting.plot_band(ax, SEEDS + [diverged], "gc", "C0", label="lr")
    assert line.get_label() == "lr" and len(ax.collections) == 1  # the band
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1
    np.testing.assert_array_equal(crosses[0].get_xdata(), [10])
    np.testing.assert_array_equal(crosses[0].get_ydata(), [50.0])
    fig2, ax2 = plt.subplots()
    plotting.plot_band(ax2, SEEDS[:1], "gc", "C1")
    assert len(ax2.collections) == 0 and not [ln for ln in ax2.lines if ln.get_marker() == "x"]  # one run: no band
    assert plotting.plot_band(ax2, [history([])], "gc", "C1") is None
    plt.close(fig)
    plt.close(fig2)


@pytest.mark.parametrize("value,label", [(0, "0"), (0.0, "0"), (1e-4, "1e-04"), (0.05, "0.05"), (128, "128"),
                                         (np.int64(3), "3"), ("tanh", "tanh"), ((64, 32), "64-32"), (2.5e-3, "0.0025")])
def test_fmt_value_labels_a_swept_value_shortly(value, label):
    assert plotting.fmt_value(value) == label


def test_final_spread_is_the_mean_min_and_max_of_the_finished_runs_final_values():
    diverged = history([5.0, 50.0], status="diverged")
    assert plotting.final_spread(SEEDS + [diverged], "gc") == (20, 3.0, 1.0, 5.0)  # the diverged run left out
    assert plotting.final_spread([diverged], "gc") is None and plotting.final_spread(SEEDS, "nc_train") is None


def test_final_bars_stand_side_by_side_right_of_the_last_step_in_the_sweeps_order():
    fig, ax = plt.subplots()
    other = [history([1.0, 1.0, 8.0]), history([1.0, 1.0, 9.0])]
    bars = plotting.draw_final_bars(ax, [SEEDS, other, SEEDS[:1]], "gc", ["C0", "C1", "C2"])
    assert len(bars) == 2  # the third value has one run: no spread to draw
    ends_only = [history([1.0, np.nan, 3.0]), history([2.0, np.nan, 4.0])]  # recorded at the ends only
    assert plotting.draw_final_bars(ax, [SEEDS, ends_only], "gc", ["C0", "C1"]) == []  # its points have bars
    (x0,), (x1,) = (b.lines[0].get_xdata() for b in bars)
    assert 20 < x0 < x1
    segments = [b.lines[2][0].get_segments()[0] for b in bars]  # the vertical bar: (x, min) -> (x, max)
    np.testing.assert_allclose([s[:, 1] for s in segments], [[1.0, 5.0], [8.0, 9.0]])
    plt.close(fig)


def test_band_words_name_the_x_of_a_diverged_run_only_when_a_run_diverged():
    assert plotting.band_words() == "lines = mean over seeds, bands = min-max over seeds"
    assert plotting.band_words("minmax", diverged=True, bars=True) == (
        "lines = mean over seeds, bands = min-max over seeds, bars at the right = min-max of the final values; "
        "x = a diverged run")
    assert plotting.band_words(n_seeds=5).startswith("lines = mean over 5 seeds, bands = min-max over seeds")
    nested = [[SEEDS, [history([1.0], status="diverged")]]]
    assert plotting.any_diverged(nested) and not plotting.any_diverged([SEEDS, [SEEDS]])
