"""The cupy backend on a CUDA GPU: the same numbers as numpy, and nothing leaves the device.

Every test here is marked ``gpu``: deselected by default (setup.cfg), run with
``python -m pytest -m gpu tests/test_gpu.py -q -rs`` (or ``bash tests/gpu/check.sh``). Without CuPy, or with
CuPy but no visible GPU, each test is skipped with the reason; with ``MINIGCNC_REQUIRE_GPU=1`` (set by
``check.sh``) they fail instead, so a GPU machine that silently skips is caught. The CPU twin of these checks,
with a strict stand-in for a device array, is ``test_strict_device.py``.

- float64 parity (numpy vs cupy, relative error below 1e-8): every primitive of ``ops`` and its VJP, then on
  an MLP, a convnet and a narrow ResNet-18 the forward pass, the loss gradient, exact GC (both targets, Gram
  route and direct, chunked), the GC estimators, the gradient of the GC penalty, ``train.fit`` steps (host
  data moved to the device once), and a whole cached run (``experiments.run.run``) with its metrics;
- float32 at paper scale: VGG-13, VGG-11 and ResNet-18 at full width on 3x32x32 inputs, one SGD step at batch
  128 and an exact GC on a few inputs; results finite, parameters still float32 cupy arrays, float32 GC
  within 1e-3 of float64 GC on the device; the Hutchinson GC penalty's gradient on VGG-13; a float32 run of a
  (narrow) VGG-11 through ``experiments.run.run`` with every metric of ``measure``.
"""
import inspect
import os

import numpy as np
import pytest
from autograd import grad, make_vjp

from minigcnc import backend, gc, models, ops, train
from minigcnc.experiments import run as runs
from minigcnc.experiments.config import RunConfig
from minigcnc.backend import to_device, to_numpy, tree_leaves, tree_map

pytestmark = pytest.mark.gpu

TOL = 1e-8  # float64 numpy vs float64 cupy: only the summation order of the GEMMs differs


