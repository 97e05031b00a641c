"""Tests of minigcnc.bounds: Poincare constants, NCC error bounds and their geometric-complexity forms."""
import numpy as np
import pytest

from minigcnc import bounds as B
from minigcnc import collapse as C

# Case A of test_collapse: class 0 at (0,0), (2,0); class 1 at (0,4), (0,6)
#   mu_0 = (1,0), mu_1 = (0,5), Var_0 = Var_1 = 1, d^2 = 26
ZA = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
YA = np.array([0, 0, 1, 1])

# Three means (0,0), (3,0), (0,4): d01^2 = 9, d02^2 = 16, d12^2 = 25
MEANS3 = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])


# --------------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------------

def test_markov_bound_hand_computed():
    # (4/k) sum_i sum_{j!=i} Var_i / d^2 = (4/2)(1/26 + 1/26) = 2/13
    result = B.ncc_error_bound(ZA, YA, kind="markov")
    assert result.value == pytest.approx(2 / 13, rel=1e-12)
    np.testing.assert_allclose(result.pair_terms, [[0, 1 / 13], [1 / 13, 0]], rtol=1e-12)


def test_directional_bound_hand_computed():
    # u_01 = (-1, 5)/sqrt26: class-0 deviations (-1,0), (1,0) project to +-1/sqrt26 -> s^2 = 1/26
    #   term = (1/26) / (1/26 + 26/4) = 1/170
    # u_10 = (1, -5)/sqrt26: class-1 deviations (0,-1), (0,1) project to +-5/sqrt26 -> s^2 = 25/26
    #   term = (25/26) / (25/26 + 26/4) = 25/194
    result = B.ncc_error_bound(ZA, YA, kind="directional")
    assert result.value == pytest.approx((1 / 170 + 25 / 194) / 2, rel=1e-12)
    np.testing.assert_allclose(result.pair_terms, [[0, 1 / 340], [25 / 388, 0]], rtol=1e-12)


def test_ncc_error_bound_gc_hand_computed():
    # (4/3) * rho * sum_i GC_i sum_{j!=i} 1/d_ij^2 with GC = (1,2,3), rho = 2
    expected = (4 / 3) * 2 * (1 / 9 + 1 / 16 + 2 / 9 + 2 / 25 + 3 / 16 + 3 / 25)
    assert B.ncc_error_bound_gc([1.0, 2.0, 3.0], MEANS3, 2.0, MEANS3).value == pytest.approx(expected, rel=1e-12)


def test_ncc_error_bound_gc_adds_the_offset_of_the_sample_means_from_the_centres():
    # offsets ||m_i - mu_i||^2 = (1, 0, 4): (4/3) sum_i (rho GC_i + off_i) sum_{j!=i} 1/d_ij^2
    sample = MEANS3 + np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    inv = [1 / 9 + 1 / 16, 1 / 9 + 1 / 25, 1 / 16 + 1 / 25]
    expected = (4 / 3) * sum((2.0 * g + o) * v for g, o, v in zip([1.0, 2.0, 3.0], [1.0, 0.0, 4.0], inv))
    assert B.ncc_error_bound_gc([1.0, 2.0, 3.0], MEANS3, 2.0, sample).value == pytest.approx(expected, rel=1e-12)


def test_ncc_error_bound_directional_gc_shifts_the_threshold_by_the_offset_along_u():
    # two classes 4 apart on the x axis; class 0's sample mean lies 1 towards class 1: delta_01 = 1, so the
    # threshold d/2 - delta = 1; class 1's lies 3 away from class 0: delta_10 = -3, threshold 5
    means = np.array([[0.0, 0.0], [4.0, 0.0]])
    sample = np.array([[1.0, 0.0], [7.0, 0.0]])
    dir_gc = np.array([[0.0, 2.0], [3.0, 0.0]])
    expected = (2 / (2 + 1) + 3 / (3 + 25)) / 2
    assert B.ncc_error_bound_directional_gc(dir_gc, means, 1.0, sample).value == pytest.approx(expected, rel=1e-12)
    # a sample mean past the midpoint: the term is 1 (nothing bounds that class's error below 1)
    far = np.array([[3.0, 0.0], [4.0, 0.0]])
    assert B.ncc_error_bound_directional_gc(dir_gc, means, 1.0, far).pair_terms[0, 1] == pytest.approx(0.5)


def test_ncc_error_bound_directional_gc_hand_computed():
    # S = rho_i dir_gc[i,j] (rho = 1); term S/(S + d^2/4):
    # (0,1) 1/(1+9/4) = 4/13, (0,2) 2/(2+4) = 1/3, (1,0) 3/(3+9/4) = 4/7,
    # (1,2) 4/(4+25/4) = 16/41, (2,0) 5/(5+4) = 5/9, (2,1) 6/(6+25/4) = 24/49; value = sum / 3
    dir_gc = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [5.0, 6.0, 0.0]])
    expected = (4 / 13 + 1 / 3 + 4 / 7 + 16 / 41 + 5 / 9 + 24 / 49) / 3
    assert B.ncc_error_bound_directional_gc(dir_gc, MEANS3, 1.0, MEANS3).value == pytest.approx(expected, rel=1e-12)


def test_nc_gc_bound_hand_computed():
    # rho_max = 2, GCol(GC = (1,2,3)) = 47/360 (test_collapse) -> 2 * 47/360
    assert B.nc_gc_bound([1.0, 2.0, 3.0], MEANS3, [1.0, 2.0, 0.5]).value == pytest.approx(2 * 47 / 360, rel=1e-12)


def test_cdnv_bound_gc_hand_computed():
    # rho_i GC_i = (1, 4, 1.5): pairs (1+4)/18, (1+1.5)/32, (4+1.5)/50, mean over 3
    expected = (5 / 18 + 2.5 / 32 + 5.5 / 50) / 3
    assert B.cdnv_bound_gc([1.0, 2.0, 3.0], MEANS3, [1.0, 2.0, 0.5]).value == pytest.approx(expected, rel=1e-12)


