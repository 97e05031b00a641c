"""gc.py: GC's definition, its unbiased estimators, class and directional GC, the GC penalty (docs/theory.md#geometric-complexity).

Oracles: ``reference_gc`` (GC as defined, by ``autograd.jacobian`` per sample, independent of the pull-back
engine, whose own tests against autograd ``make_vjp`` and finite differences are in test_jacobians.py), closed forms (affine maps, one hidden layer), finite differences
of the penalty, the estimators' documented variances, and the strict stand-in device. All in float64.
"""
import numpy as np
import pytest
from autograd import grad

from conftest import SMALL, perturbed_params
from gc_problems import build, with_random_biases
from minigcnc import gc, layers, models
from minigcnc.backend import to_numpy, tree_leaves, tree_unflatten


# ---- the definition -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("kind", ["mlp-relu", "mlp-tanh", "convnet", "resnet18"])
def test_exact_gc_by_the_fast_passes_equals_the_definition(rng, kind, target):
    m = SMALL[kind]()
    P = perturbed_params(m, rng)  # float64; residual scales away from 0
    X = rng.standard_normal((7,) + m.input_shape)
    J = gc.input_jacobian(m, P, X, target=target)
    reference = gc.reference_gc(m, P, X, target=target)
    assert reference == pytest.approx(np.mean(np.sum(J ** 2, axis=(1, 2))), rel=1e-12) and reference > 0  # engine's J
    for kwargs in [{}, {"chunk": 2, "batch_size": 3}]:
        assert gc.geometric_complexity(m, P, X, method="exact", target=target, **kwargs) == \
            pytest.approx(reference, rel=1e-12)


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
    exact = gc.reference_gc(m, P, X)
    var = gc.gc_estimator_variance(m, P, X, method=method, **level)
    draws = np.array([gc.geometric_complexity(m, P, X, method=method, rng=seed, **level) for seed in range(400)])
    se = np.sqrt(var / len(draws))
    assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)
    # the empirical variance agrees with the formula (loosely: heavy tails at q = 0.01)
    assert 0.5 < draws.var(ddof=1) / var < 2.0


def test_estimators_are_reproducible_and_exact_at_full_level(small_problem):
    m, P, X = small_problem
    exact = gc.reference_gc(m, P, X)
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
    np.testing.assert_allclose(gc.class_gc(m, P, X, y), [gc.reference_gc(m, P, X[y == c]) for c in range(3)],
                               rtol=1e-12)
    J = gc.input_jacobian(m, P, X)
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
    assert float(f(P)) == pytest.approx(gc.reference_gc(m, P, X, target=target), rel=1e-12)
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


def test_make_gc_penalty_scales_by_strength_and_draws_its_probes_from_seed_and_step():
    m, P, X = build("mlp-tanh")
    exact = gc.make_gc_penalty(m, 1e-3)
    assert float(exact(P, X, None)) == pytest.approx(1e-3 * gc.reference_gc(m, P, X), rel=1e-12)
    assert float(exact(P, X, None, step=7)) == float(exact(P, X, None))  # the exact penalty ignores the step
    p1 = gc.make_gc_penalty(m, 0.5, method="hutchinson", seed=4)
    p2 = gc.make_gc_penalty(m, 0.5, method="hutchinson", seed=4)
    assert p1.takes_step and exact.takes_step  # so train.fit passes the step
    first = [float(p1(P, X, None, step=t)) for t in range(3)]
    assert first == [float(p2(P, X, None, step=t)) for t in range(3)]  # same seed, same probes
    assert first == [float(p1(P, X, None, step=t)) for t in range(3)]  # a pure function of (params, batch, step)
    assert len(set(first)) == 3  # successive steps draw fresh probes
    by_hand = gc.gc_penalty(m, P, X, method="hutchinson", rng=np.random.default_rng([4, 2]))
    assert first[2] == 0.5 * float(by_hand)  # step t's probes come from default_rng([seed, t])


def test_two_seeds_draw_different_hutchinson_probes_at_the_same_step():
    m, P, X = build("mlp-tanh")
    p0, p1 = (gc.make_gc_penalty(m, 1.0, method="hutchinson", seed=s) for s in (0, 1))
    assert float(p0(P, X, None, step=3)) != float(p1(P, X, None, step=3))


