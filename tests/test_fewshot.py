"""Tests of minigcnc.fewshot: episodes and few-shot NCC accuracy on frozen embeddings."""
import numpy as np
import pytest

from minigcnc import collapse as C
from minigcnc import fewshot as F


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