def test_implied_rho_hand_computed():
    # case A: NC = 1/26; GC = (2, 2) gives GCol = 4/(2*26) = 1/13 -> NC/GCol = 1/2
    assert B.implied_rho(ZA, YA, [2.0, 2.0]) == pytest.approx(0.5, rel=1e-12)


def test_poincare_gaussian_hand_computed():
    # (0,0), (2,0), (0,2), (2,2): each coordinate has deviations +-1, sum of squares 4, /(N-1) = 4/3; no covariance
    assert B.poincare_gaussian(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])) == pytest.approx(4 / 3)


def test_poincare_gaussian_gram_route_hand_computed():
    # N = 2 < D = 4: deviations +-e1 -> Cov = 2 e1 e1^T / (2 - 1), lambda_max = 2 (via the 2 x 2 Gram matrix)
    assert B.poincare_gaussian(np.array([[0.0, 0, 0, 0], [2.0, 0, 0, 0]])) == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------------------
# Poincare constants of Gaussian classes
# --------------------------------------------------------------------------------------------------------

def _random_covariance(rng, D, top):
    """A D x D covariance with eigenvalues in [0.2, top], top = lambda_max, randomly rotated."""
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.concatenate([[top], rng.uniform(0.2, top, D - 1)])
    return (Q * lam) @ Q.T


def test_poincare_gaussian_recovers_lambda_max():
    rng = np.random.default_rng(0)
    Sigma = _random_covariance(rng, 7, 3.0)
    X = rng.multivariate_normal(np.ones(7), Sigma, size=20_000)
    assert B.poincare_gaussian(X) == pytest.approx(3.0, rel=0.05)


def test_poincare_gaussian_gram_route_equals_covariance_route():
    X = np.random.default_rng(1).standard_normal((12, 3, 5, 4))  # N = 12 < D = 60, image-shaped
    direct = np.linalg.eigvalsh(np.cov(X.reshape(12, -1), rowvar=False))[-1]
    assert B.poincare_gaussian(X) == pytest.approx(direct, rel=1e-10)


def test_poincare_constants_are_per_class_in_label_order():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((40, 3)), np.repeat([9, 2], 20)
    X[y == 9] *= 3.0
    expected = [B.poincare_gaussian(X[y == 2]), B.poincare_gaussian(X[y == 9])]
    np.testing.assert_allclose(B.poincare_constants(X, y), expected)


# --------------------------------------------------------------------------------------------------------
# Poincare inequality through a tiny tanh MLP: Var_c <= rho_c GC_c, NC <= rho GCol
# --------------------------------------------------------------------------------------------------------

D_IN, HIDDEN, P_OUT, K, N_PER_CLASS = 6, 8, 3, 3, 20_000


def _gaussian_classes(rng):
    """Inputs x ~ N(m_c, Sigma_c) for K classes (N_PER_CLASS each), with rho_c = lambda_max(Sigma_c)."""
    tops = np.array([1.0, 2.0, 0.5])
    X, y = [], []
    for c in range(K):
        Sigma = _random_covariance(rng, D_IN, tops[c])
        X.append(rng.multivariate_normal(2.0 * rng.standard_normal(D_IN), Sigma, size=N_PER_CLASS))
        y.append(np.full(N_PER_CLASS, c))
    return np.concatenate(X), np.concatenate(y), tops


def _tanh_mlp(rng):
    """g(x) = tanh(x A + a) B and its per-sample Jacobians J = B^T diag(1 - tanh^2) A^T, (N, p, D)."""
    A = rng.standard_normal((D_IN, HIDDEN)) / np.sqrt(D_IN)
    a = 0.1 * rng.standard_normal(HIDDEN)
    Bw = rng.standard_normal((HIDDEN, P_OUT)) / np.sqrt(HIDDEN)

    def g(X):
        return np.tanh(X @ A + a) @ Bw

    def jac(X):
        slope = 1.0 - np.tanh(X @ A + a) ** 2  # (N, h)
        return np.einsum("hp,nh,dh->npd", Bw, slope, A)  # (N, p, D)

    return g, jac


@pytest.fixture(scope="module")
def mlp_classes():
    rng = np.random.default_rng(3)
    X, y, rho = _gaussian_classes(rng)
    g, jac = _tanh_mlp(rng)
    Z, J = g(X), jac(X)
    class_gc = np.array([np.mean(np.sum(J[y == c] ** 2, axis=(1, 2))) for c in range(K)])
    return X, y, rho, Z, J, class_gc


def test_poincare_inequality_var_le_rho_gc_tanh_mlp(mlp_classes):
    X, y, rho, Z, J, class_gc = mlp_classes
    var = C.class_variances(Z, y)
    assert np.all(var <= 1.02 * rho * class_gc), (var, rho * class_gc)  # 2% slack for Monte Carlo error


def test_cdnv_le_max_rho_times_geometric_collapse_tanh_mlp(mlp_classes):
    X, y, rho, Z, J, class_gc = mlp_classes
    means = C.class_means(Z, y)
    assert C.cdnv(Z, y) <= 1.02 * rho.max() * C.geometric_collapse(class_gc, means)
    assert C.cdnv(Z, y) <= 1.02 * B.cdnv_bound_gc(class_gc, means, rho).value
    assert B.cdnv_bound_gc(class_gc, means, rho).value <= B.nc_gc_bound(class_gc, means, rho).value


def test_gc_bounds_dominate_embedding_bounds_tanh_mlp(mlp_classes):
    X, y, rho, Z, J, class_gc = mlp_classes
    means = C.class_means(Z, y)
    diff = means[None, :, :] - means[:, None, :]  # (k, k, p): mu_j - mu_i
    U = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-300)
    # directional GC: dir_gc[i, j] = E_{class i} ||J^T u_ij||^2
    dir_gc = np.array([[np.mean(np.sum(np.einsum("npd,p->nd", J[y == i], U[i, j]) ** 2, axis=1)) for j in range(K)] for i in range(K)])
    markov = B.ncc_error_bound(Z, y, kind="markov").value
    directional = B.ncc_error_bound(Z, y, kind="directional").value
    assert markov <= 1.02 * B.ncc_error_bound_gc(class_gc, means, rho, means).value
    assert directional <= 1.02 * B.ncc_error_bound_directional_gc(dir_gc, means, rho, means).value