# ---- the device, or a clean skip -----------------------------------------------------------------------------
def _unavailable(reason):
    """Skip (fail under MINIGCNC_REQUIRE_GPU=1) with ``reason``."""
    if os.environ.get("MINIGCNC_REQUIRE_GPU") == "1":
        pytest.fail(f"MINIGCNC_REQUIRE_GPU=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cp():
    """The ``cupy`` module, registered as minigcnc's backend "cupy"; skips without CuPy or a CUDA GPU."""
    kwargs = {"exc_type": ImportError} if "exc_type" in inspect.signature(pytest.importorskip).parameters else {}
    try:
        cupy = pytest.importorskip(
            "cupy", reason="CuPy is not installed: these tests need `pip install -e \".[gpu]\"` and a CUDA GPU",
            **kwargs)
    except pytest.skip.Exception as e:
        if os.environ.get("MINIGCNC_REQUIRE_GPU") == "1":
            pytest.fail(f"MINIGCNC_REQUIRE_GPU=1 but {e}", pytrace=False)
        raise
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CUDARuntimeError (no driver / no device) and friends
        _unavailable(f"CuPy is installed but sees no CUDA GPU ({type(e).__name__}: {e})")
    if n < 1:
        _unavailable("CuPy is installed but sees no CUDA GPU (device count 0)")
    previous = backend.get_backend()
    backend.set_backend("cupy")  # loads CuPy and registers cupy.ndarray with autograd
    backend.set_backend(previous)  # every test below names its backend explicitly
    yield cupy
    cupy.get_default_memory_pool().free_all_blocks()


@pytest.fixture
def keep_backend(monkeypatch):
    """Whatever a test selects (``experiments.run.run`` calls ``set_backend``), the backend is restored afterwards."""
    monkeypatch.setattr(backend, "_current", backend.get_backend())


def rel_err(device, host):
    """||device - host|| / ||host|| (plain ||device - host|| when host is exactly 0)."""
    d = np.asarray(to_numpy(device), dtype=np.float64)
    h = np.asarray(host, dtype=np.float64)
    assert d.shape == h.shape, (d.shape, h.shape)
    scale = np.linalg.norm(h)
    diff = np.linalg.norm(d - h)
    return float(diff / scale) if scale > 0 else float(diff)


def assert_on_device_and_close(cp, device_tree, host_tree, tol=TOL):
    dev, host = tree_leaves(device_tree), tree_leaves(host_tree)
    assert len(dev) == len(host)
    for i, (d, h) in enumerate(zip(dev, host)):
        assert isinstance(d, cp.ndarray), f"leaf {i} is a {type(d).__name__}, not a cupy.ndarray"
        assert d.dtype == np.asarray(h).dtype, f"leaf {i}: {d.dtype} on the device, {np.asarray(h).dtype} on the host"
        assert rel_err(d, h) < tol, f"leaf {i} of shape {tuple(d.shape)}: relative error {rel_err(d, h):.3g}"


# ---- the backend itself -------------------------------------------------------------------------------------
def test_the_cupy_backend_is_registered_with_autograd_and_float32_by_default(cp, keep_backend):
    assert backend.default_dtype("cupy") == "float32"
    a = cp.arange(6.0).reshape(2, 3)
    assert backend.get_xp(a) is cp and backend.is_device_array(a)
    host = to_numpy(a)
    assert type(host) is np.ndarray and np.array_equal(host, np.arange(6.0).reshape(2, 3))
    g = grad(lambda x: ops.sum(x * x))(a)  # autograd traces a cupy array and its gradient stays there
    assert isinstance(g, cp.ndarray) and np.array_equal(to_numpy(g), 2 * host)
    backend.set_backend("cupy")
    params = models.mlp([4, 3], 2).init(0)  # new arrays go to the current backend, in its default dtype
    assert all(isinstance(p, cp.ndarray) and p.dtype == np.float32 for p in tree_leaves(params))


def test_the_environment_variable_selects_cupy(cp, monkeypatch):
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("MINIGCNC_BACKEND", "cupy")
    assert backend.get_backend() == "cupy"
    assert isinstance(backend.asarray(np.ones(3)), cp.ndarray)


# ---- every primitive and its VJP ----------------------------------------------------------------------------
def _primitives():
    """name -> builder(rng) giving (f, host args, argnums to differentiate); f takes arrays only."""
    def r(rng, *shape):
        return rng.standard_normal(shape)

    return {
        "matmul": lambda g: (ops.matmul, [r(g, 2, 3, 4), r(g, 4, 5)], (0, 1)),
        "matmul_t": lambda g: (ops.matmul_t, [r(g, 2, 3, 5), r(g, 4, 5)], (0, 1)),
        "gram": lambda g: (ops.gram, [r(g, 4, 3)], (0,)),
        "add_bias": lambda g: (lambda x, b: ops.add_bias(x, b, axis=1), [r(g, 2, 3, 4, 4), r(g, 3)], (0, 1)),
        "relu": lambda g: (ops.relu, [r(g, 3, 4)], (0,)),
        "tanh": lambda g: (ops.tanh, [r(g, 3, 4)], (0,)),
        "reshape": lambda g: (lambda x: ops.reshape(x, (4, -1)), [r(g, 2, 2, 3)], (0,)),
        "transpose": lambda g: (lambda x: ops.transpose(x, (2, 0, 1)), [r(g, 2, 3, 4)], (0,)),
        "sum": lambda g: (lambda x: ops.sum(x, axis=(0, 2)), [r(g, 2, 3, 4)], (0,)),
        "sum_all": lambda g: (ops.sum, [r(g, 2, 3)], (0,)),
        "mean": lambda g: (lambda x: ops.mean(x, axis=1, keepdims=True), [r(g, 2, 3, 4)], (0,)),
        "cross_entropy": lambda g: (ops.cross_entropy, [r(g, 6, 4), np.arange(6) % 4], (0,)),
        "conv2d_same": lambda g: (lambda x, W: ops.conv2d(x, W, 1, 1), [r(g, 2, 3, 6, 6), r(g, 4, 3, 3, 3)], (0, 1)),
        "conv2d_stride2": lambda g: (lambda x, W: ops.conv2d(x, W, 2, 0), [r(g, 2, 3, 7, 7), r(g, 4, 3, 3, 3)], (0, 1)),
        "conv2d_input_grad": lambda g: (lambda t, W: ops.conv2d_input_grad(t, W, (3, 6, 6), 1, 1),
                                        [r(g, 2, 4, 6, 6), r(g, 4, 3, 3, 3)], (0, 1)),
        "maxpool2d": lambda g: (lambda x: ops.maxpool2d(x, 2), [r(g, 2, 3, 7, 7)], (0,)),
        "maxpool2d_input_grad": lambda g: (lambda t, x: ops.maxpool2d_input_grad(t, ops.maxpool_mask(x, 2), 2, 6, 6),
                                           [r(g, 2, 3, 3, 3), r(g, 2, 3, 6, 6)], (0,)),
        "maxpool2d_input_grad_batched": lambda g: (  # the jtp form: (N, q, C, Ho, Wo)
            lambda t, x: ops.maxpool2d_input_grad(t, ops.maxpool_mask(x, 2), 2, 6, 6),
            [r(g, 2, 5, 3, 3, 3), r(g, 2, 3, 6, 6)], (0,)),
        "avgpool2d": lambda g: (lambda x: ops.avgpool2d(x, 2), [r(g, 2, 3, 6, 6)], (0,)),
        "avgpool2d_input_grad": lambda g: (lambda t: ops.avgpool2d_input_grad(t, 2, 6, 6), [r(g, 2, 3, 3, 3)], (0,)),
    }


PRIMITIVES = _primitives()


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_every_primitive_and_its_vjp_stay_on_the_device_and_equal_numpy(cp, name):
    rng = np.random.default_rng(0)
    f, args, argnums = PRIMITIVES[name](rng)
    dargs = [cp.asarray(a) for a in args]
    out_h, out_d = f(*args), f(*dargs)
    assert isinstance(out_d, cp.ndarray) and out_d.dtype == np.float64
    assert rel_err(out_d, out_h) < TOL
    R = rng.standard_normal(np.shape(out_h))
    for i in argnums:
        vjp_h, _ = make_vjp(f, i)(*args)
        vjp_d, _ = make_vjp(f, i)(*dargs)
        g = vjp_d(cp.asarray(R))
        assert isinstance(g, cp.ndarray), f"the VJP in argument {i} returned a {type(g).__name__}"
        assert g.dtype == np.float64 and rel_err(g, vjp_h(R)) < TOL, f"argument {i}"


# ---- models: forward, gradients, GC, training -----------------------------------------------------------------
MODELS = {
    "mlp": lambda: models.mlp([20, 8, 6], 3),  # h < D: the first-layer Gram route of gc
    "convnet": lambda: models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,)),
    "resnet18": lambda: models.resnet18((3, 8, 8), 3, width=1 / 16),
}


