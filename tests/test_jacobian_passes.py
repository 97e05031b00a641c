"""jacobian_passes.py: pass planning, threads, row compaction, the presort and the Gram route keep the norms exact.

Reference (``gc_problems.reference_jacobian``): autograd ``make_vjp`` with one-hot cotangents, independent of the
engine. Each saving is checked alone here and through ``jacobians.jacobian_sq_norms``, in float64.
"""
import numpy as np
import pytest

from gc_problems import build, reference_jacobian
from minigcnc import gc, jacobian_passes, jacobians
from minigcnc.jacobians import Cotangents


# ---- threads ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 3])
def test_threaded_sample_batches_give_the_reference_norms_in_the_order_of_x(monkeypatch, threads):
    monkeypatch.setattr(jacobian_passes, "HOST_THREADS", threads)
    m, P, _ = build("convnet")
    X = np.random.default_rng(4).standard_normal((7, 1, 8, 8))
    expected = (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(jacobians.jacobian_sq_norms(m, P, X, batch_size=2, chunk=3), expected, rtol=1e-12)


def test_run_passes_keeps_the_order_of_the_tasks_with_threads(monkeypatch):
    monkeypatch.setattr(jacobian_passes, "HOST_THREADS", 4)
    tasks = list(jacobian_passes.ranges(50, 7))
    assert tasks[0] == (0, 7) and tasks[-1] == (49, 50)
    assert jacobian_passes.run_passes(lambda t: t[0] * 10, tasks, on_host=True) == [a * 10 for a, _ in tasks]
    assert jacobian_passes.run_passes(lambda t: t[1], tasks, on_host=False) == [b for _, b in tasks]


# ---- the top dense layer and row compaction --------------------------------------------------------------------
def test_rows_of_inactive_top_relu_units_are_dropped_and_the_norms_stay_exact():
    m, P, X = build("mlp-relu")
    Z, caches = jacobians.forward(m, P, X)
    d = caches[-1]  # (N, p) ReLU derivative of the embedding layer
    assert 0 < d.sum() < d.size  # some units inactive, some active
    W = P[-2][0]
    T = jacobian_passes.compact_rows(W.T.copy(), d, np)
    assert T.shape == (X.shape[0], int(d.sum(axis=1).max()), W.shape[0])
    full = d[:, :, None] * W.T[None]  # every identity row through the top layer
    np.testing.assert_allclose((T ** 2).sum(axis=(1, 2)), (full ** 2).sum(axis=(1, 2)), rtol=1e-12)
    assert jacobian_passes.compact_rows(W.T.copy(), np.ones_like(d), np) is None  # nothing to drop
    # through the public pull-back: fewer rows, the same squared norms as the reference
    rows = Cotangents.rows(np.arange(m.embed_dim))
    Jc = jacobians.pull_back_fast(m, P, caches, Z, rows, "embed", compact=True)
    assert Jc.shape[1] < m.embed_dim
    np.testing.assert_allclose((Jc ** 2).sum(axis=(1, 2)), (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2)),
                               rtol=1e-12)


def test_the_top_dense_jtp_of_identity_rows_is_the_layers_own_jtp():
    m, P, X = build("mlp-tanh")
    _, caches = jacobians.forward(m, P, X)
    layer, W, d = m.layers[-1], P[-2][0], caches[-1]
    E = np.eye(m.embed_dim)[[0, 2]]  # rows 0 and 2 of the identity
    T = jacobian_passes.top_dense_jtp("rows", E, False, W, d, len(X), compact=False)
    np.testing.assert_allclose(T, layer.jtp(P[-2], d, np.broadcast_to(E, (len(X),) + E.shape)), rtol=1e-14, atol=0)