def test_affine_map_variance_is_trace_and_at_most_lambda_max_frobenius():
    # g(x) = x A + c with x ~ N(m, Sigma): Var = tr(A^T Sigma A), GC = ||A||_F^2 exactly
    rng = np.random.default_rng(4)
    Sigma = _random_covariance(rng, 5, 2.5)
    A = rng.standard_normal((5, 3))
    var_exact, gc_exact = np.trace(A.T @ Sigma @ A), np.sum(A ** 2)
    assert var_exact <= 2.5 * gc_exact
    X = rng.multivariate_normal(np.zeros(5), Sigma, size=20_000)
    Z, y = X @ A + 1.0, np.zeros(20_000, dtype=int)
    Z2, y2 = np.vstack([Z, Z + 100.0]), np.concatenate([y, y + 1])  # a second class only to satisfy the API
    assert C.class_variances(Z2, y2)[0] == pytest.approx(var_exact, rel=0.05)
    # equality when every column of A lies along the top eigenvector of Sigma
    lam, Q = np.linalg.eigh(Sigma)
    A_top = np.outer(Q[:, -1], rng.standard_normal(3))
    assert np.trace(A_top.T @ Sigma @ A_top) == pytest.approx(lam[-1] * np.sum(A_top ** 2), rel=1e-12)


# --------------------------------------------------------------------------------------------------------
# The NCC bounds bound the measured NCC error
# --------------------------------------------------------------------------------------------------------

def _gaussian_embeddings(rng, k, p, n, separation):
    """Balanced Gaussian classes in R^p with anisotropic noise; means scaled by ``separation``."""
    centres = separation * rng.standard_normal((k, p))
    scales = rng.uniform(0.3, 1.5, size=(k, p))
    y = np.repeat(np.arange(k), n)
    return centres[y] + scales[y] * rng.standard_normal((k * n, p)), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("separation", [0.7, 1.5, 3.0, 6.0])
def test_ncc_bounds_are_at_least_measured_ncc_error(seed, separation):
    rng = np.random.default_rng(seed)
    Z, y = _gaussian_embeddings(rng, k=4, p=5, n=500, separation=separation)
    error = C.ncc_error(Z, y, means=C.ncc_fit(Z, y))
    directional = B.ncc_error_bound(Z, y, kind="directional").value
    markov = B.ncc_error_bound(Z, y, kind="markov").value
    assert error <= directional <= markov


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ncc_bounds_with_training_means_bound_test_error(seed):
    rng = np.random.default_rng(seed + 10)
    Z, y = _gaussian_embeddings(rng, k=5, p=4, n=400, separation=2.0)
    train = np.arange(len(y)) % 2 == 0
    means = C.ncc_fit(Z[train], y[train])
    error = C.ncc_error(Z[~train], y[~train], means=means)
    for kind in B.KINDS:
        assert error <= B.ncc_error_bound(Z[~train], y[~train], means=means, kind=kind).value


def test_directional_bound_with_shifted_means_stays_valid():
    # the test class sits most of the way towards the other class's centre: a second-moment Cantelli
    # bound would claim < 1/2 while almost every point is misclassified
    rng = np.random.default_rng(5)
    means = np.array([[0.0, 0.0], [1.0, 0.0]])
    y = np.repeat([0, 1], 200)
    Z = np.array([[0.9, 0.0], [1.0, 0.0]])[y] + 0.01 * rng.standard_normal((400, 2))
    error = C.ncc_error(Z, y, means=means)
    assert error > 0.45
    assert error <= B.ncc_error_bound(Z, y, means=means, kind="directional").value


def test_markov_bound_equals_4_km1_cdnv():
    Z, y = _gaussian_embeddings(np.random.default_rng(6), k=6, p=3, n=50, separation=2.0)
    assert B.ncc_error_bound(Z, y, kind="markov").value == pytest.approx(4 * 5 * C.cdnv(Z, y), rel=1e-12)


def test_directional_bound_never_looser_than_markov():
    rng = np.random.default_rng(7)
    for _ in range(60):
        k, p = rng.integers(2, 7), rng.integers(2, 9)
        Z, y = _gaussian_embeddings(rng, k=k, p=p, n=int(rng.integers(5, 40)), separation=rng.uniform(0.2, 5.0))
        means = None if rng.random() < 0.5 else C.class_means(Z, y) + 0.5 * rng.standard_normal((k, p))
        markov = B.ncc_error_bound(Z, y, means=means, kind="markov")
        directional = B.ncc_error_bound(Z, y, means=means, kind="directional")
        assert np.all(directional.pair_terms <= markov.pair_terms * (1 + 1e-12) + 1e-15)
        assert directional.value <= markov.value * (1 + 1e-12)


def test_gc_forms_equal_embedding_forms_when_rho_gc_is_the_variance():
    Z, y = _gaussian_embeddings(np.random.default_rng(8), k=4, p=3, n=60, separation=2.0)
    means, var = C.class_means(Z, y), C.class_variances(Z, y)
    assert B.ncc_error_bound_gc(var / 2.0, means, 2.0, means).value == pytest.approx(B.ncc_error_bound(Z, y).value, rel=1e-12)
    assert B.cdnv_bound_gc(var, means, 1.0).value == pytest.approx(C.cdnv(Z, y), rel=1e-12)
    assert B.nc_gc_bound(var, means, 1.0).value == pytest.approx(C.cdnv(Z, y), rel=1e-12)
    # the directional variances s_ij^2 = u_ij^T Sigma_i u_ij as "directional GC" with rho = 1
    s2 = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                u = (means[j] - means[i]) / np.linalg.norm(means[j] - means[i])
                s2[i, j] = np.mean(((Z[y == i] - means[i]) @ u) ** 2)
    directional = B.ncc_error_bound(Z, y, kind="directional").value
    assert B.ncc_error_bound_directional_gc(s2, means, 1.0, means).value == pytest.approx(directional, rel=1e-10)


