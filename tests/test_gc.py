"""gc.py: exact input Jacobians, GC and its estimators, the GC penalty, on every backend (PAPER.md section 2).

Oracles: autograd ``make_vjp`` with one-hot cotangents (one backward per output coordinate), central finite
differences, closed forms (affine maps, one hidden layer), and the strict stand-in device. All in float64.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from autograd import grad, make_vjp  # noqa: E402

from minigcnc import gc, layers, models  # noqa: E402
from minigcnc.backend import to_numpy, tree_leaves, tree_unflatten  # noqa: E402


# ---- small models ---------------------------------------------------------------------------------------------
def with_nonzero_alphas(model, params, value=0.7):
    """SkipInit residual scales set to ``value`` so the residual branches matter."""
    params = list(params)
    for i, layer in enumerate(model.layers):
        if layer.name == "residual":
            pm, ps, _ = params[i]
            params[i] = (pm, ps, np.array(value))
    return params


def with_random_biases(params, rng, scale=0.3):
    """Every bias (1-D leaf) drawn at random, so that activations are not centred at zero."""
    leaves = [a + scale * rng.standard_normal(a.shape) if np.ndim(a) == 1 else a for a in tree_leaves(params)]
    return tree_unflatten(params, leaves)


def build(name):
    """(model, params, X) for one tiny test problem, float64 on the host."""
    rng = np.random.default_rng(7)
    if name == "mlp-relu":
        m = models.mlp([9, 6, 5, 4], 3, "relu")  # first layer narrower than the input: Gram route
    elif name == "mlp-tanh":
        m = models.mlp([5, 7, 4], 3, "tanh")  # first layer wider than the input: direct route
    elif name == "convnet":
        m = models.convnet((1, 8, 8), 3, channels=(3, 4), hidden=(5,))
    elif name == "resnet18":
        m = models.resnet18((2, 8, 8), 3, width=1 / 16)
    elif name == "vgg11":
        m = models.vgg("vgg11", (1, 8, 8), 3, width=1 / 16, hidden=64)
    else:
        raise KeyError(name)
    P = with_random_biases(m.init(3, dtype="float64", backend="numpy"), rng)
    if name == "resnet18":
        P = with_nonzero_alphas(m, P)
    X = rng.standard_normal((3,) + m.input_shape)
    return m, P, X


def out_fn(model, params, target):
    return (lambda x: model.embed(params, x)) if target == "embed" else (lambda x: model.logits(params, x))


def jacobian_by_make_vjp(model, params, X, target):
    """(N, q, D) from one backward pass per output coordinate with one-hot cotangents."""
    Xf = X.reshape(X.shape[0], -1)
    vjp, Y = make_vjp(out_fn(model, params, target))(Xf)
    rows = []
    for j in range(Y.shape[1]):
        u = np.zeros_like(Y)
        u[:, j] = 1.0
        rows.append(vjp(u))
    return np.stack(rows, axis=1)


def jacobian_by_finite_differences(model, params, X, target, eps=1e-6):
    """(N, q, D) by central differences, one input coordinate of every sample at a time."""
    Xf = X.reshape(X.shape[0], -1)
    f = out_fn(model, params, target)
    cols = []
    for d in range(Xf.shape[1]):
        E = np.zeros_like(Xf)
        E[:, d] = eps
        cols.append((f(Xf + E) - f(Xf - E)) / (2 * eps))
    return np.stack(cols, axis=2)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))


# ---- exact Jacobians ------------------------------------------------------------------------------------------
MODELS = ["mlp-relu", "mlp-tanh", "convnet", "resnet18", "vgg11"]


@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("name", MODELS)
def test_input_jacobian_equals_autograd_one_hot_vjps_and_finite_differences(name, target):
    m, P, X = build(name)
    J = gc.input_jacobian(m, P, X, target=target)
    q = m.embed_dim if target == "embed" else m.n_classes
    assert J.shape == (X.shape[0], q, m.input_dim)
    assert rel_err(J, jacobian_by_make_vjp(m, P, X, target)) < 1e-8
    assert rel_err(J, jacobian_by_finite_differences(m, P, X, target)) < 1e-5
    np.testing.assert_allclose(gc.input_jacobian(m, P, X, target=target, chunk=2), J, rtol=0, atol=1e-13)


@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("name", ["mlp-relu", "mlp-tanh", "convnet"])
def test_jacobian_sq_norms_equal_the_sum_of_squares_of_the_jacobian(name, target):
    m, P, X = build(name)
    expected = (gc.input_jacobian(m, P, X, target=target) ** 2).sum(axis=(1, 2))
    for kwargs in [{}, {"gram": False}, {"chunk": 2, "batch_size": 1}, {"gram": False, "chunk": 3, "batch_size": 2}]:
        np.testing.assert_allclose(gc.jacobian_sq_norms(m, P, X, target=target, **kwargs), expected, rtol=1e-12)


def test_rows_of_inactive_top_relu_units_are_dropped_and_the_norms_stay_exact():
    m, P, X = build("mlp-relu")
    _, caches, _ = gc._forward(m, P, X)
    d = caches[-1]  # (N, p) ReLU derivative of the embedding layer
    assert 0 < d.sum() < d.size  # some units inactive, some active
    W = P[-2][0]
    T = gc._compact_rows(W.T.copy(), d, np)
    assert T.shape == (X.shape[0], int(d.sum(axis=1).max()), W.shape[0])
    full = d[:, :, None] * W.T[None]  # every identity row through the top layer
    np.testing.assert_allclose((T ** 2).sum(axis=(1, 2)), (full ** 2).sum(axis=(1, 2)), rtol=1e-12)
    assert gc._compact_rows(W.T.copy(), np.ones_like(d), np) is None  # nothing to drop


def test_samples_batched_by_active_count_come_back_in_their_own_order():
    m, P, _ = build("mlp-relu")
    X = np.random.default_rng(2).standard_normal((24, 9))
    perm = gc._order_by_active_rows(m, P, X, 5)
    assert perm is not None and np.any(perm != np.arange(24))  # the presort really reorders
    expected = (gc.input_jacobian(m, P, X) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(gc.jacobian_sq_norms(m, P, X, batch_size=5), expected, rtol=1e-12)
    np.testing.assert_allclose(gc.class_gc(m, P, X, np.arange(24) % 4, batch_size=5),
                               [expected[c::4].mean() for c in range(4)], rtol=1e-12)


def test_the_gram_route_is_taken_when_the_first_dense_layer_is_narrower_than_the_input():
    m, P, _ = build("mlp-relu")
    assert gc._dense_gram_applies(m, P)
    m2, P2, _ = build("mlp-tanh")
    assert not gc._dense_gram_applies(m2, P2)


def patchify_model():
    """A conv stem with non-overlapping unpadded patches (stride = kernel = 2), publishing its geometry."""
    conv = layers.Conv(3, kernel=2, stride=2, padding=0, activation="tanh")
    info = dict(conv.info, stride=2, padding=0, kernel=2,
                pre_linear_jtp=lambda p, cache, T: T * cache[0][:, None])  # the activation part of the jtp
    stem = layers.Layer(conv.name, conv.init, conv.apply, conv.jtp, info)
    return models.Model("patchify", (2, 6, 6), [stem, layers.Flatten(), layers.DenseAct(4, "tanh")], 3)


def test_first_conv_gram_route_is_exact_for_non_overlapping_patches():
    m = patchify_model()
    rng = np.random.default_rng(0)
    P = with_random_biases(m.init(1, dtype="float64", backend="numpy"), rng)
    X = rng.standard_normal((4, 2, 6, 6))
    assert gc._first_conv_gram(m, P) == (2, 0, 2)  # O = 3 < C k^2 = 8: taken
    for target in ["embed", "logits"]:
        expected = (jacobian_by_make_vjp(m, P, X, target) ** 2).sum(axis=(1, 2))
        np.testing.assert_allclose(gc.jacobian_sq_norms(m, P, X, target=target), expected, rtol=1e-12)
    # overlapping 'same' convolutions take the direct route
    mc, Pc, _ = build("convnet")
    assert gc._first_conv_gram(mc, Pc) is None


# ---- closed forms ---------------------------------------------------------------------------------------------
def test_gc_of_an_affine_map_is_the_squared_frobenius_norm_of_its_matrix():
    m = models.Model("affine", (6,), [layers.Dense(4), layers.Dense(3)], 2)  # g(x) = (x W1 + b1) W2 + b2
    P = m.init(0, dtype="float64", backend="numpy")
    A = P[0][0] @ P[1][0]  # (D, p)
    X = np.random.default_rng(0).standard_normal((5, 6))
    assert gc.geometric_complexity(m, P, X) == pytest.approx(np.sum(A ** 2), rel=1e-12)
    assert gc.geometric_complexity(m, P, X, target="logits") == pytest.approx(np.sum((A @ P[2][0]) ** 2), rel=1e-12)
    np.testing.assert_allclose(gc.jacobian_sq_norms(m, P, X, gram=False), np.sum(A ** 2), rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_one_hidden_layer_logit_norm_matches_the_closed_form(activation):
    # logits = s(x W1 + b1) W2 + b2, i.e. V s(U x + a) with U = W1^T, V = W2^T:
    # ||J||_F^2 = s'(z)^T ((U U^T) o (V^T V)) s'(z) = s'(z)^T ((W1^T W1) o (W2 W2^T)) s'(z)
    rng = np.random.default_rng(1)
    m = models.mlp([7, 5], 4, activation)
    P = with_random_biases(m.init(2, dtype="float64", backend="numpy"), rng)
    (W1, b1), (W2, _) = P
    X = rng.standard_normal((6, 7))
    z = X @ W1 + b1
    ds = 1 - np.tanh(z) ** 2 if activation == "tanh" else (z > 0).astype(float)
    K = (W1.T @ W1) * (W2 @ W2.T)
    closed = np.einsum("ni,ij,nj->n", ds, K, ds)
    np.testing.assert_allclose(gc.jacobian_sq_norms(m, P, X, target="logits"), closed, rtol=1e-12)


# ---- estimators -----------------------------------------------------------------------------------------------
ESTIMATORS = [
    ("subset", {"n": 4}),
    ("mask", {"q": 0.3}),
    ("mask", {"q": 0.01}),
    ("outputs", {"m": 2}),
    ("hutchinson", {"probes": 2, "dist": "gaussian"}),
    ("hutchinson", {"probes": 1, "dist": "rademacher"}),
]


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(5)
    m = models.mlp([8, 6, 5], 3, "tanh")
    P = with_random_biases(m.init(4, dtype="float64", backend="numpy"), rng)
    X = rng.standard_normal((12, 8))
    return m, P, X


@pytest.mark.parametrize("method,level", ESTIMATORS, ids=[f"{m}-{list(lv.values())}" for m, lv in ESTIMATORS])
def test_each_estimator_is_unbiased_with_the_documented_variance(small_problem, method, level):
    m, P, X = small_problem
    exact = gc.geometric_complexity(m, P, X)
    var = gc.gc_estimator_variance(m, P, X, method=method, **level)
    draws = np.array([gc.geometric_complexity(m, P, X, method=method, rng=seed, **level) for seed in range(400)])
    se = np.sqrt(var / len(draws))
    assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)
    # the empirical variance agrees with the formula (loosely: heavy tails at q = 0.01)
    assert 0.5 < draws.var(ddof=1) / var < 2.0


def test_estimators_are_reproducible_and_exact_at_full_level(small_problem):
    m, P, X = small_problem
    exact = gc.geometric_complexity(m, P, X)
    assert gc.geometric_complexity(m, P, X, method="subset", n=len(X), rng=0) == pytest.approx(exact, rel=1e-12)
    assert gc.geometric_complexity(m, P, X, method="mask", q=1.0, rng=0) == pytest.approx(exact, rel=1e-12)
    assert gc.geometric_complexity(m, P, X, method="outputs", m=m.embed_dim, rng=0) == pytest.approx(exact, rel=1e-12)
    a = gc.geometric_complexity(m, P, X, method="hutchinson", probes=3, rng=np.random.default_rng(9))
    assert a == gc.geometric_complexity(m, P, X, method="hutchinson", probes=3, rng=9)
    assert a != gc.geometric_complexity(m, P, X, method="hutchinson", probes=3, rng=10)


def test_class_gc_and_directional_gc_match_the_jacobian():
    m, P, X = build("convnet")
    X = np.concatenate([X, X[::-1] * 0.5, X + 0.1])  # 9 samples
    y = np.array([2, 0, 1, 1, 2, 0, 0, 1, 2])
    J = gc.input_jacobian(m, P, X)
    sq = (J ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(gc.class_gc(m, P, X, y), [sq[y == c].mean() for c in range(3)], rtol=1e-12)
    Z = m.embed(P, X)
    means = np.stack([Z[y == c].mean(axis=0) for c in range(3)])
    D = gc.directional_gc(m, P, X, y, means)
    for i in range(3):
        for j in range(3):
            if i == j:
                assert D[i, j] == 0.0
                continue
            u = (means[j] - means[i]) / np.linalg.norm(means[j] - means[i])
            expected = (np.einsum("p,npd->nd", u, J[y == i]) ** 2).sum(axis=1).mean()
            assert D[i, j] == pytest.approx(expected, rel=1e-12)


# ---- the GC penalty -------------------------------------------------------------------------------------------
def directional_fd(f, params, v, eps=1e-6):
    plus = tree_unflatten(params, [a + eps * d for a, d in zip(tree_leaves(params), tree_leaves(v))])
    minus = tree_unflatten(params, [a - eps * d for a, d in zip(tree_leaves(params), tree_leaves(v))])
    return (float(f(plus)) - float(f(minus))) / (2 * eps)


def inner(a, b):
    return float(sum(np.vdot(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b))))


@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("name", ["mlp-tanh", "mlp-relu", "convnet"])
def test_gc_penalty_gradient_matches_finite_differences(name, target):
    m, P, X = build(name)
    f = lambda p: gc.gc_penalty(m, p, X, target=target)  # noqa: E731
    assert float(f(P)) == pytest.approx(gc.geometric_complexity(m, P, X, target=target), rel=1e-12)
    g = grad(f)(P)
    rng = np.random.default_rng(11)
    for _ in range(2):
        v = tree_unflatten(P, [rng.standard_normal(np.shape(a)) for a in tree_leaves(P)])
        fd, exact = directional_fd(f, P, v), inner(g, v)
        assert abs(fd - exact) <= 1e-6 * max(1.0, abs(exact)), (fd, exact)


def test_hutchinson_penalty_value_and_gradient_are_unbiased():
    m, P, X = build("mlp-tanh")
    exact_value = float(gc.gc_penalty(m, P, X))
    v = tree_unflatten(P, [np.random.default_rng(3).standard_normal(np.shape(a)) for a in tree_leaves(P)])
    exact_slope = inner(grad(lambda p: gc.gc_penalty(m, p, X))(P), v)
    vals, slopes = [], []
    for seed in range(300):
        f = lambda p: gc.gc_penalty(m, p, X, method="hutchinson", probes=2, rng=seed)  # noqa: E731,B023
        vals.append(float(f(P)))
        slopes.append(inner(grad(f)(P), v))
    for draws, exact in [(np.array(vals), exact_value), (np.array(slopes), exact_slope)]:
        assert abs(draws.mean() - exact) < 4 * draws.std(ddof=1) / np.sqrt(len(draws)), (draws.mean(), exact)


def test_make_gc_penalty_scales_by_strength_and_draws_fresh_reproducible_probes():
    m, P, X = build("mlp-tanh")
    exact = gc.make_gc_penalty(m, 1e-3)
    assert float(exact(P, X, None)) == pytest.approx(1e-3 * gc.geometric_complexity(m, P, X), rel=1e-12)
    p1 = gc.make_gc_penalty(m, 0.5, method="hutchinson", seed=4)
    p2 = gc.make_gc_penalty(m, 0.5, method="hutchinson", seed=4)
    first = [float(p1(P, X, None)) for _ in range(3)]
    assert first == [float(p2(P, X, None)) for _ in range(3)]  # same seed, same sequence
    assert len(set(first)) == 3 and p1.calls == 3  # successive calls draw fresh probes


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_gc_penalty_plugs_into_fit_and_lowers_gc_on_the_device_as_on_the_host(method):
    from strict_device import register, strict

    from minigcnc import train

    register()
    m, P, X = build("mlp-tanh")
    X = np.concatenate([X] * 4)
    y = np.arange(len(X)) % 3
    kw = dict(lr=0.05, batch_size=6, steps=5, progress=False)
    gc_before = gc.geometric_complexity(m, P, X)
    host = train.fit(m, P, X, y, penalty=gc.make_gc_penalty(m, 1.0, method=method, seed=1), **kw)
    Pd = tree_unflatten(P, [strict.asarray(a) for a in tree_leaves(P)])
    dev = train.fit(m, Pd, X, y, penalty=gc.make_gc_penalty(m, 1.0, method=method, seed=1), **kw)
    assert not host.diverged and gc.geometric_complexity(m, host.params, X) < gc_before
    for a, b in zip(tree_leaves(dev.params), tree_leaves(host.params)):
        np.testing.assert_allclose(to_numpy(a), b, rtol=1e-10, atol=1e-12)


# ---- the strict stand-in device -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-relu", "convnet"])
def test_gc_runs_on_the_strict_device_without_leaks_and_matches_numpy(name):
    from strict_device import StrictArray, register, strict

    register()
    m, P, X = build(name)
    Pd = tree_unflatten(P, [strict.asarray(a) for a in tree_leaves(P)])
    Xd = strict.asarray(X)
    y = np.array([0, 1, 0])

    J = gc.input_jacobian(m, Pd, Xd, chunk=2)
    assert isinstance(J, StrictArray)
    np.testing.assert_allclose(to_numpy(J), gc.input_jacobian(m, P, X), rtol=1e-12, atol=1e-14)
    for kwargs in [{}, {"gram": False}, {"target": "logits", "chunk": 2, "batch_size": 2}]:
        s = gc.jacobian_sq_norms(m, Pd, Xd, **kwargs)
        assert isinstance(s, StrictArray)
        np.testing.assert_allclose(to_numpy(s), gc.jacobian_sq_norms(m, P, X, **kwargs), rtol=1e-12)
    for method, level in [("exact", {})] + ESTIMATORS:
        rng = None if method == "exact" else 3
        level = {**level, "n": 2} if "n" in level else level  # 3 samples here
        on_dev = gc.geometric_complexity(m, Pd, Xd, method=method, rng=rng, **level)
        assert on_dev == pytest.approx(gc.geometric_complexity(m, P, X, method=method, rng=rng, **level), rel=1e-12)
    np.testing.assert_allclose(gc.class_gc(m, Pd, Xd, strict.asarray(y)), gc.class_gc(m, P, X, y), rtol=1e-12)
    Z = m.embed(P, X)
    means = np.stack([Z[y == c].mean(axis=0) for c in range(2)])
    np.testing.assert_allclose(gc.directional_gc(m, Pd, Xd, strict.asarray(y), strict.asarray(means)),
                               gc.directional_gc(m, P, X, y, means), rtol=1e-12)
    for kwargs in [{}, {"method": "hutchinson", "probes": 2, "rng": 1}, {"target": "logits"}]:
        g_dev = grad(lambda p: gc.gc_penalty(m, p, Xd, **kwargs))(Pd)
        g_host = grad(lambda p: gc.gc_penalty(m, p, X, **kwargs))(P)
        for a, b in zip(tree_leaves(g_dev), tree_leaves(g_host)):
            assert isinstance(a, StrictArray)
            np.testing.assert_allclose(to_numpy(a), b, rtol=1e-10, atol=1e-12)


# ---- bad inputs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,message", [
    ({"method": "jackknife"}, "method must be one of 'exact', 'subset'"),
    ({"method": "subset"}, "method='subset' needs n="),
    ({"method": "subset", "n": 13, "rng": 0}, "n must be at most the number of samples N=12"),
    ({"method": "subset", "n": 0, "rng": 0}, "n must be a positive integer"),
    ({"method": "mask", "rng": 0}, "method='mask' needs q="),
    ({"method": "mask", "q": 0.0, "rng": 0}, r"q must be a keep probability in \(0, 1\]"),
    ({"method": "mask", "q": 1.5, "rng": 0}, r"q must be a keep probability in \(0, 1\]"),
    ({"method": "outputs", "m": 0, "rng": 0}, r"m must be an integer in \[1, 5\]"),
    ({"method": "outputs", "m": 6, "rng": 0}, r"m must be an integer in \[1, 5\]"),
    ({"method": "hutchinson", "probes": 0, "rng": 0}, "probes must be a positive integer"),
    ({"method": "hutchinson", "dist": "uniform", "rng": 0}, "dist must be 'gaussian' or 'rademacher'"),
    ({"method": "hutchinson"}, "needs rng="),
    ({"method": "mask", "q": 0.5, "rng": "seed"}, "rng must be a numpy.random.Generator or an int seed"),
    ({"method": "exact", "n": 5}, "method='exact' takes no level parameter; got n=5"),
    ({"method": "outputs", "m": 2, "q": 0.5, "rng": 0}, "method='outputs' takes m=; got q=0.5"),
    ({"target": "hidden"}, "target must be 'embed' or 'logits'"),
    ({"chunk": 0}, "chunk must be a positive integer"),
])
def test_bad_arguments_raise_value_errors_that_name_the_parameter(small_problem, kwargs, message):
    m, P, X = small_problem
    with pytest.raises(ValueError, match=message):
        gc.geometric_complexity(m, P, X, **kwargs)


def test_bad_penalty_and_class_arguments_raise_value_errors(small_problem):
    m, P, X = small_problem
    with pytest.raises(ValueError, match="gc_penalty method must be 'exact' or 'hutchinson'"):
        gc.gc_penalty(m, P, X, method="subset")
    with pytest.raises(ValueError, match="needs rng="):
        gc.gc_penalty(m, P, X, method="hutchinson")
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        gc.make_gc_penalty(m, -1.0)
    y = np.arange(12) % 3
    with pytest.raises(ValueError, match=r"means must have shape \(k, p\) = \(3, 5\)"):
        gc.directional_gc(m, P, X, y, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="two equal class means"):
        gc.directional_gc(m, P, X, y, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="one label per sample"):
        gc.class_gc(m, P, X, y[:5])
