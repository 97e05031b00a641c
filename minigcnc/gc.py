"""Geometric complexity (GC): its definition, its unbiased estimators, class and directional GC, the regularizer.

For a map ``g: R^D -> R^p`` and a sample ``S = {x_1..x_N}`` (docs/theory.md#geometric-complexity; Dherin et al. 2022,
arXiv 2209.13083; Munn, Dherin & Gonzalvo 2024, arXiv 2405.15706):

    GC(g, S) = (1/N) * sum_i || J_g(x_i) ||_F^2,        J_g(x) = dg/dx   (p x D)

a discrete Dirichlet energy: the plain sum of all squared Jacobian entries (no division by p or D), averaged
over samples. ``target="embed"`` measures the embedding g (the penultimate features, the paper's GC);
``target="logits"`` the logits (Dherin et al.'s logit GC). Images are flattened: D = C*H*W.

- ``reference_gc``: GC as the definition reads, by ``autograd.jacobian`` per sample (the tests' oracle);
- ``geometric_complexity`` (float; ``gc_value`` keeps the device scalar): GC exactly, or one of the paper's
  unbiased estimators; ``gc_estimator_variance``: each estimator's exact variance.
- ``class_gc`` (k,): GC(g, S_c) per class; ``directional_gc`` (k, k): the mean squared norm of J^T u_ij along
  the directions between class means (docs/theory.md#d-directional-gc-form).
- ``gc_penalty`` / ``make_gc_penalty``: GC of a batch as a differentiable regularizer.
- re-exported: the Jacobian moments of ``moments.py`` and ``jacobians.py``'s ``input_jacobian`` and
  ``jacobian_sq_norms``, the pull-back route (with ``jacobian_passes.py``'s exact savings) of the fast exact GC.

Every function refuses a non-finite X (a NaN sample would otherwise count as zero) and runs on the backend of
``params``; autograd can differentiate the penalty.
"""
import math

import numpy as onp
from autograd import jacobian

from . import checks, ops
from .backend import get_xp, to_numpy
from .classes import Classes, rows_of_classes
from .jacobian_passes import ranges
from .moments import agop, agop_directions, class_jacobian_moments  # noqa: F401 - part of gc's public API
from .jacobians import (  # noqa: F401 - input_jacobian and jacobian_sq_norms are part of gc's public API
    Cotangents,
    batched_sq_norms,
    check_target,
    forward,
    input_jacobian,
    jacobian_blocks,
    jacobian_sq_norms,
    output_dim,
    sq_norms,
)

METHODS = ("exact", "subset", "mask", "outputs", "hutchinson")
PENALTY_METHODS = ("exact", "hutchinson")
PROBE_DISTS = ("gaussian", "rademacher")


# ---- Arguments ---------------------------------------------------------------------------------------------
_LEVELS = {"exact": (), "subset": ("n",), "mask": ("q",), "outputs": ("m",), "hutchinson": ("probes", "dist")}


def _checked_inputs(model, X):
    """X shaped (N, *input_shape) and finite, or a ValueError naming X (and the first bad index)."""
    return checks.finite(model.check_input(X), "X")


def _rng(rng, method):
    return checks.as_rng(rng, why_needed=f"method={method!r} needs rng= to draw its random numbers")


def _check_dist(dist):
    if dist is not None and dist not in PROBE_DISTS:
        raise ValueError(f"dist must be 'gaussian' or 'rademacher'; got dist={dist!r}")