def test_nc_gc_bound_equals_cdnv_bound_gc_for_scalar_rho():
    gc = [1.0, 2.0, 3.0]
    assert B.nc_gc_bound(gc, MEANS3, 1.7).value == pytest.approx(B.cdnv_bound_gc(gc, MEANS3, 1.7).value)


def test_implied_rho_is_nc_over_geometric_collapse():
    Z, y = _gaussian_embeddings(np.random.default_rng(9), k=3, p=4, n=30, separation=2.0)
    gc = np.array([0.5, 1.0, 2.0])
    expected = C.cdnv(Z, y) / C.geometric_collapse(gc, C.class_means(Z, y))
    assert B.implied_rho(Z, y, gc) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------------

def test_error_unknown_bound_kind():
    with pytest.raises(ValueError, match=r"kind must be one of \('markov', 'directional', 'sharp'\); got 'chebyshev'"):
        B.ncc_error_bound(ZA, YA, kind="chebyshev")


def test_error_bound_means_shape():
    with pytest.raises(ValueError, match=r"means must have shape \(k, p\) = \(2, 2\).* got shape \(3, 2\)"):
        B.ncc_error_bound(ZA, YA, means=MEANS3)


def test_error_bound_means_name_the_class_that_y_lacks():
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] of means are absent from y"):
        B.ncc_error_bound(ZA, YA, means=MEANS3)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] occur in labels .* but not in y"):
        B.ncc_error_bound(ZA, YA, means=MEANS3, labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels= names the rows of means="):
        B.ncc_error_bound(ZA, YA, labels=np.array([0, 1]))


@pytest.mark.parametrize("kind", ["markov", "directional"])
def test_bound_means_are_matched_to_the_classes_of_y_by_label(kind):
    means = np.array([[1.0, 0.5], [0.2, 5.0]])  # classes 0 and 1
    expected = B.ncc_error_bound(ZA, YA, means=means, kind=kind)
    swapped = B.ncc_error_bound(ZA, YA, means=means[::-1], kind=kind, labels=np.array([1, 0]))
    assert swapped.value == pytest.approx(expected.value, rel=1e-12)
    np.testing.assert_allclose(swapped.pair_terms, expected.pair_terms, rtol=1e-12)


def test_error_bound_coincident_means_named():
    with pytest.raises(ValueError, match=r"classes 4 and 6 have coincident means"):
        B.ncc_error_bound(ZA, np.array([4, 4, 6, 6]), means=np.ones((2, 2)))


def test_error_bound_class_with_one_sample_named():
    with pytest.raises(ValueError, match=r"class 1 has 1 sample in y; ncc_error_bound needs at least 2"):
        B.ncc_error_bound(ZA[:3], YA[:3])


def test_error_rho_shape():
    with pytest.raises(ValueError, match=r"rho must be a scalar or have shape \(3,\).* got shape \(2,\)"):
        B.ncc_error_bound_gc([1.0, 2.0, 3.0], MEANS3, [1.0, 2.0], MEANS3)


def test_error_rho_negative():
    with pytest.raises(ValueError, match=r"rho must be non-negative"):
        B.nc_gc_bound([1.0, 2.0, 3.0], MEANS3, -1.0)


def test_error_dir_gc_shape():
    with pytest.raises(ValueError, match=r"dir_gc must have shape \(k, k\) = \(3, 3\).* got shape \(3, 2\)"):
        B.ncc_error_bound_directional_gc(np.ones((3, 2)), MEANS3, 1.0, MEANS3)


def test_error_class_gc_non_finite():
    with pytest.raises(ValueError, match=r"class_gc contains 1 non-finite values"):
        B.cdnv_bound_gc([1.0, np.nan, 3.0], MEANS3, 1.0)


def test_error_poincare_needs_two_inputs():
    with pytest.raises(ValueError, match=r"Xc must be an array of at least 2 inputs .* got shape \(1, 3\)"):
        B.poincare_gaussian(np.ones((1, 3)))


def test_error_poincare_constants_label_mismatch():
    with pytest.raises(ValueError, match=r"y has 3 labels but X has 4 rows"):
        B.poincare_constants(np.ones((4, 2)), np.array([0, 1, 1]))


def test_error_implied_rho_zero_gc():
    with pytest.raises(ValueError, match=r"class_gc is zero for every class"):
        B.implied_rho(ZA, YA, [0.0, 0.0])


# --------------------------------------------------------------------------------------------------------
# Device arrays: the strict stand-in refuses any implicit trip to the host
# --------------------------------------------------------------------------------------------------------

@pytest.fixture
def strict():
    import strict_device

    return strict_device.register()


DEVICE_BOUNDS = {
    "markov": lambda Z, y, xp: B.ncc_error_bound(Z, y).value,
    "directional": lambda Z, y, xp: B.ncc_error_bound(Z, y, kind="directional").value,
    "directional_given_means": lambda Z, y, xp: B.ncc_error_bound(
        Z, y, means=C.class_means(Z, y) + 0.3, kind="directional").value,
    "ncc_error_bound_gc": lambda Z, y, xp: B.ncc_error_bound_gc([1.0, 2, 3, 4], C.class_means(Z, y), 2.0, C.class_means(Z, y) + 0.1).value,
    "ncc_error_bound_directional_gc": lambda Z, y, xp: B.ncc_error_bound_directional_gc(
        xp.asarray(np.arange(16.0).reshape(4, 4)), C.class_means(Z, y), [1.0, 2, 3, 4], C.class_means(Z, y) + 0.1).value,
    "nc_gc_bound": lambda Z, y, xp: B.nc_gc_bound([1.0, 2, 3, 4], C.class_means(Z, y), [1.0, 2, 3, 4]).value,
    "cdnv_bound_gc": lambda Z, y, xp: B.cdnv_bound_gc([1.0, 2, 3, 4], C.class_means(Z, y), [1.0, 2, 3, 4]).value,
    "implied_rho": lambda Z, y, xp: B.implied_rho(Z, y, [1.0, 2, 3, 4]),
    "poincare_gaussian": lambda Z, y, xp: B.poincare_gaussian(Z),
    "poincare_gaussian_gram": lambda Z, y, xp: B.poincare_gaussian(Z[:2]),
    "poincare_constants": lambda Z, y, xp: B.poincare_constants(Z, y),
}


@pytest.mark.parametrize("name", list(DEVICE_BOUNDS))
def test_bounds_stay_on_the_device_and_match_the_host(name, strict):
    Z, y = _gaussian_embeddings(np.random.default_rng(10), k=4, p=3, n=30, separation=2.0)
    bound = DEVICE_BOUNDS[name]
    np.testing.assert_allclose(bound(strict.asarray(Z), y, strict), bound(Z, y, np), rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------
# The GC bound on Gaussian classes, where rho and GC are exact: valid with the offset, not without
# ----------------------------------------------------------------------------------------------------------
def _linear_gaussian_problem(rng, k, D, p, spread, shift):
    """Gaussian input classes N(c_i, Sigma_i) in R^D, a linear embedding g(x) = A x, and NCC centres mu_i moved
    ``shift`` away from the class means A c_i. Exact: rho_i = lambda_max(Sigma_i), GC_i = ||A||_F^2,
    dir_gc[i, j] = ||A^T u_ij||^2."""
    A = rng.standard_normal((p, D)) / np.sqrt(D)
    centres = spread * rng.standard_normal((k, D))
    roots = [rng.standard_normal((D, D)) * rng.uniform(0.3, 1.0) / np.sqrt(D) for _ in range(k)]
    covs = [L @ L.T for L in roots]
    class_means = centres @ A.T  # (k, p): the true mean embeddings m_i
    mu = class_means + shift * rng.standard_normal((k, p))  # the NCC centres
    rho = np.array([np.linalg.eigvalsh(S)[-1] for S in covs])
    gc = np.full(k, np.sum(A ** 2))
    diff = mu[None, :, :] - mu[:, None, :]
    U = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-300)
    dir_gc = np.sum(np.einsum("ijp,pd->ijd", U, A) ** 2, axis=-1)
    return A, centres, roots, class_means, mu, rho, gc, dir_gc


def _ncc_error_by_sampling(rng, A, centres, roots, mu, n=20_000):
    """The class-averaged NCC error with centres ``mu``, by sampling n points of every class (std <= 0.0036)."""
    errs = []
    for i, (c, L) in enumerate(zip(centres, roots)):
        Z = (c + rng.standard_normal((n, len(c))) @ L.T) @ A.T
        nearest = np.argmin(((Z[:, None, :] - mu[None, :, :]) ** 2).sum(-1), axis=1)
        errs.append(np.mean(nearest != i))
    return float(np.mean(errs))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0, 6.0])
