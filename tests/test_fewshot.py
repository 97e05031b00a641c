"""Tests of minigcnc.fewshot: episodes, few-shot NCC accuracy and the exact logistic-regression probe."""
import numpy as np
import pytest

from minigcnc import collapse as C
from minigcnc import fewshot as F
from minigcnc.classes import nearest


def _classes(rng, k=10, n=30, p=8, separation=100.0, noise=0.1):
    """k Gaussian classes of n points in R^p around separation * e_c (well separated by default)."""
    y = np.repeat(np.arange(k), n)
    centres = separation * np.eye(k, p) if p >= k else separation * rng.standard_normal((k, p))
    return centres[y] + noise * rng.standard_normal((k * n, p)), y


def test_well_separated_classes_give_accuracy_one():
    Z, y = _classes(np.random.default_rng(0))
    result = F.evaluate_embeddings(Z, y, n_episodes=50, rng=0)
    assert result.mean == 1.0
    assert result.ci95 == 0.0
    np.testing.assert_array_equal(result.per_episode, np.ones(50))


def test_confidence_interval_shrinks_like_inverse_sqrt_episodes():
    Z, y = _classes(np.random.default_rng(1), separation=1.0, noise=1.0)  # overlapping: accuracy varies
    ci_100 = F.evaluate_embeddings(Z, y, n_episodes=100, rng=1).ci95
    ci_400 = F.evaluate_embeddings(Z, y, n_episodes=400, rng=2).ci95
    assert ci_100 > 0
    assert ci_400 / ci_100 == pytest.approx(0.5, abs=0.1)


def test_ci95_is_196_sample_sd_over_sqrt_episodes():
    Z, y = _classes(np.random.default_rng(2), separation=1.0, noise=1.0)
    r = F.evaluate_embeddings(Z, y, n_episodes=30, rng=3)
    assert r.mean == pytest.approx(np.mean(r.per_episode))
    assert r.ci95 == pytest.approx(1.96 * np.std(r.per_episode, ddof=1) / np.sqrt(30))


def test_episodes_reproducible_from_seed():
    y = np.repeat(np.arange(8), 25)
    first = list(F.episodes(y, n_episodes=5, rng=42))
    again = list(F.episodes(y, n_episodes=5, rng=np.random.default_rng(42)))
    other = list(F.episodes(y, n_episodes=5, rng=43))
    for a, b in zip(first, again):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_episodes_never_reuse_a_support_image_as_a_query():
    y = np.repeat(np.arange(7), 21)  # exactly shots + queries = 20 needed, 21 available
    for s_idx, s_lab, q_idx, q_lab in F.episodes(y, ways=5, shots=5, queries=15, n_episodes=200, rng=5):
        assert len(np.intersect1d(s_idx, q_idx)) == 0
        assert len(np.unique(s_idx)) == 25 and len(np.unique(q_idx)) == 75


def test_episode_labels_are_reindexed_and_classes_distinct():
    y = np.repeat(np.array([3, 9, 11, 20, 40, 41]), 12)
    for s_idx, s_lab, q_idx, q_lab in F.episodes(y, ways=4, shots=2, queries=3, n_episodes=100, rng=6):
        np.testing.assert_array_equal(s_lab, np.repeat(np.arange(4), 2))
        np.testing.assert_array_equal(q_lab, np.repeat(np.arange(4), 3))
        original = [np.unique(y[np.concatenate([s_idx[s_lab == c], q_idx[q_lab == c]])]) for c in range(4)]
        assert all(len(o) == 1 for o in original)  # one original class per new label
        assert len(np.unique(np.concatenate(original))) == 4  # drawn without replacement


def test_grouped_episodes_draw_every_class_from_a_distinct_group_and_reach_every_class():
    y = np.repeat(np.arange(12), 20)
    groups = np.arange(12) // 4  # 3 groups of 4 classes, as 3 digits at 4 rotations
    seen = set()
    for s_idx, s_lab, q_idx, q_lab in F.episodes(y, ways=3, shots=2, queries=3, n_episodes=200, rng=4, groups=groups):
        classes = [np.unique(y[np.concatenate([s_idx[s_lab == c], q_idx[q_lab == c]])]).item() for c in range(3)]
        assert len(set(groups[classes])) == 3
        seen.update(classes)
    assert seen == set(range(12))
    with pytest.raises(ValueError, match=r"ways=4 is more than the 3 groups"):
        F.episodes(y, ways=4, rng=0, groups=groups)