def _check_levels(method, N, p, n, q, m, probes, dist):
    """Validate ``method`` and its level parameter; raises naming the parameter."""
    checks.one_of("method", method, METHODS)
    given = {"n": n, "q": q, "m": m, "probes": probes, "dist": dist}
    extra = [k for k, v in given.items() if v is not None and k not in _LEVELS[method]]
    if extra:
        uses = ", ".join(f"{k}=" for k in _LEVELS[method]) or "no level parameter"
        got = ", ".join(f"{k}={given[k]!r}" for k in extra)
        raise ValueError(f"method={method!r} takes {uses}; got {got}")
    if method == "subset":
        if n is None:
            raise ValueError(f"method='subset' needs n= (samples to draw without replacement, 1..N={N})")
        checks.integer("n", n, meaning="samples to draw without replacement")
        if n > N:
            raise ValueError(f"n must be at most the number of samples N={N} (drawn without replacement); got n={n}")
    elif method == "mask":
        if q is None:
            raise ValueError("method='mask' needs q= (the probability of keeping each Jacobian entry, in (0, 1])")
        if isinstance(q, bool) or not isinstance(q, (int, float, onp.integer, onp.floating)):
            raise TypeError(f"q must be a keep probability in (0, 1]; got {type(q).__name__} {q!r}")
        if not math.isfinite(float(q)) or not 0 < float(q) <= 1:
            raise ValueError(f"q must be a keep probability in (0, 1]; got q={q!r}")
    elif method == "outputs":
        if m is None:
            raise ValueError(f"method='outputs' needs m= (output coordinates to draw, 1..{p})")
        if isinstance(m, bool) or not isinstance(m, (int, onp.integer)):
            raise TypeError(f"m must be an integer in [1, {p}] (output coordinates to draw of the {p}); got "
                            f"{type(m).__name__} {m!r}")
        if not 1 <= m <= p:
            raise ValueError(f"m must be an integer in [1, {p}] (output coordinates to draw of the {p}); got m={m!r}")
    elif method == "hutchinson":
        checks.integer("probes", probes, allow_none=True, meaning="probe vectors per sample")
        _check_dist(dist)


def _probes(rng, shape, dist, dtype, xp):
    """Probe vectors v with E[v v^T] = I, drawn on the host (one seed, same numbers on every backend)."""
    if dist == "rademacher":
        V = rng.integers(0, 2, size=shape) * 2.0 - 1.0
    else:
        V = rng.standard_normal(shape)
    return xp.asarray(V.astype(dtype))


# ---- GC and its unbiased estimators ------------------------------------------------------------------------
def reference_gc(model, params, X, target="embed"):
    """GC by its definition, as a float: per sample the full Jacobian by ``autograd.jacobian`` of the embedding
    (or the logits), its squared Frobenius norm, the mean over samples. Independent of the pull-back engine
    (``jacobians.py``); for small problems (tests, the tutorial). ``geometric_complexity`` is equal to it."""
    check_target(target)
    g = model.embed if target == "embed" else model.logits
    f = lambda x: g(params, x[None], fused=False)[0]  # one sample x (D,) -> g(x) (p,) or (k,)
    X = _checked_inputs(model, X).reshape(len(X), -1)
    return float(onp.mean([onp.sum(to_numpy(jacobian(f)(x)) ** 2) for x in X]))


def gc_value(model, params, X, *, method="exact", target="embed", rng=None, n=None, q=None, m=None, probes=None,
             dist=None, chunk=None, batch_size=None):
    """Return GC or an unbiased estimate of it as a 0-d array on the params' backend (no host transfer).

    Same arguments as ``geometric_complexity`` (which returns this value as a Python float).
    """
    from .train import check_params  # (train imports no gc: no cycle)

    check_params(model, params)
    p = output_dim(model, target)
    Xc = model.check_input(X)
    N = Xc.shape[0]
    if N == 0:
        raise ValueError(f"X has 0 samples; GC is a mean over samples, so give at least one (method={method!r})")
    _check_levels(method, N, p, n, q, m, probes, dist)
    Xc = _checked_inputs(model, Xc)
    if method == "exact":
        return ops.mean(batched_sq_norms(model, params, Xc, Cotangents.rows(onp.arange(p)), target, chunk, batch_size))
    gen = _rng(rng, method)
    W = params[-1][0]
    xp = get_xp(W)
    if method == "subset":  # the mean of ||J||^2 over n samples drawn without replacement
        idx = onp.sort(gen.choice(N, size=n, replace=False))
        Xs = Xc[xp.asarray(idx)]
        return ops.mean(batched_sq_norms(model, params, Xs, Cotangents.rows(onp.arange(p)), target, chunk, batch_size))
    if method == "outputs":  # (p/m) x the squared norms of m random rows of J
        rows = onp.sort(gen.choice(p, size=m, replace=False))
        norms = batched_sq_norms(model, params, Xc, Cotangents.rows(rows), target, chunk, batch_size)
        return ops.mean(norms) * (p / m)
    if method == "hutchinson":  # the mean over probes v (E v v^T = I) of ||v^T J||^2
        k = 1 if probes is None else int(probes)
        V = _probes(gen, (N, k, p), dist, W.dtype, xp)  # (N, probes, p)
        norms = batched_sq_norms(model, params, Xc, Cotangents.per_sample(V), target, chunk, batch_size)
        return ops.mean(norms) / k
    # mask: keep each entry of J independently with probability q; sum the kept squares, divide by q
    total = None
    for J in jacobian_blocks(model, params, Xc, target, chunk, batch_size):
        keep = xp.asarray((gen.random(J.shape) < q).astype(J.dtype))
        part = ops.sum(J * J * keep)
        total = part if total is None else total + part
    return total / (float(q) * N)


