"""Tests of minigcnc.fewshot: episodes, few-shot NCC accuracy and the exact logistic-regression probe."""
import numpy as np
import pytest

from minigcnc import collapse as C
from minigcnc import fewshot as F
from minigcnc import probe
from minigcnc.classes import nearest
from probe_problems import episode_problems, sklearn_fit


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


def test_per_episode_accuracy_is_the_reference_episode_accuracy():
    """The batched NCC of evaluate_embeddings equals fewshot.reference_episode_accuracy, episode by episode
    (exactly on real-valued features; on an integer grid wherever no query is equidistant from two means)."""
    Z, y = _classes(np.random.default_rng(7), separation=1.0, noise=1.0)
    Zgrid = np.random.default_rng(16).integers(0, 3, size=Z.shape).astype(float)  # integer grid: exact ties
    tied = 0
    for Zi in (Z, Zgrid):
        for ways, shots in ((5, 5), (3, 1)):
            kwargs = dict(ways=ways, shots=shots, queries=4, n_episodes=30, rng=8)
            result = F.evaluate_embeddings(Zi, y, **kwargs)
            for acc, (s_idx, s_lab, q_idx, q_lab) in zip(result.per_episode, F.episodes(y, **kwargs)):
                means = np.array([Zi[s_idx[s_lab == c]].mean(0) for c in range(ways)])
                d = np.sort(((Zi[q_idx][:, None] - means[None]) ** 2).sum(-1), axis=1)
                if Zi is Zgrid and np.any(d[:, 0] == d[:, 1]):
                    tied += 1  # the batched route's centred means may round an exact tie either way
                    continue
                assert acc == F.reference_episode_accuracy(Zi, s_idx, s_lab, q_idx, q_lab)
    assert 0 < tied < 60


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
# The logistic-regression probe in episodes (the solver itself: tests/test_probe.py)
# --------------------------------------------------------------------------------------------------------

def test_logreg_accuracy_is_invariant_under_a_rotation_of_the_embeddings():
    Z, y = _classes(np.random.default_rng(18), k=8, n=25, p=12, separation=1.5, noise=1.0)
    O = np.linalg.qr(np.random.default_rng(19).standard_normal((12, 12)))[0]
    plain = F.evaluate_embeddings(Z, y, n_episodes=40, rng=20, classifier="logreg")
    rotated = F.evaluate_embeddings(Z @ O, y, n_episodes=40, rng=20, classifier="logreg")
    assert 0.3 < plain.mean < 1.0
    np.testing.assert_array_equal(plain.per_episode, rotated.per_episode)
    X, labels, _, _ = episode_problems(12, 5, False, seed=21)
    W, b = probe.fit_logistic(X, labels, 5)
    W_rot, b_rot = probe.fit_logistic(X @ O, labels, 5)
    np.testing.assert_allclose(O @ W_rot, W, atol=1e-9)
    np.testing.assert_allclose(b_rot, b, atol=1e-9)


def test_evaluate_embeddings_logreg_equals_a_loop_of_sklearn_fits():
    Z, y = _classes(np.random.default_rng(23), k=7, n=24, p=10, separation=2.5, noise=1.0)
    kwargs = dict(ways=5, shots=3, queries=6, n_episodes=12, rng=24)
    for normalize, Zf in ((None, Z / np.linalg.norm(Z, axis=1, keepdims=True)), (False, Z)):  # default: normalized
        result = F.evaluate_embeddings(Z, y, classifier="logreg", normalize=normalize, **kwargs)
        loop = [np.mean(sklearn_fit(Zf[s_idx], s_lab).predict(Zf[q_idx]) == q_lab)
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


def test_error_logreg_needs_two_ways():
    Z, y = _classes(np.random.default_rng(28))
    with pytest.raises(ValueError, match=r"classifier='logreg' needs ways >= 2"):
        F.evaluate_embeddings(Z, y, ways=1, n_episodes=2, rng=0, classifier="logreg")


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