def _problem(cp, kind, n=6):
    """(model, host params, device params, host X, host y): float64, biases and residual scales non-zero."""
    model = MODELS[kind]()
    rng = np.random.default_rng(7)
    params = model.init(0, dtype="float64", backend="numpy")
    # random biases and residual scales (SkipInit starts at 0, which would hide the residual branches)
    params = tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape) if a.ndim <= 1 else a, params)
    X = rng.standard_normal((n,) + model.input_shape)
    y = np.arange(n) % model.n_classes
    return model, params, to_device(params, backend="cupy"), X, y


@pytest.mark.parametrize("kind", list(MODELS))
def test_forward_pass_on_the_device_equals_numpy(cp, kind):
    model, P, Pd, X, _ = _problem(cp, kind)
    for f in (model.embed, model.logits):
        assert_on_device_and_close(cp, f(Pd, cp.asarray(X)), f(P, X))


@pytest.mark.parametrize("kind", list(MODELS))
def test_loss_gradient_on_the_device_stays_there_and_equals_numpy(cp, kind):
    model, P, Pd, X, y = _problem(cp, kind)
    value_d = model.loss(Pd, cp.asarray(X), cp.asarray(y))
    assert isinstance(value_d, cp.ndarray) and rel_err(value_d, model.loss(P, X, y)) < TOL
    assert_on_device_and_close(cp, grad(model.loss)(Pd, cp.asarray(X), cp.asarray(y)), grad(model.loss)(P, X, y))