def geometric_complexity(model, params, X, *, method="exact", target="embed", rng=None, n=None, q=None, m=None,
                         probes=None, dist=None, chunk=None, batch_size=None):
    """Return the geometric complexity GC(g, X) = (1/N) sum_i ||J_g(x_i)||_F^2, exact or estimated, as a float.

    docs/theory.md#geometric-complexity (Dherin et al. 2022; Munn et al. 2024, Figure 2 for the estimators).
    d_out below is the output dimension (p for target="embed", k for "logits"). Each method is unbiased for
    GC; ``gc_estimator_variance`` computes the variances given here:

    - ``"exact"``: the mean of ``jacobian_sq_norms``; the same number as ``reference_gc`` (the definition, plainly).
    - ``"subset"``, ``n=``: the mean of ||J||^2 over n samples drawn without replacement.
      Var = (1 - n/N) S^2 / n, S^2 the sample variance (ddof 1) of the N per-sample norms.
    - ``"mask"``, ``q=`` in (0, 1]: each entry of J kept independently with probability q (B ~ Bernoulli(q)),
      estimate (1/(q N)) sum_{i,j,d} B_ijd J_ijd^2. Var = (1 - q)/q * sum_{i,j,d} J_ijd^4 / N^2.
    - ``"outputs"``, ``m=`` in [1, d_out]: m output coordinates drawn uniformly without replacement (the same for
      every sample), estimate (d_out/m) sum_{j picked} a_j with a_j = (1/N) sum_i ||grad_x out_j(x_i)||^2; only the
      m picked rows are propagated. Var = d_out^2 (1 - m/d_out) s_a^2 / m (finite population), s_a^2 the variance
      (ddof 1) of the d_out values a_j.
    - ``"hutchinson"``, ``probes=`` (default 1), ``dist=`` "gaussian" (default) | "rademacher": for each
      sample the mean over independent probes v (E v v^T = I) of ||v^T J||^2, propagating (N, probes, d_out)
      cotangents. Per sample and probe Var = 2 ||J J^T||_F^2 (Gaussian) or 2 (||J J^T||_F^2 - sum_j
      (J J^T)_jj^2) (Rademacher); the estimate's variance is their sum over samples / (N^2 probes).

    ``rng``: a numpy Generator or an int seed, required by the random methods (no default: identical "random"
    estimates on every call would mislead). Draws are made on the host, so a seed gives the same draws on every
    backend ("mask" also needs the same ``chunk`` / ``batch_size``: output rows / samples per pass, memory only).
    """
    return float(to_numpy(gc_value(model, params, X, method=method, target=target, rng=rng, n=n, q=q, m=m,
                                   probes=probes, dist=dist, chunk=chunk, batch_size=batch_size)))


