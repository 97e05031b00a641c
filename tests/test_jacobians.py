"""jacobians.py: the batched transpose-Jacobian engine against the reference path, and its pass planning.

Reference (``gc_problems.reference_jacobian``): autograd ``make_vjp`` with one-hot cotangents, one backward
pass per output coordinate, independent of the engine; central finite differences where cheap. Every fast
path (the top dense layer without GEMM, row compaction, the first-layer Gram saving, chunks, sample batches,
threads, the strict stand-in device) must agree with it in float64.
"""
import numpy as np
import pytest

from gc_problems import MODELS, build, jacobian_by_finite_differences, reference_jacobian, rel_err
from minigcnc import gc, jacobians
from minigcnc.backend import to_numpy, tree_leaves, tree_unflatten


# ---- exact Jacobians against the reference -------------------------------------------------------------------
@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("name", MODELS)
def test_input_jacobian_equals_autograd_one_hot_vjps_and_finite_differences(name, target):
    m, P, X = build(name)
    J = jacobians.input_jacobian(m, P, X, target=target)
    q = m.embed_dim if target == "embed" else m.n_classes
    assert J.shape == (X.shape[0], q, m.input_dim)
    assert rel_err(J, reference_jacobian(m, P, X, target)) < 1e-8
    assert rel_err(J, jacobian_by_finite_differences(m, P, X, target)) < 1e-5
    np.testing.assert_allclose(jacobians.input_jacobian(m, P, X, target=target, chunk=2), J, rtol=0, atol=1e-13)


def test_gc_re_exports_the_engines_public_jacobian_functions():
    assert gc.input_jacobian is jacobians.input_jacobian
    assert gc.jacobian_sq_norms is jacobians.jacobian_sq_norms