def test_without_groups_the_episodes_and_accuracies_are_the_plain_ones():
    Z, y = _classes(np.random.default_rng(29), k=8, n=25, p=6, separation=1.0, noise=1.0)
    for a, b in zip(F.episodes(y, n_episodes=20, rng=5), F.episodes(y, n_episodes=20, rng=5, groups=None)):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(F.evaluate_embeddings(Z, y, n_episodes=30, rng=5, groups=None).per_episode,
                                  F.evaluate_embeddings(Z, y, n_episodes=30, rng=5).per_episode)


def test_grouped_accuracy_is_ncc_on_the_grouped_episodes(monkeypatch):
    Z, y = _classes(np.random.default_rng(30), k=10, n=25, p=6, separation=1.0, noise=1.0)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    loop = []
    for s_idx, _, q_idx, q_lab in F.episodes(y, n_episodes=40, rng=6, groups=groups):
        loop.append(np.mean(nearest(np.mean(Z[s_idx].reshape(5, 5, -1), axis=1), Z[q_idx]) == q_lab))
    np.testing.assert_array_equal(F.evaluate_embeddings(Z, y, n_episodes=40, rng=6, groups=groups).per_episode, loop)
    monkeypatch.setattr(F, "NCC_HOST_BYTES", 1)  # one episode per block: the same draws
    np.testing.assert_array_equal(F.evaluate_embeddings(Z, y, n_episodes=40, rng=6, groups=groups).per_episode, loop)


def test_per_episode_accuracy_matches_brute_force_ncc():
    Z, y = _classes(np.random.default_rng(7), separation=1.0, noise=1.0)
    result = F.evaluate_embeddings(Z, y, n_episodes=10, rng=8)
    for acc, (s_idx, s_lab, q_idx, q_lab) in zip(result.per_episode, F.episodes(y, n_episodes=10, rng=8)):
        means = np.array([Z[s_idx[s_lab == c]].mean(0) for c in range(5)])
        pred = np.argmin(((Z[q_idx][:, None] - means[None]) ** 2).sum(-1), axis=1)
        assert acc == pytest.approx(np.mean(pred == q_lab))


def test_target_nc_is_cdnv_of_all_embeddings():
    Z, y = _classes(np.random.default_rng(9), separation=2.0, noise=1.0)
    assert F.evaluate_embeddings(Z, y, n_episodes=3, rng=0).target_nc == pytest.approx(C.cdnv(Z, y))


def test_evaluate_embeds_once_and_matches_evaluate_embeddings():
    rng = np.random.default_rng(10)
    X, y = _classes(rng, separation=1.0, noise=1.0)
    A = rng.standard_normal((8, 4))
    calls = []

    def embed_fn(inputs):
        calls.append(len(inputs))
        return np.tanh(inputs @ A)

    result = F.evaluate(embed_fn, X, y, n_episodes=20, rng=11)
    assert calls == [len(X)]
    expected = F.evaluate_embeddings(np.tanh(X @ A), y, n_episodes=20, rng=11)
    np.testing.assert_array_equal(result.per_episode, expected.per_episode)
    assert result.target_nc == pytest.approx(expected.target_nc)


def test_logreg_probe_on_well_separated_classes_gives_accuracy_one():
    Z, y = _classes(np.random.default_rng(12))
    assert F.evaluate_embeddings(Z, y, n_episodes=5, rng=0, classifier="logreg").mean == 1.0


def test_result_is_frozen():
    Z, y = _classes(np.random.default_rng(13))
    result = F.evaluate_embeddings(Z, y, n_episodes=2, rng=0)
    with pytest.raises(AttributeError):
        result.mean = 0.0


def test_batched_ncc_is_identical_to_the_one_episode_loop_of_nearest(monkeypatch):
    Z1, y1 = _classes(np.random.default_rng(15), k=8, n=25, p=6, separation=1.0, noise=1.0)
    Z2 = np.random.default_rng(16).integers(0, 3, size=(200, 2)).astype(float)  # integer grid: exact ties
    ties = 0
    for Z, y in ((Z1, y1), (Z2, y1)):
        for ways, shots, queries in ((5, 5, 15), (5, 1, 15), (3, 2, 4), (1, 1, 1)):
            loop = []
            for s_idx, _, q_idx, q_lab in F.episodes(y, ways=ways, shots=shots, queries=queries, n_episodes=300,
                                                     rng=17):
                means = np.mean(Z[s_idx].reshape(ways, shots, -1), axis=1)
                loop.append(np.mean(nearest(means, Z[q_idx]) == q_lab))
                d = np.sort(((Z[q_idx][:, None] - means[None]) ** 2).sum(-1), axis=1)
                ties += np.sum(d[:, 0] == d[:, 1]) if ways > 1 else 0
            kwargs = dict(ways=ways, shots=shots, queries=queries, n_episodes=300, rng=17)
            np.testing.assert_array_equal(F.evaluate_embeddings(Z, y, **kwargs).per_episode, loop)
            monkeypatch.setattr(F, "NCC_HOST_BYTES", 1)  # one episode per block: the same draws and accuracies
            np.testing.assert_array_equal(F.evaluate_embeddings(Z, y, **kwargs).per_episode, loop)
            monkeypatch.undo()
    assert ties > 100  # ties to the lowest class index were exercised