def test_the_gc_bound_with_the_offset_is_at_least_the_ncc_error_on_gaussian_classes(seed, shift):
    rng = np.random.default_rng(seed)
    A, centres, roots, m, mu, rho, gc, dir_gc = _linear_gaussian_problem(rng, k=3, D=6, p=4, spread=2.0, shift=shift)
    error = _ncc_error_by_sampling(rng, A, centres, roots, mu)
    tol = 4 * 0.0036  # four standard deviations of the sampled error
    assert B.ncc_error_bound_gc(gc, mu, rho, m).value >= error - tol
    assert B.ncc_error_bound_directional_gc(dir_gc, mu, rho, m).value >= error - tol


def test_the_gc_bound_without_the_offset_fails_when_the_centres_are_not_the_class_means():
    """The counterexample: the form (4/k) sum rho_i GC_i / d_ij^2 (no offset) bounds the variance about the class
    means, not the spread about the centres, so with centres away from the class means it falls far below the
    NCC error; the form with the offset stays above it."""
    A = 0.1 * np.eye(2)  # g(x) = 0.1 x: GC = 0.02 exactly
    centres = np.array([[0.0, 0.0], [20.0, 0.0]])
    roots = [np.eye(2), np.eye(2)]  # Sigma = I: rho = 1 exactly
    m = centres @ A.T  # true class means (0, 0) and (2, 0)
    mu = np.array([[4.0, 0.0], [2.0, 0.0]])  # class 0's centre put beyond class 1: class 0 is always misclassified
    rho, gc = np.ones(2), np.full(2, 0.02)
    error = _ncc_error_by_sampling(np.random.default_rng(0), A, centres, roots, mu)
    old = B.ncc_error_bound_gc(gc, mu, rho, mu).value  # sample means taken equal to the centres: no offset
    new = B.ncc_error_bound_gc(gc, mu, rho, m).value
    assert error == pytest.approx(0.5, abs=0.01)
    assert old == pytest.approx((4 / 2) * 2 * 0.02 / 4, rel=1e-12) and old < 0.05  # 0.02: a "bound" 25x too low
    assert new >= error


# ---- where an assumption breaks ----------------------------------------------------------------------------
def _bimodal(rng, n):
    """2-D inputs: class 0 is two clusters (x1 = -3 and +3), class 1 one cluster at x1 = +3; sd 0.3."""
    x0 = np.column_stack([rng.choice([-3.0, 3.0], n), np.zeros(n)]) + 0.3 * rng.standard_normal((n, 2))
    x1 = np.column_stack([np.full(n, 3.0), np.zeros(n)]) + 0.3 * rng.standard_normal((n, 2))
    return np.vstack([x0, x1]), np.repeat([0, 1], n)