@pytest.mark.parametrize("target", ["embed", "logits"])
@pytest.mark.parametrize("name", ["mlp-relu", "mlp-tanh", "convnet"])
def test_jacobian_sq_norms_equal_the_sum_of_squares_of_the_reference_jacobian(name, target):
    m, P, X = build(name)
    expected = (reference_jacobian(m, P, X, target) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose((jacobians.input_jacobian(m, P, X, target=target) ** 2).sum(axis=(1, 2)), expected,
                               rtol=1e-12)
    for kwargs in [{}, {"gram": False}, {"chunk": 2, "batch_size": 1}, {"gram": False, "chunk": 3, "batch_size": 2}]:
        np.testing.assert_allclose(jacobians.jacobian_sq_norms(m, P, X, target=target, **kwargs), expected, rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_threaded_sample_batches_give_the_reference_norms_in_the_order_of_x(monkeypatch, threads):
    monkeypatch.setattr(jacobians, "HOST_THREADS", threads)
    m, P, _ = build("convnet")
    X = np.random.default_rng(4).standard_normal((7, 1, 8, 8))
    expected = (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(jacobians.jacobian_sq_norms(m, P, X, batch_size=2, chunk=3), expected, rtol=1e-12)


def test_run_passes_keeps_the_order_of_the_tasks_with_threads(monkeypatch):
    monkeypatch.setattr(jacobians, "HOST_THREADS", 4)
    tasks = list(jacobians.ranges(50, 7))
    assert tasks[0] == (0, 7) and tasks[-1] == (49, 50)
    assert jacobians.run_passes(lambda t: t[0] * 10, tasks, on_host=True) == [a * 10 for a, _ in tasks]
    assert jacobians.run_passes(lambda t: t[1], tasks, on_host=False) == [b for _, b in tasks]


def test_rows_of_inactive_top_relu_units_are_dropped_and_the_norms_stay_exact():
    m, P, X = build("mlp-relu")
    Z, caches, _ = jacobians.forward(m, P, X)
    d = caches[-1]  # (N, p) ReLU derivative of the embedding layer
    assert 0 < d.sum() < d.size  # some units inactive, some active
    W = P[-2][0]
    T = jacobians._compact_rows(W.T.copy(), d, np)
    assert T.shape == (X.shape[0], int(d.sum(axis=1).max()), W.shape[0])
    full = d[:, :, None] * W.T[None]  # every identity row through the top layer
    np.testing.assert_allclose((T ** 2).sum(axis=(1, 2)), (full ** 2).sum(axis=(1, 2)), rtol=1e-12)
    assert jacobians._compact_rows(W.T.copy(), np.ones_like(d), np) is None  # nothing to drop
    # through the public pull-back: fewer rows, the same squared norms as the reference
    rows = ("rows", np.arange(m.embed_dim))
    Jc = jacobians.pull_back(m, P, caches, Z, rows, "embed", compact=True)
    assert Jc.shape[1] < m.embed_dim
    np.testing.assert_allclose((Jc ** 2).sum(axis=(1, 2)), (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2)),
                               rtol=1e-12)


def test_samples_batched_by_active_count_come_back_in_their_own_order():
    m, P, _ = build("mlp-relu")
    X = np.random.default_rng(2).standard_normal((24, 9))
    perm = jacobians._order_by_active_rows(m, P, X, 5)
    assert perm is not None and np.any(perm != np.arange(24))  # the presort really reorders
    expected = (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(jacobians.jacobian_sq_norms(m, P, X, batch_size=5), expected, rtol=1e-12)
    np.testing.assert_allclose(gc.class_gc(m, P, X, np.arange(24) % 4, batch_size=5),
                               [expected[c::4].mean() for c in range(4)], rtol=1e-12)


def test_the_gram_route_is_taken_when_the_first_dense_layer_is_narrower_than_the_input():
    m, P, _ = build("mlp-relu")
    assert jacobians._dense_gram_applies(m, P)
    m2, P2, _ = build("mlp-tanh")
    assert not jacobians._dense_gram_applies(m2, P2)
    mc, Pc, _ = build("convnet")  # a convolutional stem takes the direct route
    assert not jacobians._dense_gram_applies(mc, Pc)


@pytest.mark.parametrize("cot", ["shared", "per_sample"])
def test_shared_and_per_sample_cotangents_give_the_norms_of_v_times_j(cot):
    m, P, X = build("mlp-relu")
    rng = np.random.default_rng(8)
    J = reference_jacobian(m, P, X)  # (N, p, D)
    V = rng.standard_normal((2, m.embed_dim)) if cot == "shared" else rng.standard_normal((3, 2, m.embed_dim))
    VJ = np.einsum("rp,npd->nrd", V, J) if cot == "shared" else np.einsum("nrp,npd->nrd", V, J)
    Z, caches, _ = jacobians.forward(m, P, X)
    for gram in (True, False):
        per_row = jacobians.sq_norms(m, P, Z, caches, (cot, V), "embed", gram=gram, per_row=True)
        np.testing.assert_allclose(per_row, (VJ ** 2).sum(axis=2), rtol=1e-12)


def test_jacobian_blocks_tile_every_sample_and_output_row():
    m, P, X = build("convnet")
    X = np.concatenate([X, X + 0.2])  # 6 samples
    blocks = list(jacobians.jacobian_blocks(m, P, m.check_input(X), "logits", chunk=2, batch_size=4))
    assert [b.shape[:2] for b in blocks] == [(4, 2), (4, 1), (2, 2), (2, 1)]
    J = np.concatenate([np.concatenate(blocks[:2], axis=1), np.concatenate(blocks[2:], axis=1)])
    assert rel_err(J, reference_jacobian(m, P, X, "logits")) < 1e-8


# ---- pass planning ---------------------------------------------------------------------------------------------
HOST_PARAMS = [(np.zeros((2, 2)), np.zeros(2))]


def test_plan_balances_row_chunks_within_the_host_budget():
    width = jacobians.MAX_PASS_ELEMENTS_HOST // 37  # 37 rows of one sample fit a pass
    assert jacobians.plan(HOST_PARAMS, 1000, 128, (width, False)) == (1, 32)  # 128 rows -> 4 x 32, not 3 x 37 + 17
    n, c = jacobians.plan(HOST_PARAMS, 1000, 10, (width, False))
    assert c == 10 and n * c * width <= jacobians.MAX_PASS_ELEMENTS_HOST and n == 3
    assert jacobians.plan(HOST_PARAMS, 2, 10, (width, False)) == (2, 10)  # never more samples than N
    assert jacobians.plan(HOST_PARAMS, 1000, 128, (width, False), chunk=16, batch_size=7) == (7, 16)


def test_plan_uses_the_smaller_budget_for_convolutions_and_the_larger_one_on_a_device():
    from strict_device import register, strict

    width = jacobians.MAX_PASS_ELEMENTS_HOST_CONV // 8
    assert jacobians.plan(HOST_PARAMS, 1000, 8, (width, True)) == (1, 8)
    assert jacobians.plan(HOST_PARAMS, 1000, 8, (width, False)) == (4, 8)
    register()
    dev = [(strict.asarray(np.zeros((2, 2))), strict.asarray(np.zeros(2)))]
    expected_n = jacobians.MAX_PASS_ELEMENTS_DEVICE // width // 8
    assert jacobians.plan(dev, 10**6, 8, (width, True)) == (expected_n, 8)


def test_forward_sizes_a_pass_by_the_widest_array_of_the_backward_pass():
    m, P, X = build("mlp-tanh")
    Z, caches, (width, conv) = jacobians.forward(m, P, X)
    assert Z.shape == (3, m.embed_dim) and len(caches) == len(m.layers)
    assert (width, conv) == (7, False)  # the widest activation: the 7 hidden units
    mc, Pc, Xc = build("convnet")  # conv 1 -> 3 channels at 8x8, pool, conv 3 -> 4 at 4x4, dense 5
    _, _, sizing = jacobians.forward(mc, Pc, Xc)
    assert sizing == (8 * 8 * 1 * 3 * 3, True)  # the first conv's patch matrix: 64 positions x C k k = 9


# ---- bad inputs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [jacobians.input_jacobian, jacobians.jacobian_sq_norms])
def test_a_nan_in_x_is_refused_naming_x_and_the_first_bad_index(fn):
    m, P, X = build("convnet")
    X = X.copy()
    X[1, 0, 2, 5] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 non-finite values .*the first at index \(1, 0, 2, 5\)"):
        fn(m, P, X)


def test_bad_chunk_and_target_raise_naming_the_parameter():
    m, P, X = build("mlp-tanh")
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        jacobians.input_jacobian(m, P, X, chunk=0)
    with pytest.raises((TypeError, ValueError), match="batch_size must be an integer >= 1"):
        jacobians.jacobian_sq_norms(m, P, X, batch_size=1.5)
    with pytest.raises(ValueError, match="target must be 'embed' or 'logits'"):
        jacobians.jacobian_sq_norms(m, P, X, target="hidden")


# ---- the strict stand-in device --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-relu", "convnet"])
def test_the_engine_runs_on_the_strict_device_without_leaks_and_matches_numpy(name):
    from strict_device import StrictArray, register, strict

    register()
    m, P, X = build(name)
    Pd = tree_unflatten(P, [strict.asarray(a) for a in tree_leaves(P)])
    Xd = strict.asarray(X)
    J = jacobians.input_jacobian(m, Pd, Xd, chunk=2)
    assert isinstance(J, StrictArray)
    np.testing.assert_allclose(to_numpy(J), jacobians.input_jacobian(m, P, X), rtol=1e-12, atol=1e-14)
    for kwargs in [{}, {"gram": False}, {"target": "logits", "chunk": 2, "batch_size": 2}]:
        s = jacobians.jacobian_sq_norms(m, Pd, Xd, **kwargs)
        assert isinstance(s, StrictArray)
        np.testing.assert_allclose(to_numpy(s), jacobians.jacobian_sq_norms(m, P, X, **kwargs), rtol=1e-12)
    Xn = X.copy()
    Xn[2].flat[3] = np.inf
    with pytest.raises(ValueError, match=r"X contains 1 non-finite values"):  # counted without a leak
        jacobians.jacobian_sq_norms(m, Pd, strict.asarray(Xn))
