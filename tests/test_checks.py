"""checks.py: the one family of argument checks, the rng coercer and the atomic writer."""
import numpy as np
import pytest

from minigcnc import checks


def test_integer_accepts_integers_at_or_above_the_minimum_and_names_the_parameter():
    assert checks.integer("n", np.int64(3)) == 3 and checks.integer("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"n must be an integer >= 1 \(images per class\); got 0"):
        checks.integer("n", 0, meaning="images per class")
    for bad in (2.0, True, "3"):
        with pytest.raises(TypeError, match="n must be an integer >= 1"):
            checks.integer("n", bad)


def test_number_checks_finite_range_and_open_bounds():
    assert checks.number("lr", 0.1, low=0.0, low_open=True) == 0.1
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            checks.number("lr", bad, low=0.0, low_open=True)
    with pytest.raises(ValueError, match="momentum must be a finite number >= 0 and < 1"):
        checks.number("momentum", 1.0, high=1.0)
    with pytest.raises(TypeError):
        checks.number("lr", "0.1")


def test_one_of_lists_the_accepted_values():
    with pytest.raises(ValueError, match="kind must be one of 'markov', 'directional'; got 'x'"):
        checks.one_of("kind", "x", ("markov", "directional"))


def test_as_rng_takes_a_generator_or_a_seed_and_refuses_none_and_other_types():
    g = np.random.default_rng(0)
    assert checks.as_rng(g) is g
    assert checks.as_rng(5).random() == np.random.default_rng(5).random()
    with pytest.raises(ValueError, match="rng is required: method='subset' is random"):
        checks.as_rng(None, why_needed="method='subset' is random")
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator or an int seed; got float"):
        checks.as_rng(0.5)


def test_finite_names_the_count_and_the_first_bad_index():
    A = np.zeros((3, 4))
    assert checks.finite(A, "X") is A
    A[1, 2], A[2, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"X contains 2 non-finite values \(NaN or inf\) out of 12; the first at index "
                                         r"\(1, 2\)"):
        checks.finite(A, "X")


def test_classes_match_names_the_classes_on_each_side():
    checks.classes_match([0, 1, 2], [2, 1, 0, 0], "y_train", "y_test")
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] occur in y_train but not in y_test"):
        checks.classes_match([0, 1, 3], [0, 1], "y_train", "y_test")


def test_write_atomically_renames_a_finished_file_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "run.json"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not tmp.match("*.json")  # a leftover of a killed writer never looks like a finished file
        tmp.write_text("{}")

    assert checks.write_atomically(target, write) == target and target.read_text() == "{}"
    assert seen[0].parent == target.parent and seen[0].name.startswith(".run.json.tmp-")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checks.write_atomically(target, fail)
    assert target.read_text() == "{}" and sorted(p.name for p in target.parent.iterdir()) == ["run.json"]

