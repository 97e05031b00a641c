"""minigcnc/layerwise.py: per-layer CDNV, NC1 and exact GC equal the library's functions on each layer's features."""
import numpy as np
import pytest

from minigcnc import collapse, gc, layerwise, models


@pytest.fixture(scope="module")
def deep():
    model = models.mlp([12, 10, 9, 8], 3)
    params = model.init(1, dtype="float64")
    rng = np.random.default_rng(2)
    y = np.arange(60) % 3
    X = rng.standard_normal((60, 12)) + 2.0 * np.eye(12)[y]
    return model, params, X, y


def test_each_layers_features_gc_and_collapse_are_the_librarys_on_that_layer(deep):
    model, params, X, y = deep
    feats = layerwise.layer_features(model, params, X)
    assert [f.shape[1] for f in feats] == [10, 9, 8]
    np.testing.assert_allclose(feats[-1], model.embed(params, X), rtol=1e-12)
    gcs = layerwise.layer_gc(model, params, X)
    assert gcs[-1] == pytest.approx(gc.reference_gc(model, params, X), rel=1e-12)  # the last layer is the embedding
    # layer 1 alone: J = diag(relu'(x W + b)) W^T, so ||J||_F^2 = sum over active units of ||W[:, j]||^2
    W, b = params[0]
    active = (X @ W + b) > 0
    assert gcs[0] == pytest.approx(np.mean(active @ (W ** 2).sum(axis=0)), rel=1e-12)
    recs = layerwise.layer_metrics(model, params, X, y, X_target=X, y_target=y, fewshot_episodes=5, seed=0)
    assert [r["layer"] for r in recs] == [0, 1, 2, 3] and recs[0]["gc"] == 12.0
    for r, Z in zip(recs, [X] + feats):
        assert r["cdnv"] == pytest.approx(collapse.cdnv(Z, y), rel=1e-12)
        assert r["nc1"] == pytest.approx(collapse.nc1(Z, y), rel=1e-12)
        assert r["target_cdnv"] == r["cdnv"] and 0 <= r["fewshot5"] <= 1
    assert recs[1]["gc"] == gcs[0]


def test_nc1_of_features_of_rank_below_their_dimension_is_never_negative_and_is_that_of_their_span():
    """The known pitfall: a pseudo-inverse that keeps Sigma_B's round-off eigenvalues (rank k-1 of p) gives huge or
    negative NC1 (-6e7 on raw MNIST). Features in a 15-dimensional subspace of R^300, 10 classes: NC1 is that of
    their coordinates in the subspace (rotation invariance), positive, at every layer of layer_metrics."""
    rng = np.random.default_rng(0)
    k, r, D = 10, 15, 300
    y = np.repeat(np.arange(k), 30)
    C = rng.standard_normal((len(y), r)) + 3.0 * rng.standard_normal((k, r))[y]  # coordinates (N, r)
    Q = np.linalg.qr(rng.standard_normal((D, r)))[0]  # an orthonormal basis (D, r)
    Z = C @ Q.T * 1e3  # rank 15 in R^784, large entries (round-off of Sigma_B's null space ~ 1e6 eps)
    assert np.linalg.matrix_rank(Z) == r
    assert collapse.nc1(Z, y) == pytest.approx(collapse.nc1(C * 1e3, y), rel=1e-8)
    assert collapse.nc1(Z, y) > 0
    assert collapse.nc1(Z.astype(np.float32), y) == pytest.approx(collapse.nc1(C * 1e3, y), rel=1e-4)  # float32 too
    naive = np.trace(np.cov(Z.T, bias=True) @ np.linalg.pinv(np.cov(collapse.class_means(Z, y).T, bias=True),
                                                             rcond=1e-30)) / k
    assert not np.isclose(naive, collapse.nc1(Z, y), rtol=1e-3)  # keeping round-off eigenvalues goes wrong
    model = models.mlp([D, 20, 20], k)
    params = model.init(0, dtype="float64")
    for rec in layerwise.layer_metrics(model, params, Z / 1e3, y, with_gc=False):
        assert rec["nc1"] >= 0 and np.isfinite(rec["nc1"])


def test_only_dense_layers_count():
    model = models.convnet((1, 8, 8), 3, channels=(2,), hidden=(5, 4))
    assert layerwise.hidden_layers(model) == [3, 4]
    params = model.init(0, dtype="float64")
    X = np.random.default_rng(0).standard_normal((6, 1, 8, 8))
    assert layerwise.layer_gc(model, params, X)[-1] == pytest.approx(gc.reference_gc(model, params, X), rel=1e-12)