def test_train_run_seeds_the_gc_penalty_with_the_runs_seed(monkeypatch):
    from minigcnc.experiments import run
    from minigcnc.experiments.config import RunConfig

    class Stop(Exception):
        pass

    seen = []

    def record(model, strength, **kw):  # stands in for make_gc_penalty and stops the run before training
        seen.append(kw)
        raise Stop

    monkeypatch.setattr(gc, "make_gc_penalty", record)
    for seed in (0, 1):
        config = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=2,
                           gc_reg=1e-3, gc_reg_method="hutchinson", seed=seed)
        with pytest.raises(Stop):
            run.train_run(config, progress=False)
    assert [(kw["method"], kw["seed"]) for kw in seen] == [("hutchinson", 0), ("hutchinson", 1)]


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
    ({"method": "subset", "n": 0, "rng": 0}, "n must be an integer >= 1"),
    ({"method": "mask", "rng": 0}, "method='mask' needs q="),
    ({"method": "mask", "q": 0.0, "rng": 0}, r"q must be a keep probability in \(0, 1\]"),
    ({"method": "mask", "q": 1.5, "rng": 0}, r"q must be a keep probability in \(0, 1\]"),
    ({"method": "outputs", "m": 0, "rng": 0}, r"m must be an integer in \[1, 5\]"),
    ({"method": "outputs", "m": 6, "rng": 0}, r"m must be an integer in \[1, 5\]"),
    ({"method": "hutchinson", "probes": 0, "rng": 0}, "probes must be an integer >= 1"),
    ({"method": "hutchinson", "dist": "uniform", "rng": 0}, "dist must be 'gaussian' or 'rademacher'"),
    ({"method": "hutchinson"}, "needs rng="),
    ({"method": "mask", "q": 0.5, "rng": "seed"}, "rng must be a numpy.random.Generator or an int seed"),
    ({"method": "exact", "n": 5}, "method='exact' takes no level parameter; got n=5"),
    ({"method": "outputs", "m": 2, "q": 0.5, "rng": 0}, "method='outputs' takes m=; got q=0.5"),
    ({"target": "hidden"}, "target must be 'embed' or 'logits'"),
    ({"chunk": 0}, "chunk must be an integer >= 1"),
])
def test_bad_arguments_raise_value_errors_that_name_the_parameter(small_problem, kwargs, message):
    m, P, X = small_problem
    # a wrong type (an rng that is a string) is a TypeError, a bad value a ValueError (checks.py)
    with pytest.raises((TypeError, ValueError), match=message):
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


GC_CALLS = {
    "geometric_complexity": lambda m, P, X, y, mu: gc.geometric_complexity(m, P, X),
    "geometric_complexity-subset": lambda m, P, X, y, mu: gc.geometric_complexity(m, P, X, method="subset", n=2, rng=0),
    "gc_value": lambda m, P, X, y, mu: gc.gc_value(m, P, X),
    "reference_gc": lambda m, P, X, y, mu: gc.reference_gc(m, P, X),
    "class_gc": lambda m, P, X, y, mu: gc.class_gc(m, P, X, y),
    "directional_gc": lambda m, P, X, y, mu: gc.directional_gc(m, P, X, y, mu),
    "jacobian_sq_norms": lambda m, P, X, y, mu: gc.jacobian_sq_norms(m, P, X),
    "input_jacobian": lambda m, P, X, y, mu: gc.input_jacobian(m, P, X),
    "gc_estimator_variance": lambda m, P, X, y, mu: gc.gc_estimator_variance(m, P, X, method="mask", q=0.5),
    "gc_penalty": lambda m, P, X, y, mu: gc.gc_penalty(m, P, X),
}


@pytest.mark.parametrize("call", list(GC_CALLS))
def test_a_nan_sample_is_refused_naming_x_and_its_index_not_counted_as_zero(small_problem, call):
    m, P, X = small_problem
    y = np.arange(12) % 3
    Z = m.embed(P, X)
    mu = np.stack([Z[y == c].mean(axis=0) for c in range(3)])
    X = X.copy()
    X[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 non-finite values \(NaN or inf\) out of 96; the first at index "
                                         r"\(4, 2\)"):
        GC_CALLS[call](m, P, X, y, mu)


def test_directional_gc_names_a_class_that_means_has_and_y_lacks(small_problem):
    m, P, X = small_problem
    y = np.arange(12) % 3  # classes 0, 1, 2
    means = np.random.default_rng(0).standard_normal((4, 5))  # rows for classes 0..3
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] of means are absent from y"):
        gc.directional_gc(m, P, X, y, means)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] occur in labels .* but not in y"):
        gc.directional_gc(m, P, X, y, means, labels=np.arange(4))


def test_directional_gc_matches_rows_of_means_to_classes_by_label(small_problem):
    m, P, X = small_problem
    y = np.array([5, 9, 7] * 4)
    means = np.random.default_rng(1).standard_normal((3, 5))  # rows in sorted label order 5, 7, 9
    expected = gc.directional_gc(m, P, X, y, means)
    shuffled = gc.directional_gc(m, P, X, y, means[[2, 0, 1]], labels=np.array([9, 5, 7]))
    np.testing.assert_allclose(shuffled, expected, rtol=1e-12)


# ---- library edges (issue 33 item 8) -------------------------------------------------------------------------
def test_geometric_complexity_refuses_params_of_another_model():
    model, other = models.mlp([6, 8, 5], 3), models.mlp([6, 9, 5], 3)
    with pytest.raises(ValueError, match="params were built for another model"):
        gc.geometric_complexity(model, other.init(0), np.zeros((4, 6)))


@pytest.mark.parametrize("method,kw", [("exact", {}), ("mask", {"q": 0.5, "rng": 0}), ("subset", {"n": 1, "rng": 0})])
def test_geometric_complexity_of_zero_samples_says_so(method, kw):
    model = models.mlp([6, 8, 5], 3)
    with pytest.raises(ValueError, match="X has 0 samples; GC is a mean over samples"):
        gc.geometric_complexity(model, model.init(0), np.zeros((0, 6)), method=method, **kw)