def test_samples_batched_by_active_count_come_back_in_their_own_order():
    m, P, _ = build("mlp-relu")
    X = np.random.default_rng(2).standard_normal((24, 9))
    top_derivative = lambda s, e: jacobians.forward(m, P, X[s:e])[1][-1]  # noqa: E731
    perm = jacobian_passes.order_by_active_rows(m, top_derivative, 24, 5, on_host=True)
    assert perm is not None and np.any(perm != np.arange(24))  # the presort really reorders
    counts = (jacobians.forward(m, P, X)[1][-1] != 0).sum(axis=1)
    assert np.all(np.diff(counts[perm]) >= 0)
    expected = (reference_jacobian(m, P, X) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(jacobians.jacobian_sq_norms(m, P, X, batch_size=5), expected, rtol=1e-12)
    np.testing.assert_allclose(gc.class_gc(m, P, X, np.arange(24) % 4, batch_size=5),
                               [expected[c::4].mean() for c in range(4)], rtol=1e-12)
    mt, Pt, Xt = build("mlp-tanh")
    assert jacobian_passes.order_by_active_rows(mt, lambda s, e: jacobians.forward(mt, Pt, Xt[s:e])[1][-1], 3, 1,
                                                on_host=True) is None  # tanh: no zero derivatives


# ---- the Gram route --------------------------------------------------------------------------------------------
def test_the_gram_route_is_taken_when_the_first_dense_layer_is_narrower_than_the_input():
    m, P, _ = build("mlp-relu")
    assert jacobian_passes.dense_gram_applies(m, P)
    m2, P2, _ = build("mlp-tanh")
    assert not jacobian_passes.dense_gram_applies(m2, P2)
    mc, Pc, _ = build("convnet")  # a convolutional stem takes the direct route
    assert not jacobian_passes.dense_gram_applies(mc, Pc)


def test_gram_sq_norms_are_the_squared_norms_of_the_rows_pulled_through_the_first_layer():
    m, P, X = build("mlp-relu")
    Z, caches = jacobians.forward(m, P, X)
    rows = Cotangents.rows(np.arange(m.embed_dim))
    T = jacobians.pull_back_fast(m, P, caches, Z, rows, "embed", first=1)  # (N, p, h)
    J = jacobians.pull_back(m, P, caches, Z, rows, "embed")  # (N, p, D)
    per_row = jacobian_passes.gram_sq_norms(m.layers[0], P[0], caches[0], T, per_row=True)
    np.testing.assert_allclose(per_row, (J ** 2).sum(axis=2), rtol=1e-12)
    np.testing.assert_allclose(jacobian_passes.gram_sq_norms(m.layers[0], P[0], caches[0], T),
                               (J ** 2).sum(axis=(1, 2)), rtol=1e-12)


# ---- pass planning ---------------------------------------------------------------------------------------------
HOST_PARAMS = [(np.zeros((2, 2)), np.zeros(2))]


def test_plan_balances_row_chunks_within_the_host_budget():
    width = jacobian_passes.MAX_PASS_ELEMENTS_HOST // 37  # 37 rows of one sample fit a pass
    assert jacobian_passes.plan(HOST_PARAMS, 1000, 128, (width, False)) == (1, 32)  # 4 x 32 rows, not 3 x 37 + 17
    n, c = jacobian_passes.plan(HOST_PARAMS, 1000, 10, (width, False))
    assert c == 10 and n * c * width <= jacobian_passes.MAX_PASS_ELEMENTS_HOST and n == 3
    assert jacobian_passes.plan(HOST_PARAMS, 2, 10, (width, False)) == (2, 10)  # never more samples than N
    assert jacobian_passes.plan(HOST_PARAMS, 1000, 128, (width, False), chunk=16, batch_size=7) == (7, 16)


def test_plan_uses_the_smaller_budget_for_convolutions_and_the_larger_one_on_a_device():
    from strict_device import register, strict

    width = jacobian_passes.MAX_PASS_ELEMENTS_HOST_CONV // 8
    assert jacobian_passes.plan(HOST_PARAMS, 1000, 8, (width, True)) == (1, 8)
    assert jacobian_passes.plan(HOST_PARAMS, 1000, 8, (width, False)) == (4, 8)
    register()
    dev = [(strict.asarray(np.zeros((2, 2))), strict.asarray(np.zeros(2)))]
    expected_n = jacobian_passes.MAX_PASS_ELEMENTS_DEVICE // width // 8
    assert jacobian_passes.plan(dev, 10**6, 8, (width, True)) == (expected_n, 8)


def test_sizing_takes_the_widest_activation_or_patch_matrix():
    m, P, _ = build("mlp-tanh")  # 5 -> 7 -> 4
    assert jacobian_passes.sizing(m, P, [(5,), (7,), (4,)]) == (7, False)
    mr, Pr, Xr = build("resnet18")  # a residual block counts 9 x its output (the first: 4 x 8 x 8)
    assert jacobians.pass_sizing(mr, Pr, Xr) == (9 * 4 * 8 * 8, True)