def test_the_gaussian_proxy_rho_fails_for_a_bimodal_class_and_the_poincare_check_says_so():
    """A 1-hidden-layer tanh map g(x) = tanh(x1) saturates on both clusters of class 0: small GC, but the
    class's embedding sits at -1 and +1 (variance ~1). The proxy rho = lambda_max Cov(x | c) is far too small
    for that class, the "GC bound" falls 13x below the class-averaged NCC error, and the per-class Poincare
    check of Figure 3 fails, while the rho-free Markov bound stays above the error."""
    from minigcnc import figure3

    rng = np.random.default_rng(0)
    (Xtr, ytr), (Xte, yte) = _bimodal(rng, 2000), _bimodal(rng, 2000)
    g = lambda X: np.tanh(X[:, :1])  # noqa: E731  (W = [1, 0], no bias, V = 1)
    class_gc = lambda X, y: np.array([np.mean((1 - np.tanh(X[y == c, 0]) ** 2) ** 2) for c in (0, 1)])  # noqa: E731
    means, Zte = C.class_means(g(Xtr), ytr), g(Xte)
    error = C.ncc_error(Zte, yte, means=means, balanced=True)
    rho = B.poincare_constants(Xtr, ytr)
    gc_test = class_gc(Xte, yte)
    bound = B.ncc_error_bound_gc(gc_test, means, rho, C.class_means(Zte, yte)).value
    margins = B.poincare_margins(gc_test, C.class_variances(Zte, yte), rho)
    print(f"bimodal: class-averaged NCC error {error:.3f}, GC bound with the proxy rho {bound:.4f} "
          f"({error / bound:.0f}x below), Poincare margins {margins}")
    assert error == pytest.approx(0.25, abs=0.02) and bound < error / 10
    assert margins[0] < 0.01 < 1 <= margins[1]
    history = {"config": {"seed": 0}, "status": "finished", "evals": [{"step": 0, "poincare_margin": list(margins)}]}
    check = figure3.slack_check([history], "bimodal", "poincare_margin", "Poincare step", "rho_c GC_c / Var_c")
    assert check.verdict == "fails" and check.value == pytest.approx(margins[0])
    assert B.ncc_error_bound(Zte, yte, means=means, kind="markov").value >= error


def test_markov_bound_bounds_the_class_averaged_error_not_the_plain_one_on_unbalanced_classes():
    """900 / 100 test images, centres 0 and 1: 20% of class 0 sits at 0.51 (nearer centre 1), class 1 at 1.
    Markov: (1/2)(4 * 0.2 * 0.51^2 + 0) = 0.104 >= class-averaged error 0.1, but < the plain error 0.18."""
    Z = np.concatenate([np.zeros(720), np.full(180, 0.51), np.ones(100)])[:, None]
    y = np.repeat([0, 1], [900, 100])
    means = np.array([[0.0], [1.0]])
    bound = B.ncc_error_bound(Z, y, means=means, kind="markov").value
    assert bound == pytest.approx(0.5 * 4 * 0.2 * 0.51 ** 2)
    balanced, plain = C.ncc_error(Z, y, means=means, balanced=True), C.ncc_error(Z, y, means=means)
    assert balanced == pytest.approx(0.1) and balanced <= bound
    assert plain == pytest.approx(0.18) and plain > bound


def test_poincare_margins_hand_computed():
    np.testing.assert_allclose(B.poincare_margins([1.0, 2.0], [2.0, 8.0], [3.0, 2.0]), [1.5, 0.5])
    assert np.isinf(B.poincare_margins([1.0], [0.0], 1.0)[0])
    with pytest.raises(ValueError, match="class_gc and variances"):
        B.poincare_margins([1.0, 2.0], [1.0], 1.0)


# --------------------------------------------------------------------------------------------------------
# Capped union bounds, the sharp moment bound, Clopper-Pearson
# --------------------------------------------------------------------------------------------------------

def test_union_bounds_carry_their_class_terms_and_capped_caps_each_class_at_one():
    r = B.ncc_error_bound(ZA, YA, kind="markov")  # pair terms (4/2) * 1/26 each: class terms 4/26
    np.testing.assert_allclose(r.class_terms, [4 / 26, 4 / 26], rtol=1e-12)
    assert r.value == pytest.approx(r.class_terms.mean(), rel=1e-12)
    assert B.capped(r).value == pytest.approx(r.value, rel=1e-12)  # nothing above 1 to cap
    rng = np.random.default_rng(0)
    Z, y = _gaussian_embeddings(rng, k=4, p=3, n=100, separation=0.7)
    for result in (B.ncc_error_bound(Z, y, kind="markov"), B.ncc_error_bound(Z, y, kind="directional"),
                   B.ncc_error_bound_gc(np.ones(4), C.class_means(Z, y), 2.0, C.class_means(Z, y) + 0.1)):
        assert result.value == pytest.approx(result.class_terms.mean(), rel=1e-12)
        np.testing.assert_allclose(result.class_terms, 4 * result.pair_terms.sum(axis=1), rtol=1e-12)
        c = B.capped(result)
        np.testing.assert_allclose(c.class_terms, np.minimum(1.0, result.class_terms))
        assert c.value == pytest.approx(np.mean(np.minimum(1.0, result.class_terms)), rel=1e-12) and c.value <= 1.0
    assert B.ncc_error_bound(Z, y, kind="markov").value > 1  # vacuous uncapped, so the cap did something
    error = C.ncc_error(Z, y, means=C.ncc_fit(Z, y), balanced=True)
    assert error <= B.capped(B.ncc_error_bound(Z, y, kind="directional")).value


def test_capped_refuses_a_bound_without_class_terms():
    with pytest.raises(ValueError, match="result has no class_terms"):
        B.capped(B.nc_gc_bound(np.ones(3), MEANS3, 1.0))
    with pytest.raises(TypeError, match="result must be a BoundResult"):
        B.capped(0.5)


def _moments(Z, y):
    """Class means (k, p) and covariances with ddof 0 (k, p, p), the moments the sharp bound uses."""
    ks = np.unique(y)
    return (np.stack([Z[y == c].mean(axis=0) for c in ks]),
            np.stack([np.cov(Z[y == c].T, ddof=0).reshape(Z.shape[1], Z.shape[1]) for c in ks]))


