"""The strict stand-in device proves on the CPU that models, gradients and training never leave the device.

First: the stand-in really is strict. Then, on backend "strict": forward passes, loss gradients, input-Jacobian
products and ``train.fit`` run without a ``DeviceLeak``, keep every array on the device, and give the numpy
backend's numbers (float64, to 1e-12).
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

import strict_device
from strict_device import DeviceLeak, StrictArray, strict
from minigcnc import backend, models, ops, train
from minigcnc.backend import to_numpy, tree_leaves


@pytest.fixture
def on_strict():
    """Backend "strict" for one test; numpy again afterwards, whatever happens."""
    strict_device.register()
    backend.set_backend("strict")
    try:
        yield strict
    finally:
        backend.set_backend("numpy")


def dev(a):
    return strict.asarray(a)


def all_on_device(tree):
    return all(isinstance(a, StrictArray) for a in tree_leaves(tree))


def assert_equal_trees(device_tree, host_tree, rtol=1e-12):
    for d, h in zip(tree_leaves(device_tree), tree_leaves(host_tree)):
        np.testing.assert_allclose(to_numpy(d), h, rtol=rtol, atol=1e-14)


# ---- the stand-in is strict ----------------------------------------------------------------------------------
def test_np_asarray_of_a_strict_array_raises_device_leak():
    with pytest.raises(DeviceLeak):
        np.asarray(dev(np.ones(3)))
    with pytest.raises(DeviceLeak):
        np.array(dev(np.ones(3)))


MIXED = [lambda d, h: d + h, lambda d, h: h * d, lambda d, h: np.dot(d, h), lambda d, h: d[h > 0]]


@pytest.mark.parametrize("op", MIXED, ids=["add", "rmul", "dot", "index"])
def test_mixing_a_strict_array_with_a_host_array_raises_device_leak(op):
    with pytest.raises(DeviceLeak):
        op(dev(np.ones(3)), np.ones(3))


@pytest.mark.parametrize("convert", [float, int, bool])
def test_python_scalars_of_a_strict_array_raise_device_leak(convert):
    with pytest.raises(DeviceLeak):
        convert(dev(np.ones(())))


def test_numpy_functions_on_strict_arrays_stay_on_the_device_and_get_is_the_way_back():
    d = dev(np.arange(6.0).reshape(2, 3))
    out = [np.sum(d, axis=0), np.exp(d), d.T @ d, d.reshape(3, 2), d[:, 1], strict.zeros(3), d > 2]
    assert all(isinstance(o, StrictArray) for o in out)
    assert type(d.get()) is np.ndarray and np.array_equal(d.get(), np.arange(6.0).reshape(2, 3))


def test_autograds_own_sum_vjp_is_caught_as_a_leak_and_ops_sum_is_not():
    """Why models must use ``ops``: autograd's VJP for ``sum`` builds its broadcast shape on the host."""
    strict_device.register()
    x = dev(np.ones((2, 3)))
    with pytest.raises(DeviceLeak):
        grad(lambda x: anp.sum(x * x, axis=0)[0])(x)
    g = grad(lambda x: ops.sum(ops.sum(x * x, axis=0)))(x)
    assert isinstance(g, StrictArray) and np.array_equal(g.get(), 2 * np.ones((2, 3)))


# ---- models, gradients and training on the device ------------------------------------------------------------
MODELS = {
    "mlp": lambda: models.mlp([12, 8, 6], 3),
    "convnet": lambda: models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,)),
    "resnet18": lambda: models.resnet18((3, 8, 8), 3, width=1 / 16),
}


def _problem(kind, rng):
    model = MODELS[kind]()
    X = rng.standard_normal((6,) + model.input_shape)
    y = np.arange(6) % 3
    return model, X, y


@pytest.mark.parametrize("kind", list(MODELS))
def test_forward_on_the_device_equals_numpy(on_strict, rng, kind):
    model, X, y = _problem(kind, rng)
    params = model.init(0, dtype="float64")
    assert all_on_device(params)
    host = backend.tree_to_numpy(params)
    for f in (model.embed, model.logits):
        out = f(params, dev(X))
        assert isinstance(out, StrictArray)
        np.testing.assert_allclose(out.get(), f(host, X), rtol=1e-12)


@pytest.mark.parametrize("kind", list(MODELS))
def test_loss_gradient_on_the_device_stays_there_and_equals_numpy(on_strict, rng, kind):
    model, X, y = _problem(kind, rng)
    params = model.init(0, dtype="float64")
    g = grad(model.loss)(params, dev(X), dev(y))
    assert all_on_device(g)
    assert_equal_trees(g, grad(model.loss)(backend.tree_to_numpy(params), X, y))


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_input_jacobian_products_on_the_device_equal_numpy(on_strict, rng, kind):
    model, X, y = _problem(kind, rng)
    params = model.init(0, dtype="float64")
    host = backend.tree_to_numpy(params)
    T = rng.standard_normal((6, 2, model.embed_dim))
    on_dev = model.body.jtp(params[:-1], model.embed_with_cache(params, dev(X))[1], dev(T))
    assert isinstance(on_dev, StrictArray)
    np.testing.assert_allclose(on_dev.get(), model.body.jtp(host[:-1], model.embed_with_cache(host, X)[1], T),
                               rtol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_fit_on_the_device_keeps_params_there_and_equals_numpy(on_strict, rng, kind):
    model, X, y = _problem(kind, rng)
    params = model.init(0, dtype="float64")
    kw = {"lr": 0.1, "batch_size": 3, "steps": 4, "momentum": 0.9, "l2": 1e-3, "progress": False}
    result = train.fit(model, params, X, y, **kw)  # host X and y are moved to the device once
    assert not result.diverged and result.step == 4
    assert all_on_device(result.params)
    expected = train.fit(model, backend.tree_to_numpy(params), X, y, **kw)
    assert_equal_trees(result.params, expected.params)
    np.testing.assert_allclose(result.losses, expected.losses, rtol=1e-12)


def test_fit_on_the_device_checkpoints_and_resumes(on_strict, rng, tmp_path):
    model, X, y = _problem("mlp", rng)
    kw = {"lr": 0.1, "batch_size": 3, "momentum": 0.9, "progress": False, "checkpoint": str(tmp_path / "c.npz")}
    train.fit(model, model.init(0, dtype="float64"), X, y, steps=2, **kw)
    resumed = train.fit(model, model.init(0, dtype="float64"), dev(X), dev(y), steps=4, **kw)
    assert all_on_device(resumed.params)
    whole = train.fit(model, model.init(0, dtype="float64"), X, y, steps=4, **{**kw, "checkpoint": None})
    assert_equal_trees(resumed.params, backend.tree_to_numpy(whole.params), rtol=0)