def gc_estimator_variance(model, params, X, *, method, target="embed", n=None, q=None, m=None, probes=None,
                          dist=None):
    """Return the exact variance (float) of one draw of ``geometric_complexity(..., method=method)``.

    The formulas are those listed in ``geometric_complexity`` ("exact": 0). Forms the full J (N, d_out, D) on the
    host, so it is meant for small problems (tests, error bars).
    """
    p = output_dim(model, target)
    Xc = model.check_input(X)
    N = Xc.shape[0]
    _check_levels(method, N, p, n, q, m, probes, dist)
    Xc = _checked_inputs(model, Xc)
    if method == "exact":
        return 0.0
    J = to_numpy(input_jacobian(model, params, Xc, target=target)).astype(onp.float64)  # (N, d_out, D)
    if method == "subset":
        s = (J ** 2).sum(axis=(1, 2))
        return float((1 - n / N) * s.var(ddof=1) / n) if N > 1 else 0.0
    if method == "mask":
        return float((1 - q) / q * (J ** 4).sum() / N ** 2)
    if method == "outputs":
        a = (J ** 2).sum(axis=2).mean(axis=0)  # (d_out,)
        return float(p ** 2 * (1 - m / p) * a.var(ddof=1) / m) if p > 1 else 0.0
    K = onp.matmul(J, J.transpose(0, 2, 1))  # J J^T per sample: (N, d_out, d_out)
    per = 2 * (K ** 2).sum(axis=(1, 2))
    if dist == "rademacher":
        per = per - 2 * (onp.diagonal(K, axis1=1, axis2=2) ** 2).sum(axis=1)
    return float(per.sum() / (N ** 2 * (1 if probes is None else probes)))


# ---- Per-class and directional GC --------------------------------------------------------------------------
def _labels(y, N):
    y = to_numpy(y)
    if y.ndim != 1 or len(y) != N:
        raise ValueError(f"y must be a 1-D array with one label per sample of X ({N}); got shape {y.shape}")
    return y


def class_gc(model, params, X, y, *, target="embed", chunk=None, batch_size=None):
    """Return GC_c = GC(g, S_c) for every class c (classes = sorted unique y) as a host array (k,).

    One ``jacobian_sq_norms`` pass over X, then the mean within each class (docs/theory.md#geometric-complexity)."""
    Xc = model.check_input(X)
    y = _labels(y, Xc.shape[0])
    q = output_dim(model, target)
    Xc = _checked_inputs(model, Xc)
    sq = to_numpy(batched_sq_norms(model, params, Xc, Cotangents.rows(onp.arange(q)), target, chunk, batch_size))
    return onp.array([sq[y == c].mean() for c in onp.unique(y)])


def directional_gc(model, params, X, y, means, *, labels=None, batch_size=None):
    """Return dir (k, k) with dir[i, j] = mean over class-i samples of ||J_g(x)^T u_ij||^2 (diagonal 0).

    ``u_ij = (mu_j - mu_i) / ||mu_j - mu_i||`` with ``means`` (k, p) the class means in sorted-label order of
    ``y``, or, with ``labels`` (the class label of each row of ``means``, e.g. ``numpy.unique(y_train)``),
    matched to the classes of y by label (then y must hold exactly those classes; a missing one is named).
    The directional GC of ``bounds.ncc_error_bound_directional_gc`` (docs/theory.md#d-directional-gc-form):
    class i's k directions (u_ii = 0) are propagated as k shared cotangents. Host array.
    """
    Xc = model.check_input(X)
    y = _labels(y, Xc.shape[0])
    classes = Classes(y)
    k, p = classes.k, model.embed_dim
    W = params[-1][0]
    xp = get_xp(W)
    mu = to_numpy(means).astype(onp.float64)
    if mu.ndim != 2:
        raise ValueError(f"means must have shape (k, p) = ({k}, {p}); got shape {mu.shape}")
    mu = mu[rows_of_classes(mu.shape, classes, p, labels=labels, features_of="the embedding")]
    Xc = _checked_inputs(model, Xc)
    diff = mu[None, :, :] - mu[:, None, :]  # diff[i, j] = mu_j - mu_i: (k, k, p)
    dist = onp.sqrt((diff ** 2).sum(axis=-1))
    off = ~onp.eye(k, dtype=bool)
    if onp.any(dist[off] == 0):
        raise ValueError("means has two equal class means, so u_ij = (mu_j - mu_i)/||mu_j - mu_i|| is undefined")
    U = diff / onp.where(off, dist, 1.0)[:, :, None]
    out = onp.zeros((k, k))
    for i in range(k):
        Xi = Xc[xp.asarray(onp.flatnonzero(classes.index == i))]
        Ui = xp.asarray(U[i].astype(W.dtype))  # (k, p)
        per = batched_sq_norms(model, params, Xi, Cotangents.shared(Ui), "embed", None, batch_size,
                               per_row=True)  # (n_i, k)
        out[i] = to_numpy(per).mean(axis=0)
    out[~off] = 0.0
    return out