@pytest.mark.parametrize("seed", [0, 1])
def test_sharp_bound_for_two_classes_is_the_one_sided_chebyshev_bound(seed):
    rng = np.random.default_rng(seed)
    Z, y = _gaussian_embeddings(rng, k=2, p=3, n=300, separation=1.5)
    means = C.class_means(Z, y) + 0.2 * rng.standard_normal((2, 3))  # centres off the test means: offsets matter
    sharp = B.ncc_error_bound(Z, y, means=means, kind="sharp")
    u = (means[1] - means[0]) / np.linalg.norm(means[1] - means[0])
    m, S = _moments(Z, y)
    for i, sign in ((0, 1.0), (1, -1.0)):
        s2 = sign * u @ S[i] @ u * sign
        gap = np.linalg.norm(means[1] - means[0]) / 2 - sign * u @ (m[i] - means[i])
        assert sharp.class_terms[i] == pytest.approx(s2 / (s2 + gap ** 2), rel=1e-6, abs=1e-8)
    direc = B.ncc_error_bound(Z, y, means=means, kind="directional")
    assert sharp.value == pytest.approx(direc.value, rel=1e-6) and sharp.pair_terms is None


@pytest.mark.parametrize("seed,separation", [(0, 0.8), (1, 1.5), (2, 3.0)])
def test_sharp_bound_lies_between_the_largest_and_the_capped_sum_of_the_pair_cantelli_terms(seed, separation):
    rng = np.random.default_rng(seed)
    k = 5
    Z, y = _gaussian_embeddings(rng, k=k, p=6, n=200, separation=separation)
    means = C.class_means(Z, y) + 0.1 * rng.standard_normal((k, 6))
    sharp = B.ncc_error_bound(Z, y, means=means, kind="sharp").class_terms
    pairs = k * B.ncc_error_bound(Z, y, means=means, kind="directional").pair_terms  # (k, k) Cantelli terms
    tol = 1e-6
    assert np.all(pairs.max(axis=1) <= sharp + tol)
    assert np.all(sharp <= np.minimum(1.0, pairs.sum(axis=1)) + tol)
    assert np.all((0 <= sharp) & (sharp <= 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_sharp_bound_is_at_least_the_error_of_the_sample_whose_moments_it_uses(seed):
    """The empirical distribution of a sample has exactly the sample's mean and (ddof 0) covariance, so the
    sharp bound from those moments bounds its class-averaged NCC error, a large Gaussian sample included."""
    rng = np.random.default_rng(seed)
    Z, y = _gaussian_embeddings(rng, k=4, p=3, n=20000, separation=1.2)
    half = np.arange(len(y)) % 2 == 0
    means = C.class_means(Z[half], y[half])
    error = C.ncc_error(Z, y, means=means, balanced=True)
    sharp = B.ncc_error_bound(Z, y, means=means, kind="sharp").value
    assert 0.05 < error <= sharp <= B.capped(B.ncc_error_bound(Z, y, means=means, kind="directional")).value + 1e-6


def test_sharp_bound_from_moments_equals_the_one_from_embeddings_and_grows_with_the_covariance():
    rng = np.random.default_rng(3)
    Z, y = _gaussian_embeddings(rng, k=3, p=4, n=200, separation=2.0)
    means = C.class_means(Z, y) + 0.1
    m, S = _moments(Z, y)
    from_z = B.ncc_error_bound(Z, y, means=means, kind="sharp")
    from_m = B.ncc_error_bound_sharp_from_moments(m, S, means)
    np.testing.assert_allclose(from_m.class_terms, from_z.class_terms, rtol=1e-6, atol=1e-8)
    A = rng.standard_normal((3, 4, 4))
    bigger = B.ncc_error_bound_sharp_from_moments(m, S + 0.3 * A @ A.transpose(0, 2, 1), means)
    assert np.all(bigger.class_terms >= from_m.class_terms - 1e-7) and bigger.value > from_m.value


def test_sharp_bound_is_one_when_a_test_mean_is_past_a_boundary_and_zero_without_spread():
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    S = np.zeros((3, 2, 2)) + 0.1 * np.eye(2)
    past = means.copy()
    past[0] = [1.5, 0.0]  # class 0's mean is nearer centre 1
    assert B.ncc_error_bound_sharp_from_moments(past, S, means).class_terms[0] == 1.0
    assert B.ncc_error_bound_sharp_from_moments(means, np.zeros((3, 2, 2)), means).value == 0.0


def test_sharp_worst_case_has_the_given_moments_and_puts_the_bound_outside_the_cell():
    rng = np.random.default_rng(4)
    means = rng.standard_normal((4, 5))
    m = means[0] + 0.2 * rng.standard_normal(5)
    A = rng.standard_normal((5, 5))
    S = 0.3 * A @ A.T
    w = B.sharp_worst_case(m, S, means, 0)
    value = B.ncc_error_bound_sharp_from_moments(np.vstack([m, means[1:]]), np.stack([S] * 4), means).class_terms[0]
    assert w["value"] == pytest.approx(value, rel=1e-9) and 0 < w["value"] < 1 and not w["trivial"]
    assert w["masses"].sum() == pytest.approx(w["value"], rel=1e-6) and w["masses"].sum() <= 1 + 1e-9
    R = w["remainder"]
    assert np.linalg.eigvalsh(R).min() >= -1e-6 * np.abs(R).max()  # moments left for the mass inside the cell
    assert R[-1, -1] == pytest.approx(1 - w["masses"].sum(), abs=1e-12)
    ext = np.hstack([w["atoms"], np.ones((len(w["masses"]), 1))])
    total = R + (ext * w["masses"][:, None]).T @ ext  # atoms + remainder = the given moment matrix
    np.testing.assert_allclose(total, np.block([[S + np.outer(m, m), m[:, None]], [m[None], np.ones((1, 1))]]),
                               atol=1e-10)
    for x, j in zip(w["atoms"], w["halfspaces"]):  # each atom lies in its halfspace: nearer mu_j than mu_0
        a, b = 2 * (means[j] - means[0]), means[j] @ means[j] - means[0] @ means[0]
        assert a @ x >= b - 1e-5 * (1 + abs(b))
        assert np.linalg.norm(x - means[j]) <= np.linalg.norm(x - means[0]) + 1e-5


def test_sharp_bound_refuses_bad_inputs_naming_them():
    m, S = MEANS3 + 0.1, np.stack([np.eye(2)] * 3)
    with pytest.raises(ValueError, match=r"covs must have shape \(k, p, p\) = \(3, 2, 2\)"):
        B.ncc_error_bound_sharp_from_moments(m, S[:2], MEANS3)
    with pytest.raises(ValueError, match=r"test_means must have the shape of means \(3, 2\)"):
        B.ncc_error_bound_sharp_from_moments(m[:, :1], S, MEANS3)
    with pytest.raises(ValueError, match="covs must be positive semidefinite"):
        B.ncc_error_bound_sharp_from_moments(m, -S, MEANS3)
    with pytest.raises(ValueError, match="covs must be symmetric"):
        B.ncc_error_bound_sharp_from_moments(m, S + np.array([[0, 1.0], [0, 0]]), MEANS3)
    with pytest.raises(ValueError, match="covs"):
        B.ncc_error_bound_sharp_from_moments(m, S * np.nan, MEANS3)
    with pytest.raises(ValueError, match="coincid|equal|distinct"):
        B.ncc_error_bound_sharp_from_moments(m, S, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"i must be a class row of means, an integer in 0..2"):
        B.sharp_worst_case(m[0], S[0], MEANS3, 3)


def test_a_sharp_bound_solver_failure_is_a_value_error_naming_the_problem(monkeypatch):
    monkeypatch.setattr(B, "SHARP_SOLVERS", ("NO_SUCH_SOLVER",))
    with pytest.raises(ValueError, match=r"sharp-bound SDP \(2 halfspaces in 2 dimensions\) was not solved "
                                         r"\(NO_SUCH_SOLVER: not installed\)"):
        B.ncc_error_bound_sharp_from_moments(MEANS3 + 0.1, np.stack([np.eye(2)] * 3), MEANS3)


@pytest.mark.parametrize("errors,n", [(0, 10), (3, 100), (10, 10), (57, 1000), (1, 1)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_upper_equals_scipys_exact_one_sided_interval(errors, n, confidence):
    from scipy.stats import binomtest

    expected = binomtest(errors, n, alternative="less").proportion_ci(confidence, method="exact").high
    assert B.clopper_pearson_upper(errors, n, confidence) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ncc_error_cp_upper_pools_the_first_n_samples_of_every_class():
    y = np.repeat([0, 1, 2], 100)
    wrong = np.zeros(300, bool)
    wrong[[0, 100, 101, 200, 201, 202]] = True
    assert B.ncc_error_cp_upper(wrong, y) == B.clopper_pearson_upper(6, 300)  # balanced: every sample
    y2, w2 = np.concatenate([y, [1] * 50]), np.concatenate([wrong, [True] * 50])  # class 1 has 150: its last 50 unused
    assert B.ncc_error_cp_upper(w2, y2) == B.clopper_pearson_upper(6, 300)
    order = np.random.default_rng(0).permutation(350)  # "first" is in the order given
    y3, w3 = y2[order], w2[order]
    firsts = np.concatenate([np.flatnonzero(y3 == c)[:100] for c in range(3)])
    assert B.ncc_error_cp_upper(w3, y3, 0.9) == B.clopper_pearson_upper(int(w3[firsts].sum()), 300, 0.9)


def test_ncc_error_cp_upper_covers_the_class_averaged_error_of_unequal_classes():
    """Poisson-binomial trials (class errors 0.02, 0.1, 0.3; counts 40, 55, 70): the 90% bound covers
    p_bar = 0.14 in at least 90% of 2,000 draws (Hoeffding 1956 makes the pooled CP bound valid)."""
    rng = np.random.default_rng(1)
    p, counts = np.array([0.02, 0.1, 0.3]), np.array([40, 55, 70])
    y = np.repeat(np.arange(3), counts)
    covered = [B.ncc_error_cp_upper(rng.random(len(y)) < p[y], y, 0.9) >= p.mean() for _ in range(2000)]
    assert np.mean(covered) >= 0.9


def test_clopper_pearson_refuses_bad_counts_and_confidence():
    with pytest.raises(ValueError, match="0 <= errors <= n"):
        B.clopper_pearson_upper(11, 10)
    with pytest.raises(ValueError, match="0 <= errors <= n"):
        B.clopper_pearson_upper(0, 0)
    with pytest.raises(TypeError, match="errors must be an integer count"):
        B.clopper_pearson_upper(0.5, 10)
    with pytest.raises(ValueError, match=r"confidence must be a probability in \(0, 1\)"):
        B.clopper_pearson_upper(1, 10, confidence=95)
    with pytest.raises(ValueError, match=r"wrong must be a \(N,\) array of booleans"):
        B.ncc_error_cp_upper(np.array([0.5, 1.0]), [0, 1])
    with pytest.raises(ValueError, match="y has 1 labels but wrong has 2 rows"):
        B.ncc_error_cp_upper(np.array([True, False]), [0])


@pytest.mark.parametrize("s2", [0.1, 0.5, 2.0])
def test_sharp_bound_between_two_collinear_neighbours_is_the_two_sided_chebyshev_bound(s2):
    """Centres -2, 0, 2 on a line in R^2: the middle class errs when |z_1| >= 1, and the sharp bound from mean 0
    and variance s2 along the line is Chebyshev's min(1, s2 / 1) (the span of mu_j - mu_i is one line: the problem
    is padded from one dimension to two, exactly)."""
    means = np.array([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    covs = np.stack([np.diag([s2, 0.7])] * 3)
    assert B.ncc_error_bound_sharp_from_moments(means, covs, means).class_terms[1] == pytest.approx(
        min(1.0, s2), rel=1e-6, abs=1e-8)