@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_exact_gc_on_the_device_equals_numpy_chunked_or_not(cp, kind, target):
    model, P, Pd, X, _ = _problem(cp, kind)
    Xd = cp.asarray(X)
    expected = gc.jacobian_sq_norms(model, P, X, target=target)
    for kwargs in [{}, {"gram": False}, {"chunk": 2, "batch_size": 4}]:
        assert_on_device_and_close(cp, gc.jacobian_sq_norms(model, Pd, Xd, target=target, **kwargs), expected)
    value = gc.gc_value(model, Pd, Xd, target=target)
    assert isinstance(value, cp.ndarray) and value.shape == ()
    host_gc = gc.geometric_complexity(model, P, X, target=target)
    assert abs(gc.geometric_complexity(model, Pd, Xd, target=target) - host_gc) <= TOL * abs(host_gc)


@pytest.mark.parametrize("method, level", [
    ("subset", {"n": 4}), ("outputs", {"m": 3}), ("hutchinson", {"probes": 3}),
    ("hutchinson", {"probes": 2, "dist": "rademacher"}), ("mask", {"q": 0.5, "chunk": 2, "batch_size": 3}),
])
def test_gc_estimators_draw_on_the_host_and_give_the_same_numbers_on_the_device(cp, method, level):
    model, P, Pd, X, _ = _problem(cp, "convnet")
    host = gc.geometric_complexity(model, P, X, method=method, rng=3, **level)
    dev = gc.geometric_complexity(model, Pd, cp.asarray(X), method=method, rng=3, **level)
    assert abs(dev - host) <= TOL * abs(host)


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_gc_penalty_gradient_stays_on_the_device_and_equals_numpy(cp, kind, method):
    model, P, Pd, X, _ = _problem(cp, kind, n=4)
    rng = 0 if method == "hutchinson" else None
    f_h = lambda p: gc.gc_penalty(model, p, X, method=method, rng=rng)  # noqa: E731
    f_d = lambda p: gc.gc_penalty(model, p, cp.asarray(X), method=method, rng=rng)  # noqa: E731
    assert rel_err(f_d(Pd), f_h(P)) < TOL
    assert_on_device_and_close(cp, grad(f_d)(Pd), grad(f_h)(P))


