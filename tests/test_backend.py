"""backend.py: which array module holds the data, how to choose it, and the one explicit way back to the host."""
import importlib.util

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import strict_device
from minigcnc import backend, models, ops


@pytest.fixture
def fresh_backend(monkeypatch):
    """Forget the chosen backend for one test (``MINIGCNC_BACKEND`` decides again); restored afterwards."""
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.delenv("MINIGCNC_BACKEND", raising=False)
    return backend


@pytest.fixture
def strict():
    strict_device.register()
    return strict_device.strict


# ---- get_xp ------------------------------------------------------------------------------------------------
def test_get_xp_is_autograd_numpy_for_host_arrays_scalars_and_no_arguments():
    assert backend.get_xp(np.zeros(3)) is anp
    assert backend.get_xp(np.zeros(3), 2.0) is anp
    assert backend.get_xp() is anp


def test_get_xp_looks_through_autograd_boxes():
    seen = []

    def f(x):
        seen.append((type(x).__name__, backend.get_xp(x)))
        return anp.sum(x * x)

    autograd.grad(f)(np.ones(3))
    assert seen == [("ArrayBox", anp)]


def test_get_xp_is_the_device_module_for_device_arrays_and_their_boxes(strict):
    d = strict.asarray(np.ones(3))
    assert backend.get_xp(d) is strict
    assert backend.get_xp(np.ones(3), d) is strict  # any device argument decides
    seen = []

    def f(x):
        seen.append(backend.get_xp(x))
        return ops.sum(x * x)  # autograd's own sum VJP would allocate on the host

    autograd.grad(f)(d)
    assert seen == [strict]
    assert backend.is_device_array(d) and not backend.is_device_array(np.ones(3))


# ---- choosing a backend --------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_set_backend_cupy_without_cupy_says_how_to_install_it(fresh_backend):
    with pytest.raises(ValueError, match=r"needs CuPy, which is not installed.*pip install -e \"\.\[gpu\]\""):
        backend.set_backend("cupy")
    assert backend.get_backend() == "numpy"  # the failed choice changed nothing


def test_set_backend_rejects_an_unknown_name_listing_the_accepted_ones(fresh_backend):
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'; accepted: 'numpy', 'cupy'"):
        backend.set_backend("tpu")
    with pytest.raises(TypeError, match="backend must be a string"):
        backend.set_backend(3)


def test_set_backend_is_case_insensitive_and_returns_the_name(fresh_backend):
    assert backend.set_backend("NumPy") == "numpy"
    assert backend.get_backend() == "numpy"


def test_default_backend_is_numpy_with_float64(fresh_backend):
    assert backend.get_backend() == "numpy"
    assert backend.default_dtype() == "float64"
    assert backend.backend_module() is anp


def test_environment_variable_minigcnc_backend_chooses_the_backend(fresh_backend, monkeypatch, strict):
    monkeypatch.setenv("MINIGCNC_BACKEND", "strict")
    assert backend.get_backend() == "strict"
    params = models.mlp([4, 3], 2).init(0)
    assert all(isinstance(a, strict_device.StrictArray) for a in backend.tree_leaves(params))
    assert params[0][0].dtype == np.float32  # device default
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("MINIGCNC_BACKEND", "no-such-backend")
    with pytest.raises(ValueError, match="unknown backend 'no-such-backend'"):
        backend.get_backend()


def test_set_backend_overrides_the_environment_variable(fresh_backend, monkeypatch, strict):
    monkeypatch.setenv("MINIGCNC_BACKEND", "strict")
    backend.set_backend("numpy")
    assert backend.get_backend() == "numpy"


# ---- moving data ---------------------------------------------------------------------------------------------
def test_to_numpy_round_trips_host_device_and_boxed_arrays(rng, strict):
    a = rng.standard_normal((3, 4))
    assert type(backend.to_numpy(a)) is np.ndarray and np.array_equal(backend.to_numpy(a), a)
    d = backend.asarray(a, backend="strict")
    assert isinstance(d, strict_device.StrictArray)
    back = backend.to_numpy(d)
    assert type(back) is np.ndarray and np.array_equal(back, a)
    boxed = []
    autograd.grad(lambda x: boxed.append(backend.to_numpy(x)) or anp.sum(x))(a)
    assert type(boxed[0]) is np.ndarray and np.array_equal(boxed[0], a)


def test_asarray_casts_and_places_on_the_requested_backend(strict):
    a = backend.asarray([1, 2, 3], dtype="float32", backend="numpy")
    assert type(a) is np.ndarray and a.dtype == np.float32
    d = backend.asarray(a, dtype="float64", backend="strict")
    assert isinstance(d, strict_device.StrictArray) and d.dtype == np.float64
    assert np.array_equal(backend.asarray(d, backend="numpy"), [1.0, 2.0, 3.0])


# ---- parameter trees -----------------------------------------------------------------------------------------
def _tree():
    return [(np.array([1.0, 2.0]), np.array(3.0)), {"a": np.array([[4.0]]), "b": [np.array(5.0)]}]


def test_tree_leaves_are_depth_first_in_a_fixed_order():
    assert [float(np.sum(x)) for x in backend.tree_leaves(_tree())] == [3.0, 3.0, 4.0, 5.0]


def test_tree_map_keeps_lists_tuples_and_dicts():
    out = backend.tree_map(lambda a: 2 * a, _tree())
    assert isinstance(out, list) and isinstance(out[0], tuple) and isinstance(out[1], dict)
    assert isinstance(out[1]["b"], list)
    assert np.array_equal(out[0][0], [2.0, 4.0]) and float(out[1]["b"][0]) == 10.0


def test_tree_unflatten_inverts_tree_leaves():
    tree = _tree()
    leaves = [x + 1 for x in backend.tree_leaves(tree)]
    rebuilt = backend.tree_unflatten(tree, leaves)
    assert all(a is b for a, b in zip(backend.tree_leaves(rebuilt), leaves))
    assert [type(x) for x in (rebuilt, rebuilt[0], rebuilt[1], rebuilt[1]["b"])] == [list, tuple, dict, list]


def test_to_device_and_tree_to_numpy_round_trip_every_leaf(strict):
    tree = _tree()
    dev = backend.to_device(tree, backend="strict")
    assert all(isinstance(x, strict_device.StrictArray) for x in backend.tree_leaves(dev))
    host = backend.tree_to_numpy(dev)
    assert all(type(x) is np.ndarray for x in backend.tree_leaves(host))
    assert all(np.array_equal(a, b) for a, b in zip(backend.tree_leaves(host), backend.tree_leaves(tree)))


def test_tree_leaves_looks_through_autograds_container_boxes():
    """A differentiated list/tuple/dict arrives as a SequenceBox/DictBox; its leaves must stay traced."""
    tree = _tree()
    seen = []

    def f(t):
        seen.append(type(t).__name__)
        return sum(ops.sum_squares(a) for a in backend.tree_leaves(t))

    g = autograd.grad(f)(tree)
    assert seen == ["SequenceBox"]
    assert all(np.array_equal(a, 2 * b) for a, b in zip(backend.tree_leaves(g), backend.tree_leaves(tree)))
