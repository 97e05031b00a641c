"""Jacobian moments of a model's embedding: per class ``E_c[J J^T]`` and ``E_c[J Sigma_c J^T]`` (the matrix
Poincare steps of docs/theory.md#h-matrix-and-covariance-weighted-poincare-steps) and the average gradient outer
product ``E[J^T J]``, whose trace is GC (docs/theory.md#agop). Every J is the exact input Jacobian of
``jacobians.input_jacobian``; ``gc.py`` re-exports these names.
"""
import numpy as onp

from . import checks
from .backend import get_xp, to_numpy
from .classes import Classes
from .jacobians import input_jacobian


# --------------------------------------------------------------------------------------------------
# Jacobian moments per class (the matrix Poincare steps, docs/theory.md#h-matrix-and-covariance-weighted-poincare-steps)
# --------------------------------------------------------------------------------------------------
def class_jacobian_moments(model, params, X, y, input_cov_factors=None, *, batch_size=64):
    """Return per class c (sorted labels of y) ``E_c[J J^T]`` and, with factors, ``E_c[J Sigma_c J^T]``.

    ``J = J_g(x)`` (p x D) is the exact Jacobian of the embedding with respect to the flattened input
    (``input_jacobian``), ``E_c`` the mean over the samples of class c. Returns ``(JJ, JSJ)``: host float64 arrays
    (k, p, p), ``JSJ`` None without ``input_cov_factors``. ``trace(JJ[c]) = class_gc(...)[c]``. With
    ``input_cov_factors`` a sequence of k arrays ``F_c`` (r_c, D), ``Sigma_c = F_c^T F_c`` (the class's input
    covariance) and ``E_c[J Sigma_c J^T] = E_c[(J F_c^T)(J F_c^T)^T]``: the right side of the Gaussian Poincare
    inequality in matrix form, ``Cov_c(g) <= E_c[J Sigma_c J^T]`` for x ~ N(m_c, Sigma_c)
    (docs/theory.md#h-matrix-and-covariance-weighted-poincare-steps). ``batch_size``: samples
    per Jacobian pass (memory: batch_size x p x D values).
    """
    Xc = model.check_input(X)
    y = to_numpy(y)
    if y.ndim != 1 or len(y) != Xc.shape[0]:
        raise ValueError(f"y must be a 1-D array with one label per sample of X ({Xc.shape[0]}); got shape {y.shape}")
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    classes = Classes(y)
    k, p, D = classes.k, model.embed_dim, model.input_dim
    xp = get_xp(params[-1][0])
    if input_cov_factors is not None:
        if len(input_cov_factors) != k:
            raise ValueError(f"input_cov_factors must hold one factor F_c (r_c, D={D}) per class, {k} of them; got "
                             f"{len(input_cov_factors)}")
        for c, F in enumerate(input_cov_factors):
            if F.ndim != 2 or F.shape[1] != D:
                raise ValueError(f"input_cov_factors[{c}] must have shape (r_c, D) = (r_c, {D}) with Sigma_c = F_c^T "
                                 f"F_c; got shape {tuple(F.shape)}")
    Xc = checks.finite(Xc, "X")
    JJ = onp.zeros((k, p, p))
    JSJ = None if input_cov_factors is None else onp.zeros((k, p, p))
    for c in range(k):
        rows = onp.flatnonzero(classes.index == c)
        F = None if input_cov_factors is None else xp.asarray(input_cov_factors[c])
        for a in range(0, len(rows), batch_size):
            J = input_jacobian(model, params, Xc[xp.asarray(rows[a:a + batch_size])])  # (n, p, D)
            JJ[c] += to_numpy(xp.sum(J @ xp.swapaxes(J, 1, 2), axis=0)).astype(onp.float64)  # sum_n J_n J_n^T
            if F is not None:
                JF = (J.reshape(-1, D) @ F.astype(J.dtype).T).reshape(J.shape[0], p, -1)  # (n, p, r_c)
                JSJ[c] += to_numpy(xp.sum(JF @ xp.swapaxes(JF, 1, 2), axis=0)).astype(onp.float64)
        JJ[c] /= len(rows)
        if JSJ is not None:
            JSJ[c] /= len(rows)
    return JJ, JSJ


# --------------------------------------------------------------------------------------------------
# The average gradient outer product (AGOP), whose trace is GC (docs/theory.md#agop)
# --------------------------------------------------------------------------------------------------
def agop(model, params, X, *, target="embed", batch_size=64):
    """Return the average gradient outer product ``E[J^T J] = (1/N) sum_n J(x_n)^T J(x_n)``, host float64 (D, D).

    ``J(x_n)`` (d_out x D) is the exact Jacobian of the embedding (or of the logits, ``target="logits"``) with
    respect to the flattened input (``input_jacobian``). ``trace(agop) = GC`` exactly (``trace J^T J = ||J||_F^2``); its
    eigenvectors are the input directions the map is sensitive to and its eigenvalues how much of the GC each
    carries (Radhakrishnan et al. 2024; Beaglehole, Sukenik, Mondelli, Belkin 2024 on AGOP and deep neural
    collapse). ``batch_size``: samples per Jacobian pass (memory: batch_size x d_out x D values); D x D values are
    kept, so for inputs of a few thousand dimensions at most.
    """
    Xc = model.check_input(X)
    N = Xc.shape[0]
    if N == 0:
        raise ValueError("X has 0 samples; the AGOP is a mean over samples, so give at least one")
    batch_size = checks.integer("batch_size", batch_size, minimum=1)
    Xc = checks.finite(Xc, "X")
    D = model.input_dim
    A = onp.zeros((D, D))
    for a in range(0, N, batch_size):
        J = to_numpy(input_jacobian(model, params, Xc[a:a + batch_size], target=target)).astype(onp.float64)
        Jf = J.reshape(-1, D)  # the rows of every sample's J stacked: sum_n J_n^T J_n = Jf^T Jf
        A += Jf.T @ Jf
    return A / N


def agop_directions(A, fraction=0.9):
    """Return the number of eigenvalues of the AGOP ``A`` (largest first) that carry ``fraction`` of its trace (int).

    The smallest r with ``sum_{i<=r} lambda_i >= fraction * sum_i lambda_i``: how many input directions carry
    that share of the GC (negative round-off eigenvalues count as 0). ``A``: the (D, D) matrix, or its
    eigenvalues (1-D, any order). ``fraction`` in (0, 1].
    """
    fraction = checks.number("fraction", fraction)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a share of the trace in (0, 1]; got fraction={fraction!r}")
    A = onp.asarray(A, dtype=onp.float64)
    lam = onp.clip(onp.sort(A if A.ndim == 1 else onp.linalg.eigvalsh(A))[::-1], 0.0, None)
    total = lam.sum()
    if total == 0:
        return 0
    return int(onp.searchsorted(onp.cumsum(lam), fraction * total * (1 - 1e-12)) + 1)
