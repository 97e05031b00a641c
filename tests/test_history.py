"""experiments/history.py: a metric's curve and final value from a run's history, and the sweep's training time."""
import numpy as np

from minigcnc.experiments.history import final, finals, series, train_seconds


def history(key="k0", status="finished", seconds=1.0, evals=((0, 4.0), (10, 2.0), (20, 1.0))):
    return {"key": key, "status": status, "seconds": seconds, "evals": [{"step": s, "gc": v} for s, v in evals]}


def test_series_is_the_integer_steps_and_the_values_with_nan_where_a_metric_is_missing():
    h = history()
    h["evals"][1]["nc_train"] = 0.5
    steps, values = series(h, "gc")
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_array_equal(values, [4.0, 2.0, 1.0])
    assert steps.dtype == np.int64 and values.dtype == float  # steps count SGD updates: integers (issue 31)
    assert steps.tolist() == [0, 10, 20] and all(type(s) is int for s in steps.tolist())  # ints in a figure's JSON
    np.testing.assert_array_equal(series(h, "nc_train")[1], [np.nan, 0.5, np.nan])
    assert [len(a) for a in series(history(evals=()), "gc")] == [0, 0]
    assert series(history(evals=()), "gc")[0].dtype == np.int64


def test_final_is_the_last_value_and_nan_for_a_diverged_or_empty_run_or_a_missing_metric():
    assert final(history(), "gc") == 1.0
    assert np.isnan(final(history(status="diverged"), "gc"))  # its end state is not comparable
    assert np.isnan(final(history(evals=()), "gc"))
    assert np.isnan(final(history(), "nc_train"))


def test_finals_keeps_the_layout_per_seed_then_per_value():
    hs = [[history(evals=((0, 1.0),)), history(status="diverged")], [history(evals=((0, 3.0),)), history()]]
    out = finals(hs, "gc")
    assert out[0][0] == 1.0 and np.isnan(out[0][1]) and out[1] == [3.0, 1.0]


def test_train_seconds_counts_a_run_shared_by_two_sweeps_once():
    shared = history(key="a", seconds=5.0)
    assert train_seconds([shared, history(key="b", seconds=2.0), shared]) == 7.0
    assert train_seconds([]) == 0.0 and isinstance(train_seconds([shared]), float)
