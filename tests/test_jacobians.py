"""jacobians.py: exact input Jacobians and their squared norms against the reference path; the ``Cotangents`` type.

Reference (``gc_problems.reference_jacobian``): autograd ``make_vjp`` with one-hot cotangents, one backward
pass per output coordinate, independent of the engine; central finite differences where cheap. The norms by the
fast route (``jacobian_passes``: chunks, sample batches, the savings; each tested alone in test_jacobian_passes.py)
and on the strict stand-in device must agree with it in float64.
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


@pytest.mark.parametrize("cot", ["shared", "per_sample"])
def test_shared_and_per_sample_cotangents_give_the_norms_of_v_times_j(cot):
    m, P, X = build("mlp-relu")
    rng = np.random.default_rng(8)
    J = reference_jacobian(m, P, X)  # (N, p, D)
    V = rng.standard_normal((2, m.embed_dim)) if cot == "shared" else rng.standard_normal((3, 2, m.embed_dim))
    VJ = np.einsum("rp,npd->nrd", V, J) if cot == "shared" else np.einsum("nrp,npd->nrd", V, J)
    Z, caches = jacobians.forward(m, P, X)
    for gram in (True, False):
        per_row = jacobians.sq_norms(m, P, Z, caches, jacobians.Cotangents(cot, V), "embed", gram=gram, per_row=True)
        np.testing.assert_allclose(per_row, (VJ ** 2).sum(axis=2), rtol=1e-12)


def test_cotangents_are_made_by_their_constructors_and_cut_into_the_parts_of_a_pass():
    V = np.arange(24.0).reshape(2, 3, 4)  # 2 samples, 3 cotangents, q = 4
    rows, shared, per_sample = (jacobians.Cotangents.rows([1, 3]), jacobians.Cotangents.shared(V[0]),
                                jacobians.Cotangents.per_sample(V))
    assert (rows.kind, shared.kind, per_sample.kind) == ("rows", "shared", "per_sample")
    assert (rows.count, shared.count, per_sample.count) == (2, 3, 3)
    np.testing.assert_array_equal(rows.select(1, 2).values, [3])
    np.testing.assert_array_equal(shared.select(0, 2, slice(1, 2)).values, V[0, :2])  # the same for every sample
    np.testing.assert_array_equal(per_sample.select(1, 3, slice(1, 2)).values, V[1:2, 1:3])
    with pytest.raises(ValueError, match="Cotangents kind must be 'rows', 'shared' or 'per_sample'"):
        jacobians.Cotangents("columns", V)


def test_jacobian_blocks_tile_every_sample_and_output_row():
    m, P, X = build("convnet")
    X = np.concatenate([X, X + 0.2])  # 6 samples
    blocks = list(jacobians.jacobian_blocks(m, P, m.check_input(X), "logits", chunk=2, batch_size=4))
    assert [b.shape[:2] for b in blocks] == [(4, 2), (4, 1), (2, 2), (2, 1)]
    J = np.concatenate([np.concatenate(blocks[:2], axis=1), np.concatenate(blocks[2:], axis=1)])
    assert rel_err(J, reference_jacobian(m, P, X, "logits")) < 1e-8


def test_pass_sizing_is_the_widest_array_of_the_backward_pass():
    m, P, X = build("mlp-tanh")
    Z, caches = jacobians.forward(m, P, X)
    assert Z.shape == (3, m.embed_dim) and len(caches) == len(m.layers)
    assert jacobians.pass_sizing(m, P, m.check_input(X)) == (7, False)  # the widest activation: 7 hidden units
    mc, Pc, Xc = build("convnet")  # conv 1 -> 3 channels at 8x8, pool, conv 3 -> 4 at 4x4, dense 5
    assert jacobians.pass_sizing(mc, Pc, mc.check_input(Xc)) == (8 * 8 * 1 * 3 * 3, True)  # the first conv's patches


@pytest.mark.parametrize("kind", ["mlp-relu", "mlp-tanh", "convnet"])
@pytest.mark.parametrize("target", ["embed", "logits"])
def test_the_plain_pull_back_equals_the_fast_one_bit_for_bit(kind, target):
    """The definition (every layer's jtp) and the route with the top dense layer's elementwise saving."""
    m, P, X = build(kind)
    Z, caches = jacobians.forward(m, P, X)
    q = jacobians.output_dim(m, target)
    for cot in (jacobians.Cotangents.rows(np.arange(q)), jacobians.Cotangents.rows([q - 1, 0]),
                jacobians.Cotangents.shared(np.random.default_rng(1).standard_normal((2, q)))):
        plain = jacobians.pull_back(m, P, caches, Z, cot, target)
        np.testing.assert_array_equal(plain, jacobians.pull_back_fast(m, P, caches, Z, cot, target))
        assert rel_err(plain, np.einsum("rq,nqd->nrd", cot.values if cot.kind == "shared" else np.eye(q)[cot.values],
                                        reference_jacobian(m, P, X, target))) < 1e-8


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