# ---- The GC regularizer (docs/theory.md#geometric-complexity, "GC regularization") -------------------------
def _check_penalty_method(method, what):
    if method not in PENALTY_METHODS:
        raise ValueError(f"{what} method must be 'exact' or 'hutchinson'; got {method!r}")


def _penalty(model, params, Xc, method, target, probes, dist, rng, chunk):
    """GC of the checked batch Xc as a differentiable scalar (the body of ``gc_penalty``, without the X check)."""
    q = output_dim(model, target)
    chunk = checks.integer("chunk", chunk, allow_none=True)
    Z, caches = forward(model, params, Xc)
    N = Z.shape[0]
    if method == "exact":
        cot, r, scale = Cotangents.rows(onp.arange(q)), q, 1.0
    else:
        r = checks.integer("probes", probes, meaning="probe vectors per sample")
        if dist not in PROBE_DISTS:
            raise ValueError(f"dist must be 'gaussian' or 'rademacher'; got dist={dist!r}")
        V = _probes(_rng(rng, "hutchinson"), (N, r, q), dist, Z.dtype, get_xp(Z))
        cot, scale = Cotangents.per_sample(V), 1.0 / r
    total = None
    for a, b in ranges(r, chunk or r):
        part = ops.sum(sq_norms(model, params, Z, caches, cot.select(a, b), target))
        total = part if total is None else total + part
    return total * (scale / N)


def gc_penalty(model, params, X, *, method="exact", target="embed", probes=1, dist="gaussian", rng=None,
               chunk=None):
    """Return GC of the batch X as a scalar that autograd differentiates with respect to ``params``.

    ``method="exact"``: (1/N) sum_n ||J(x_n)||_F^2 by the same propagation as ``jacobian_sq_norms`` (Gram
    route included), written with ``ops`` primitives on the traced params, so the parameter gradient is exact.
    ``method="hutchinson"``: (1/N) sum_n (1/probes) sum_r ||v_nr^T J(x_n)||^2 with fresh probes from ``rng``
    (required); its value and its gradient are unbiased for the exact ones and cost ``probes`` instead of d_out
    backward rows. No sample batching (X is one training batch); ``chunk`` splits the output rows.
    """
    _check_penalty_method(method, "gc_penalty")
    check_target(target)
    return _penalty(model, params, _checked_inputs(model, X), method, target, probes, dist, rng, chunk)


def make_gc_penalty(model, strength, method="exact", target="embed", probes=1, dist="gaussian", seed=0, chunk=None):
    """Return ``penalty(params, X_b, y_b=None, step=0) = strength * gc_penalty(model, params, X_b, ...)``.

    The ``penalty`` of ``train.fit``: the explicit GC regularization of the paper's appendix (strengths around
    1e-7 .. 1e-4). A pure function of (params, batch, step): for ``method="hutchinson"`` the probes of training
    step ``step`` come from ``numpy.random.default_rng([seed, step])``, so successive steps see fresh probes,
    two seeds see different ones, and a run resumed from a checkpoint sees the probes of the run that never
    stopped (``train.fit`` passes the step since ``penalty.takes_step`` is True). ``y_b`` is unused and the
    exact penalty ignores ``step``. The batches are not checked for NaN here (``train.fit`` checks its X once,
    not at every step).
    """
    strength = checks.number("strength", strength)
    seed = checks.integer("seed", seed, minimum=0)
    _check_penalty_method(method, "gc penalty")
    check_target(target)

    def penalty(params, X_b, y_b=None, step=0):
        step = checks.integer("step", step, minimum=0)
        rng = onp.random.default_rng([seed, step]) if method == "hutchinson" else None
        return strength * _penalty(model, params, model.check_input(X_b), method, target, probes, dist, rng, chunk)

    penalty.takes_step = True
    penalty.strength, penalty.method, penalty.seed = strength, method, seed
    return penalty