@pytest.mark.parametrize("penalty", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_fit_moves_host_data_to_the_device_and_its_steps_equal_numpy(cp, kind, penalty):
    model, P, Pd, X, y = _problem(cp, kind)
    kw = {"lr": 0.05, "batch_size": 3, "steps": 2, "momentum": 0.9, "l2": 1e-3, "progress": False}
    pen = (lambda: gc.make_gc_penalty(model, 1e-2)) if penalty else (lambda: None)
    dev = train.fit(model, Pd, X, y, penalty=pen(), **kw)  # host X and y: moved to the device once
    host = train.fit(model, P, X, y, penalty=pen(), **kw)
    assert not dev.diverged and dev.step == 2
    assert_on_device_and_close(cp, dev.params, host.params)
    np.testing.assert_allclose(dev.losses, host.losses, rtol=TOL)


def _close_records(dev, host):
    """Two ``measure`` records agree: same keys, numbers to 1e-6 relative (metrics are computed on the host)."""
    assert sorted(dev) == sorted(host)
    for key, h in host.items():
        d = dev[key]
        if isinstance(h, (int, float)) and not isinstance(h, bool):
            assert d == pytest.approx(h, rel=1e-6, abs=1e-12, nan_ok=True), key
        elif isinstance(h, list) and h and isinstance(h[0], float):
            np.testing.assert_allclose(d, h, rtol=1e-6, atol=1e-12, err_msg=key)
        else:
            assert d == h, key


def test_a_cached_run_on_cupy_records_the_same_metrics_as_on_numpy(cp, keep_backend, tmp_path):
    base = RunConfig(dataset="mnist5k", model="mlp", hidden=(32, 16), lr=0.05, batch_size=32, steps=4,
                     eval_every=2, eval_per_class=5, dtype="float64")
    dev = runs.run(base.replace(backend="cupy"), cache_dir=tmp_path, progress=False)
    host = runs.run(base, cache_dir=tmp_path, progress=False)
    assert dev["key"] != host["key"] and dev["status"] == host["status"] == "finished"
    np.testing.assert_allclose(dev["losses"], host["losses"], rtol=TOL)
    assert len(dev["evals"]) == len(host["evals"]) == 3
    for d, h in zip(dev["evals"], host["evals"]):
        _close_records(d, h)


# ---- paper scale, float32 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["vgg13", "vgg11", "resnet18"])
def test_paper_scale_float32_step_and_exact_gc_on_the_device(cp, kind):
    model = models.build(kind, (3, 32, 32), 10)  # full width: the paper's networks, p = 512
    assert model.embed_dim == 512
    params = model.init(0, backend="cupy")  # float32: the device default
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=128)
    # numpy float64 hyperparameters must not promote the float32 parameters
    res = train.fit(model, params, X, y, lr=np.float64(0.01), batch_size=128, steps=1, momentum=np.float64(0.9),
                    progress=False)
    assert not res.diverged and res.step == 1 and np.isfinite(res.losses).all()
    leaves = tree_leaves(res.params)
    assert all(isinstance(a, cp.ndarray) and a.dtype == np.float32 for a in leaves)
    assert all(bool(to_numpy(cp.isfinite(a).all())) for a in leaves)
    moved = sum(float(to_numpy(cp.abs(a - b).max())) > 0 for a, b in zip(leaves, tree_leaves(params)))
    assert moved > 0

    Xd = cp.asarray(X[:3])
    norms = gc.jacobian_sq_norms(model, res.params, Xd)  # the default device plan
    assert isinstance(norms, cp.ndarray) and norms.dtype == np.float32
    norms = to_numpy(norms)
    assert np.isfinite(norms).all() and (norms > 0).all()
    exact64 = gc.jacobian_sq_norms(model, to_device(res.params, backend="cupy", dtype="float64"), Xd.astype(cp.float64))
    assert rel_err(exact64, norms.astype(np.float64)) < 1e-3
    cp.get_default_memory_pool().free_all_blocks()


def test_paper_scale_gc_penalty_gradient_by_hutchinson_probes_stays_on_the_device(cp):
    """GC regularization at paper scale: the exact penalty would hold batch x 512 rows of the whole backward graph
    (hundreds of GB for VGG-13 at batch 128), so paper-scale runs use Hutchinson probes; its gradient is float32,
    finite and on the device."""
    model = models.vgg("vgg13")
    params = model.init(0, backend="cupy")
    X = cp.asarray(np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32))
    penalty = gc.make_gc_penalty(model, 1e-4, method="hutchinson", probes=2)
    g = grad(lambda p: penalty(p, X))(params)
    leaves = tree_leaves(g)
    assert all(isinstance(a, cp.ndarray) and a.dtype == np.float32 for a in leaves)
    assert all(bool(to_numpy(cp.isfinite(a).all())) for a in leaves)
    assert float(to_numpy(sum(cp.abs(a).sum() for a in leaves))) > 0
    cp.get_default_memory_pool().free_all_blocks()


def test_a_float32_convolutional_run_on_cupy_measures_finite_metrics(cp, keep_backend, tmp_path):
    config = RunConfig(dataset="mnist5k", model="vgg11", width=1 / 8, lr=0.01, batch_size=64, steps=2,
                       eval_every=2, eval_per_class=5, backend="cupy", dtype="float32")
    history = runs.run(config, cache_dir=tmp_path, progress=False)
    assert history["status"] == "finished"
    last = history["evals"][-1]
    for key in ("train_loss", "test_acc", "gc", "logit_gc", "nc_train", "ncc_test_error", "bound_gc_directional"):
        assert np.isfinite(last[key]), (key, last.get("warnings"))