def test_episodes_drawn_in_blocks_are_the_episodes_of_the_stream():
    y = np.repeat(np.arange(9), 23)
    members, rng = F._episode_pool(y, 4, 3, 5, 50, 17)
    block = np.concatenate([F._draw_episodes(members, 4, 8, 20, rng), F._draw_episodes(members, 4, 8, 30, rng)])
    for draws, (s_idx, _, q_idx, _) in zip(block, F.episodes(y, ways=4, shots=3, queries=5, n_episodes=50, rng=17)):
        np.testing.assert_array_equal(draws[:, :3].reshape(-1), s_idx)
        np.testing.assert_array_equal(draws[:, 3:].reshape(-1), q_idx)


# --------------------------------------------------------------------------------------------------------
# The logistic-regression probe: fit_logistic against scikit-learn's LogisticRegression
# --------------------------------------------------------------------------------------------------------

def _sklearn(X, labels, solver="lbfgs"):
    """scikit-learn's LogisticRegression (C=1, L2, intercept) fitted to a tight tolerance.

    Its default solver (lbfgs) stops on a relative change of the objective of ~1e-14, with the gradient still
    ~1e-6 here, so its coefficients are only good to ~1e-4 relative on well-separated classes;
    ``solver="newton-cholesky"`` (the same objective) reaches the optimum to ~1e-9 or better.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newton-cholesky may warn that it finished a line search with lbfgs
        return LogisticRegression(C=1.0, tol=1e-12, max_iter=100000, solver=solver).fit(X, labels)


def _close(ours, theirs, rel):
    """Decision values equal to ``rel`` of their largest size, after removing a shift common to all classes."""
    if theirs.ndim == 2:
        ours, theirs = ours - ours.mean(axis=1, keepdims=True), theirs - theirs.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rel * max(np.abs(theirs).max(), 1e-3))


def _objective(W, b, X, labels, k):
    """scikit-learn's objective at (W, b): 0.5 ||W||^2 + sum_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}]
    (k = 2: its binary objective with w = W[:, 1] - W[:, 0], c = b[1] - b[0])."""
    if k == 2:
        w, c = W[:, 1] - W[:, 0], b[1] - b[0]
        s = X @ w + c
        return 0.5 * w @ w + np.sum(np.logaddexp(0.0, s) - (labels == 1) * s)
    L = X @ W + b
    return 0.5 * np.sum(W * W) + np.sum(np.logaddexp.reduce(L, axis=1) - L[np.arange(len(X)), labels])


def _episode_problems(p, shots, separated, ways=5, count=4, seed=0):
    """``count`` support sets (count, ways*shots, p) with class-major labels, and query sets, Gaussian classes."""
    rng = np.random.default_rng(seed)
    centres = (8.0 if separated else 0.5) * rng.standard_normal((count, ways, 1, p))
    X = (centres + rng.standard_normal((count, ways, shots, p))).reshape(count, ways * shots, p)
    Zq = (centres + rng.standard_normal((count, ways, 15, p))).reshape(count, ways * 15, p)
    return X, np.repeat(np.arange(ways), shots), Zq, np.repeat(np.arange(ways), 15)


@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
@pytest.mark.parametrize("p", [64, 8])  # p = 8 < ways * shots = 25 for 5 shots: the span of the support is all of R^p
@pytest.mark.parametrize("shots", [1, 5])
def test_fit_logistic_matches_sklearn_decisions_and_accuracy(separated, p, shots):
    X, labels, Zq, q_labels = _episode_problems(p, shots, separated, seed=p + shots)
    W, b = F.fit_logistic(X, labels, 5)
    for e in range(len(X)):
        ours = Zq[e] @ W[e] + b[e]
        default, newton = _sklearn(X[e], labels), _sklearn(X[e], labels, solver="newton-cholesky")
        _close(ours, newton.decision_function(Zq[e]), 1e-7)
        _close(W[e], newton.coef_.T, 1e-7)
        _close(ours, default.decision_function(Zq[e]), 2e-4)  # lbfgs: see _sklearn
        for ref in (default, newton):
            assert np.mean(np.argmax(ours, axis=1) == q_labels) == np.mean(ref.predict(Zq[e]) == q_labels)
        assert abs(b[e].sum()) < 1e-10 * (1 + np.abs(b[e]).max())  # zero-sum intercepts, as scikit-learn's


@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
def test_fit_logistic_binary_is_sklearns_binary_model(separated):
    X, labels, Zq, q_labels = _episode_problems(16, 5, separated, ways=2, seed=3)
    W, b = F.fit_logistic(X, labels, 2)
    for e in range(len(X)):
        assert np.all(W[e][:, 0] == 0) and b[e][0] == 0
        for solver, rel in (("newton-cholesky", 1e-7), ("lbfgs", 2e-4)):
            ref = _sklearn(X[e], labels, solver)
            _close((Zq[e] @ W[e] + b[e])[:, 1], ref.decision_function(Zq[e]), rel)
            np.testing.assert_array_equal(np.argmax(Zq[e] @ W[e] + b[e], axis=1), ref.predict(Zq[e]))


@pytest.mark.parametrize("k", [5, 2])
@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
def test_fit_logistic_reaches_the_optimum_objective_no_higher_than_sklearn(k, separated):
    X, labels, _, _ = _episode_problems(32, 5, separated, ways=k, seed=5)
    W, b = F.fit_logistic(X, labels, k)
    for e in range(len(X)):
        ref = _sklearn(X[e], labels)
        coef = np.vstack([np.zeros_like(ref.coef_), ref.coef_]) if k == 2 else ref.coef_
        intercept = np.concatenate([[0.0], ref.intercept_]) if k == 2 else ref.intercept_
        ours, theirs = _objective(W[e], b[e], X[e], labels, k), _objective(coef.T, intercept, X[e], labels, k)
        assert ours <= theirs + 1e-12 * theirs
        L = X[e] @ W[e] + b[e]
        P = np.exp(L - np.logaddexp.reduce(L, axis=1, keepdims=True))
        R = P - np.eye(k)[labels]
        if k == 2:  # the binary gradient in (w, c) = (W[:, 1], b[1])
            grad = np.concatenate([W[e][:, 1] + X[e].T @ R[:, 1], [R[:, 1].sum()]])
        else:
            grad = np.concatenate([(W[e] + X[e].T @ R).ravel(), R.sum(axis=0)])
        assert np.linalg.norm(grad) < 1e-8 * (1 + np.abs(X[e]).sum())


def test_logreg_accuracy_is_invariant_under_a_rotation_of_the_embeddings():
    Z, y = _classes(np.random.default_rng(18), k=8, n=25, p=12, separation=1.5, noise=1.0)
    O = np.linalg.qr(np.random.default_rng(19).standard_normal((12, 12)))[0]
    plain = F.evaluate_embeddings(Z, y, n_episodes=40, rng=20, classifier="logreg")
    rotated = F.evaluate_embeddings(Z @ O, y, n_episodes=40, rng=20, classifier="logreg")
    assert 0.3 < plain.mean < 1.0
    np.testing.assert_array_equal(plain.per_episode, rotated.per_episode)
    X, labels, _, _ = _episode_problems(12, 5, False, seed=21)
    W, b = F.fit_logistic(X, labels, 5)
    W_rot, b_rot = F.fit_logistic(X @ O, labels, 5)
    np.testing.assert_allclose(O @ W_rot, W, atol=1e-9)
    np.testing.assert_allclose(b_rot, b, atol=1e-9)


def test_fit_logistic_with_duplicate_and_rank_deficient_support_matches_sklearn():
    rng = np.random.default_rng(22)
    basis = rng.standard_normal((2, 40))
    low_rank = (rng.standard_normal((5, 4, 2)) + 2.0 * rng.standard_normal((5, 1, 2))) @ basis  # rank 2 in R^40
    duplicated = np.repeat(rng.standard_normal((5, 1, 40)) + rng.standard_normal((5, 1, 40)), 4, axis=1)
    one_point = np.repeat(rng.standard_normal((1, 1, 40)), 20, axis=0).reshape(5, 4, 40)  # every class the same point
    labels = np.repeat(np.arange(5), 4)
    X = np.stack([low_rank.reshape(20, 40), duplicated.reshape(20, 40), one_point.reshape(20, 40)])
    W, b = F.fit_logistic(X, labels, 5)
    queries = rng.standard_normal((30, 40)) + X[0].mean(axis=0)
    for e in range(len(X)):
        _close(queries @ W[e] + b[e], _sklearn(X[e], labels, "newton-cholesky").decision_function(queries), 1e-7)
        _close(queries @ W[e] + b[e], _sklearn(X[e], labels).decision_function(queries), 2e-4)
    np.testing.assert_allclose(W[2], 0.0, atol=1e-12)  # identical points of every class: nothing to learn
    np.testing.assert_allclose(b[2], 0.0, atol=1e-12)


def test_evaluate_embeddings_logreg_equals_a_loop_of_sklearn_fits():
    Z, y = _classes(np.random.default_rng(23), k=7, n=24, p=10, separation=2.5, noise=1.0)
    kwargs = dict(ways=5, shots=3, queries=6, n_episodes=12, rng=24)
    for normalize, Zf in ((None, Z / np.linalg.norm(Z, axis=1, keepdims=True)), (False, Z)):  # default: normalized
        result = F.evaluate_embeddings(Z, y, classifier="logreg", normalize=normalize, **kwargs)
        loop = [np.mean(_sklearn(Zf[s_idx], s_lab).predict(Zf[q_idx]) == q_lab)
                for s_idx, s_lab, q_idx, q_lab in F.episodes(y, **kwargs)]
        assert 0.3 < result.mean < 1.0
        np.testing.assert_array_equal(result.per_episode, loop)


def test_probe_accuracy_does_not_change_when_every_embedding_is_scaled_by_one_constant():
    Z, y = _classes(np.random.default_rng(31), k=8, n=25, p=12, separation=1.5, noise=1.0)
    kwargs = dict(n_episodes=40, rng=7, classifier="logreg")
    plain = F.evaluate_embeddings(Z, y, **kwargs).per_episode
    for c in (1e-3, 1e3):
        np.testing.assert_array_equal(F.evaluate_embeddings(c * Z, y, **kwargs).per_episode, plain)
    # on unnormalized features the same C = 1 is a different regularization at another scale
    raw = [F.evaluate_embeddings(c * Z, y, normalize=False, **kwargs).per_episode for c in (1e-3, 1e3)]
    assert not np.array_equal(raw[0], raw[1])
    # NCC stays on the raw features by default (scale-free anyway); the target NC is that of the raw Z
    ncc = F.evaluate_embeddings(Z, y, n_episodes=40, rng=7)
    np.testing.assert_array_equal(ncc.per_episode, F.evaluate_embeddings(Z, y, n_episodes=40, rng=7,
                                                                         normalize=False).per_episode)
    assert F.evaluate_embeddings(Z, y, **kwargs).target_nc == pytest.approx(C.cdnv(Z, y))
    np.testing.assert_array_equal(F.l2_normalized(np.zeros((2, 3))), np.zeros((2, 3)))  # a dead embedding stays 0


def test_fit_logistic_blocks_give_the_same_solutions(monkeypatch):
    X, labels, _, _ = _episode_problems(16, 5, False, count=6, seed=25)
    W, b = F.fit_logistic(X, labels, 5)
    monkeypatch.setattr(F, "LOGREG_BLOCK_BYTES", 1)  # one problem per block
    W1, b1 = F.fit_logistic(X, labels, 5)
    np.testing.assert_allclose(W1, W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b1, b, rtol=0, atol=1e-12)
    labels_each = np.stack([np.random.default_rng(e).permutation(labels) for e in range(6)])  # labels (E, n)
    W2, b2 = F.fit_logistic(X, labels_each, 5)
    W3, b3 = F.fit_logistic(X[3:4], labels_each[3], 5)
    np.testing.assert_allclose(W2[3], W3[0], rtol=0, atol=1e-12)


def test_fit_logistic_refuses_to_return_an_unconverged_solution(monkeypatch):
    X, labels, _, _ = _episode_problems(16, 5, False, seed=26)
    monkeypatch.setattr(F, "LOGREG_MAX_ITER", 1)
    with pytest.raises(RuntimeError, match=r"4 of 4 problems did not converge in 1 Newton iterations"):
        F.fit_logistic(X, labels, 5)


def test_fit_logistic_refuses_an_empty_class_and_features_that_overflow_its_test():
    X, labels, _, _ = _episode_problems(16, 5, False, seed=28)
    missing = np.where(labels == 4, 3, labels)  # class 4 has no support point: no optimum exists
    with pytest.raises(ValueError, match=r"no sample of class 4 .* no optimum"):
        F.fit_logistic(X, missing, 5)
    with pytest.raises(RuntimeError, match="overflowed float64"), np.errstate(over="ignore"):
        F.fit_logistic(X * 1e160, labels, 5)
    # tiny features are no error: the optimum is W = 0 to rounding, which is what comes back
    W, b = F.fit_logistic(X * 1e-170, labels, 5)
    assert np.all(W == 0) and np.all(np.abs(b) < 1e-12)


def test_logreg_stays_correct_for_device_embeddings():
    import strict_device

    strict = strict_device.register()
    Z, y = _classes(np.random.default_rng(27), separation=1.0, noise=1.0)
    on_device = F.evaluate_embeddings(strict.asarray(Z), y, n_episodes=10, rng=3, classifier="logreg")
    on_host = F.evaluate_embeddings(Z, y, n_episodes=10, rng=3, classifier="logreg")
    np.testing.assert_array_equal(on_device.per_episode, on_host.per_episode)


# --------------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------------

def test_error_too_many_ways():
    with pytest.raises(ValueError, match=r"ways=6 is more than the 5 classes in y"):
        F.episodes(np.repeat(np.arange(5), 30), ways=6, rng=0)


def test_error_class_too_small_for_shots_and_queries_named():
    y = np.concatenate([np.repeat(np.arange(5), 30), np.full(12, 17)])
    with pytest.raises(ValueError, match=r"class 17 has 12 images in y, fewer than shots \+ queries = 5 \+ 15 = 20"):
        F.episodes(y, rng=0)
    with pytest.raises(ValueError, match=r"class 17 has 12 images"):
        F.evaluate_embeddings(np.random.default_rng(0).standard_normal((len(y), 3)), y, shots=10, queries=5, rng=0)


def test_error_non_positive_shots():
    with pytest.raises(ValueError, match=r"shots must be an integer >= 1 \(support images per class\); got 0"):
        F.episodes(np.repeat(np.arange(5), 30), shots=0, rng=0)


def test_error_rng_must_be_generator_or_seed():
    # checks.as_rng: None is a missing value (ValueError), a string a wrong type (TypeError)
    with pytest.raises((TypeError, ValueError), match=r"rng is required: give a numpy.random.Generator or an int seed"):
        F.episodes(np.repeat(np.arange(5), 30), rng=None)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator or an int seed; got str"):
        F.episodes(np.repeat(np.arange(5), 30), rng="0")


def test_error_unknown_classifier():
    with pytest.raises(ValueError, match=r"classifier must be 'ncc' or 'logreg'; got 'svm'"):
        F.evaluate_embeddings(np.ones((10, 2)), np.arange(10) % 2, rng=0, classifier="svm")


def test_error_logreg_needs_two_ways_and_labels_in_range():
    Z, y = _classes(np.random.default_rng(28))
    with pytest.raises(ValueError, match=r"classifier='logreg' needs ways >= 2"):
        F.evaluate_embeddings(Z, y, ways=1, n_episodes=2, rng=0, classifier="logreg")
    with pytest.raises(ValueError, match=r"labels must be integers in 0..2 of shape \(4,\) or \(1, 4\)"):
        F.fit_logistic(np.ones((1, 4, 2)), np.array([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match=r"k must be an integer >= 2"):
        F.fit_logistic(np.ones((1, 4, 2)), np.zeros(4, dtype=int), 1)
    with pytest.raises(ValueError, match=r"X must be a 3-D array"):
        F.fit_logistic(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2)


def test_error_embed_fn_rows():
    with pytest.raises(ValueError, match=r"embed_fn\(X\) returned 5 rows for 10 inputs"):
        F.evaluate(lambda X: X[:5], np.ones((10, 2)), np.arange(10) % 2, rng=0)


def test_evaluate_embeddings_stays_on_the_device_and_matches_the_host():
    import strict_device

    strict = strict_device.register()
    Z, y = _classes(np.random.default_rng(14), separation=1.0, noise=1.0)
    on_device = F.evaluate_embeddings(strict.asarray(Z), y, n_episodes=20, rng=3)
    on_host = F.evaluate_embeddings(Z, y, n_episodes=20, rng=3)
    np.testing.assert_allclose(on_device.per_episode, on_host.per_episode)
    assert on_device.target_nc == pytest.approx(on_host.target_nc)
