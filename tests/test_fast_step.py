"""fast_step.py: the fast SGD step computes bit for bit what autograd's value_and_grad and the plain update
expressions compute, and overwrites only arrays nothing else holds."""
import autograd.numpy as anp
import numpy as np
import pytest

from minigcnc import fast_step, train
from minigcnc.backend import tree_leaves


def test_value_and_grad_leaves_equals_autogradss_value_and_grad_unused_leaves_included(rng):
    from autograd import value_and_grad

    tree = [(rng.standard_normal((3, 2)), rng.standard_normal(2)), {"a": rng.standard_normal(4), "unused": np.ones(2)}]
    f = lambda t, s: anp.sum(anp.tanh(t[0][0] @ t[0][1]) * s) + anp.sum(t[1]["a"] ** 3)  # noqa: E731
    value, g = fast_step.value_and_grad_leaves(f)(tree, 2.0)
    value_ref, g_ref = value_and_grad(f)(tree, 2.0)
    assert value == value_ref
    assert isinstance(g, list) and isinstance(g[0], tuple) and set(g[1]) == {"a", "unused"}
    for a, b in zip(tree_leaves(g), tree_leaves(g_ref)):
        np.testing.assert_array_equal(a, b)
    assert not g[1]["unused"].any()
    with pytest.raises(TypeError, match="scalar"):
        fast_step.value_and_grad_leaves(lambda t: t[0][1] * 2)(tree)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("grads_owned", [False, True])
def test_sgd_update_equals_the_plain_expressions_bit_for_bit(rng, momentum, grads_owned):
    params = [(rng.standard_normal((3, 2)), rng.standard_normal(2)), rng.standard_normal(4)]
    grads = [(rng.standard_normal((3, 2)), rng.standard_normal(2)), rng.standard_normal(4)]
    velocity = [(rng.standard_normal((3, 2)), rng.standard_normal(2)), rng.standard_normal(4)] if momentum else None
    lr = 0.1
    p_ref, v_ref = train.sgd_step(params, grads, lr, momentum, velocity)  # the reference: p - lr * g
    p_ref, v_ref = tree_leaves(p_ref), (tree_leaves(v_ref) if momentum else None)
    p_new, v_new = fast_step.sgd_update(params, velocity, grads, lr=lr, momentum=momentum, grads_owned=grads_owned)
    for a, b in zip(tree_leaves(p_new), p_ref):
        np.testing.assert_array_equal(a, b)
    if momentum:
        for a, b in zip(tree_leaves(v_new), v_ref):
            np.testing.assert_array_equal(a, b)
    else:
        assert v_new is None


def test_the_update_overwrites_only_fresh_unaliased_host_arrays_and_rounds_like_a_times_x_plus_y(rng):
    g, p = rng.standard_normal(5), rng.standard_normal(5)
    shared = rng.standard_normal(5)
    view = rng.standard_normal(10)[:5]
    xs, ys = [g, shared, shared, view], [p, p + 1, p + 2, p + 3]
    expected = [-0.1 * x + y for x, y in zip(xs, ys)]
    keep = [a.copy() for a in xs]
    out = fast_step.axpy_tree(-0.1, xs, ys, into_x=True)
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))
    assert out[0] is g  # fresh: written over
    assert out[1] is not shared and out[2] is not shared and out[3] is not view  # aliased, a view: new arrays
    assert all(np.array_equal(a, b) for a, b in zip(xs[1:], keep[1:]))


def test_reuse_freed_memory_is_tried_once_and_says_whether_it_took_effect():
    first = fast_step.reuse_freed_memory()
    assert isinstance(first, bool) and fast_step.reuse_freed_memory() is first
