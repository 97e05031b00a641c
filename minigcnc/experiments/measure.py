"""Everything recorded at one evaluation of a run: accuracy, GC, collapse, NCC error, bounds, transfer.

``measure(model, params, data, fewshot_episodes, seed)`` returns a flat dict of floats (and a few short
lists) for one checkpoint. The quantities, with the module that computes each:

- ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``: the classifier head on all train / test images;
- ``gc``: exact embedding GC on the fixed evaluation subset of training images, ``class_gc`` per class
  (``gc.class_gc``), ``logit_gc`` the same for the logits (Dherin et al.'s GC); ``gc_test`` and
  ``class_gc_test`` on the fixed subset of test images;
- ``gcol``: geometric collapse from the class GC and the train class means (``collapse.geometric_collapse``);
- ``nc_train``, ``nc_test``: CDNV (the paper's NC) of train / test embeddings; ``nc1`` .. ``nc4`` (Papyan);
- ``ncc_test_error``: nearest-class-centre error on the test images with the train class means;
  ``ncc_test_error_balanced`` its class average ``(1/k) sum_c P(error | c)``, which the bounds bound;
  ``ncc_train_error`` the same classifier on the training images; ``ncc_test_error_cp_upper`` a 95% Clopper-Pearson
  upper bound on the class-averaged error of the test distribution from the test errors (pooled over the first
  n test images of every class, n the smallest class count: all of them when balanced; ``ncc_cp_upper``);
- bounds on that error (``bounds.py``; centres = train class means, every other term on the test images):
  ``bound_markov`` (rho-free CDNV form), ``bound_directional`` (one-sided Chebyshev), and their GC forms
  ``bound_gc`` and ``bound_gc_directional`` with the test class GC, the offsets ``offset_sq`` of the test
  class means from the centres, and the Gaussian-proxy Poincare constants ``rho`` of each class's inputs
  (``rho_max`` their maximum); ``bound_markov_capped``, ``bound_directional_capped`` and ``bound_gc_capped``:
  the same union bounds with each class's sum capped at 1 (``bounds.capped``), never above 1;
  ``nc_gc_bound = max rho * gcol``; the implied constants ``implied_rho = nc_train / gcol`` and, per class,
  ``implied_rho_test = Var_test,c / GC_test,c`` (``implied_rho_test_max`` their maximum); the margin of the
  Poincare step ``poincare_margin = rho_c GC_test,c / Var_test,c`` per class (``poincare_margin_min``: the
  GC bounds rest on a valid step only when it is at least 1);
- with target classes: ``target_nc`` (CDNV of the frozen embedding on unseen classes) and few-shot NCC
  accuracy (raw features) ``fewshot5`` / ``fewshot1`` with their 95% intervals; with ``probe=True`` also the
  accuracy of a logistic-regression probe fitted per episode on L2-normalized features, ``fewshot5_logreg`` /
  ``fewshot1_logreg`` (and ``_ci95``) and the same 5-shot probe on the raw features, ``fewshot5_logreg_raw``
  (and ``_ci95``; the same episodes); when the target classes come in groups (``RunData.target_groups``: the
  digit of each rotated-digit class) also ``fewshot5_distinct`` (and ``_ci95``), 5-shot NCC accuracy on
  episodes whose 5 classes are of 5 different groups.

Extra groups (``RunConfig(extras=(name,))``), recorded at every evaluation unless marked "ends" (the first and
the last only, ``register_extra(at="ends")``): ``"gc_estimators"`` (Figure 2: ``gc_<method>_<level>`` and
``seconds_*``), ends: ``"flatness"`` (the Hessian trace, ``flatness``), ``"layers"`` (per-layer metrics and the AGOP,
``layers``), ``"moment_bounds"`` (``moment_bounds``: ``bound_sharp``, ``bound_sharp_class``), ends:
``"moment_bounds_gc"`` (``moment_bounds_gc``: ``bound_sharp_gc``, ``bound_gc_weighted``,
``bound_sharp_gc_weighted``, ``weighted_poincare_margin``, ``weighted_poincare_margin_min``) and ends:
``"agop"`` (``agop``: the embedding's AGOP spectrum).

A metric that cannot be computed (e.g. coincident class means in a dead network) is recorded as NaN with
the reason under ``warnings``; it never stops the run.
"""
import time

import numpy as onp

from .. import bounds, collapse, fewshot, gc, layerwise, ops, sharpness
from . import prepare
from ..backend import get_xp, is_device_array, to_numpy


def embed_in_chunks(model, params, X, chunk=1000):
    """model.embed over X in chunks of ``chunk`` samples (bounded memory), on the device of params."""
    parts = [model.embed(params, X[i : i + chunk]) for i in range(0, X.shape[0], chunk)]
    return get_xp(parts[0]).concatenate(parts, axis=0)


def _accuracy_and_loss(model, params, Z, y):
    logits = model.head(params, Z)
    loss = float(to_numpy(ops.cross_entropy(logits, y)))
    acc = float(onp.mean(to_numpy(logits).argmax(axis=1) == to_numpy(y)))
    return loss, acc, logits


def _value_and_capped(result):
    """(value, capped value) of a BoundResult, or (nan, nan) where ``safe`` recorded its failure."""
    if isinstance(result, bounds.BoundResult):
        return result.value, bounds.capped(result).value
    return float("nan"), float("nan")


def ncc_cp_upper(Z, y, means, confidence=0.95):
    """Clopper-Pearson upper bound (``confidence``) on the class-averaged NCC test error with centres ``means``.

    ``bounds.ncc_error_cp_upper(wrong, y)`` with ``wrong_n = (argmin_j ||z_n - mu_j|| != y_n)`` (rows of ``means`` =
    labels 0..k-1): the pooled errors of the first n test samples of every class, n the smallest class count.
    """
    y = onp.asarray(y)
    return bounds.ncc_error_cp_upper(collapse.ncc_predict(means, Z) != y, y, confidence)


EXTRAS = {}  # name -> fn(model, params, data, seed, step) -> dict of extra metrics (see ``register_extra``)
AT_ENDS = set()  # names of the extras recorded at a run's first and last evaluation only
SCHEDULES = ("every", "ends")


def register_extra(name, at="every"):
    """Decorator: make ``fn(model, params, data, seed, step) -> dict`` recordable by ``RunConfig(extras=(name,))``.

    A figure that needs more than the standard metrics (e.g. Figure 2's GC estimators) registers them in
    this module; the names are part of the run's config, so runs with and without them are cached apart. Your
    own, registered in your script, work the same way: a sweep sends them to its parallel workers (joblib and
    Dask, ``sweep.own_extras``), and their code is part of the key of the runs that record them
    (``cache.extra_code``), so editing one recomputes those runs.

    ``at``: ``"every"`` (default) records the group at every evaluation; ``"ends"`` only at the first (step 0)
    and the last evaluation of a run (``measure(..., last_step=...)``), for a group too costly to record
    throughout; its keys are absent from the other evaluations (``history.series`` reads them as NaN).
    """
    if at not in SCHEDULES:
        raise ValueError(f"at must be one of {SCHEDULES} (every evaluation, or the first and the last); got {at!r}")

    def deco(fn):
        EXTRAS[name] = fn
        (AT_ENDS.add if at == "ends" else AT_ENDS.discard)(name)
        return fn

    return deco


def _safe(warnings, name, fn, failed=float("nan")):
    """``fn()``, or ``failed`` with ``"name: reason"`` appended to ``warnings`` when it raises a numerical error."""
    try:
        return fn()
    except (ValueError, FloatingPointError, onp.linalg.LinAlgError) as e:
        warnings.append(f"{name}: {e}")
        return failed


def measure(model, params, data, fewshot_episodes=0, seed=0, extras=(), probe=False, step=0, last_step=None):
    """All metrics of one checkpoint as a dict (see the module docstring). ``data`` is a ``prepare.RunData``;
    ``last_step``: the run's last step, where the extras registered ``at="ends"`` are recorded besides step 0."""
    rec, warnings = {}, []

    def safe(name, fn):
        return _safe(warnings, name, fn)

    Ztr = embed_in_chunks(model, params, data.X_train)
    Zte = embed_in_chunks(model, params, data.X_test)
    ytr, yte = data.y_train_dev, data.y_test_dev
    rec["train_loss"], rec["train_acc"], logits_tr = _accuracy_and_loss(model, params, Ztr, ytr)
    rec["test_loss"], rec["test_acc"], _ = _accuracy_and_loss(model, params, Zte, yte)
    Ztr_h, Zte_h = to_numpy(Ztr), to_numpy(Zte)
    ytr_h, yte_h = data.y_train, data.y_test

    # geometric complexity on the fixed evaluation subsets: training images (the paper's GC), and test images
    # (for the GC bound, whose every term is measured on the images the error is measured on)
    class_gc = gc.class_gc(model, params, data.X_eval, data.y_eval)  # (k,): GC_c on S_c
    rec["class_gc"] = class_gc.tolist()
    rec["gc"] = float(onp.average(class_gc, weights=onp.bincount(data.y_eval)))  # the mean over all of S
    rec["logit_gc"] = float(to_numpy(gc.jacobian_sq_norms(model, params, data.X_eval, target="logits")).mean())
    class_gc_test = gc.class_gc(model, params, data.X_eval_test, data.y_eval_test)
    rec["class_gc_test"] = class_gc_test.tolist()
    rec["gc_test"] = float(onp.average(class_gc_test, weights=onp.bincount(data.y_eval_test)))

    # collapse
    labels = onp.arange(data.n_classes)  # row c of every per-class array is class c
    means = collapse.class_means(Ztr_h, ytr_h)
    rec["nc_train"] = safe("nc_train", lambda: collapse.cdnv(Ztr_h, ytr_h))
    rec["nc_test"] = safe("nc_test", lambda: collapse.cdnv(Zte_h, yte_h))
    rec["gcol"] = safe("gcol", lambda: collapse.geometric_collapse(class_gc, means))
    rec["nc1"] = safe("nc1", lambda: collapse.nc1(Ztr_h, ytr_h))
    rec["nc2_equinorm"] = safe("nc2_equinorm", lambda: collapse.nc2_equinorm(Ztr_h, ytr_h))
    rec["nc2_equiangularity"] = safe("nc2_equiangularity", lambda: collapse.nc2_equiangularity(Ztr_h, ytr_h))
    rec["nc2_maxangle"] = safe("nc2_maxangle", lambda: collapse.nc2_maxangle(Ztr_h, ytr_h))
    W_head = to_numpy(params[-1][0])
    rec["nc3"] = safe("nc3", lambda: collapse.nc3_self_duality(W_head, Ztr_h, ytr_h))
    rec["nc4"] = safe("nc4", lambda: collapse.nc4_ncc_mismatch(to_numpy(logits_tr), Ztr_h, ytr_h))

    # nearest-class-centre test error and its bounds (centres: the training class means)
    rec["ncc_test_error"] = safe("ncc_test_error", lambda: collapse.ncc_error(Zte_h, yte_h, means=means, labels=labels))
    rec["ncc_test_error_balanced"] = safe("ncc_test_error_balanced", lambda: collapse.ncc_error(
        Zte_h, yte_h, means=means, labels=labels, balanced=True))  # what the bounds bound: the class-averaged error
    rec["ncc_train_error"] = safe("ncc_train_error", lambda: collapse.ncc_error(Ztr_h, ytr_h, means=means, labels=labels))
    rec["ncc_test_error_cp_upper"] = safe("ncc_test_error_cp_upper", lambda: ncc_cp_upper(Zte_h, yte_h, means))
    for kind in ("markov", "directional"):
        res = safe(f"bound_{kind}", lambda: bounds.ncc_error_bound(Zte_h, yte_h, means=means, kind=kind, labels=labels))
        rec[f"bound_{kind}"], rec[f"bound_{kind}_capped"] = _value_and_capped(res)
    rho = data.rho
    rec["rho"] = [float(r) for r in rho]
    rec["rho_max"] = float(onp.max(rho))
    test_means = collapse.class_means(Zte_h, yte_h)
    rec["offset_sq"] = onp.sum((test_means - means) ** 2, axis=1).tolist()  # ||m_test,c - mu_c||^2
    res = safe("bound_gc", lambda: bounds.ncc_error_bound_gc(class_gc_test, means, rho, test_means))
    rec["bound_gc"], rec["bound_gc_capped"] = _value_and_capped(res)

    def gc_directional():
        dir_gc = to_numpy(gc.directional_gc(model, params, data.X_eval_test, data.y_eval_test_dev, means,
                                            labels=labels))
        return bounds.ncc_error_bound_directional_gc(dir_gc, means, rho, test_means).value

    rec["bound_gc_directional"] = safe("bound_gc_directional", gc_directional)
    rec["nc_gc_bound"] = safe("nc_gc_bound", lambda: bounds.nc_gc_bound(class_gc, means, rho).value)
    rec["implied_rho"] = rec["nc_train"] / rec["gcol"] if rec["gcol"] and onp.isfinite(rec["gcol"]) else float("nan")
    # per class, the smallest rho with Var_c <= rho GC_c on the test images (beside the proxy rho)
    var_test = collapse.class_variances(Zte_h, yte_h)
    with onp.errstate(divide="ignore", invalid="ignore"):
        implied = var_test / class_gc_test
    rec["implied_rho_test"] = [float(v) for v in implied]
    rec["implied_rho_test_max"] = float(onp.max(implied)) if onp.all(onp.isfinite(implied)) else float("nan")
    # the Poincare step of the GC bounds, per class: rho_c GC_c / Var_c on the test images (valid when >= 1)
    margins = bounds.poincare_margins(class_gc_test, var_test, rho)
    rec["poincare_margin"] = [float(v) for v in margins]
    rec["poincare_margin_min"] = float(onp.min(margins))

    # transfer to unseen classes
    if data.X_target is not None:
        Zt = to_numpy(embed_in_chunks(model, params, data.X_target))
        rec["target_nc"] = safe("target_nc", lambda: collapse.cdnv(Zt, data.y_target))
        if fewshot_episodes:
            for classifier, suffix in (("ncc", ""),) + ((("logreg", "_logreg"),) if probe else ()):
                for shots in (5, 1):  # the same seed: both classifiers see the same episodes
                    res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=min(5, data.n_target_classes),
                                                      shots=shots, queries=15, n_episodes=fewshot_episodes, rng=seed,
                                                      classifier=classifier)
                    rec[f"fewshot{shots}{suffix}"] = float(res.mean)
                    rec[f"fewshot{shots}{suffix}_ci95"] = float(res.ci95)
            if probe:  # the probe on the raw features, the same episodes (Figure 4's sensitivity to the choice)
                res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=min(5, data.n_target_classes), shots=5,
                                                  queries=15, n_episodes=fewshot_episodes, rng=seed,
                                                  classifier="logreg", normalize=False)
                rec["fewshot5_logreg_raw"], rec["fewshot5_logreg_raw_ci95"] = float(res.mean), float(res.ci95)
            if data.target_groups is not None:  # rotated digits: episodes of 5 classes of 5 different digits
                res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=min(5, len(set(data.target_groups))),
                                                  shots=5, queries=15, n_episodes=fewshot_episodes, rng=seed,
                                                  groups=data.target_groups)
                rec["fewshot5_distinct"], rec["fewshot5_distinct_ci95"] = float(res.mean), float(res.ci95)
    for name in extras:
        if name not in EXTRAS:
            raise ValueError(f"unknown extra metrics {name!r}; registered: {sorted(EXTRAS)} (import the module that registers it)")
        if name in AT_ENDS and step not in (0, last_step):
            continue
        extra = dict(EXTRAS[name](model, params, data, seed, step))
        warnings.extend(extra.pop("warnings", []))
        rec.update(extra)
    rec = {k: (float(v) if isinstance(v, (onp.floating, onp.integer)) else v) for k, v in rec.items()}
    if warnings:
        rec["warnings"] = warnings
    return rec


# --------------------------------------------------------------------------------------------------
# extra metric groups
# --------------------------------------------------------------------------------------------------
GC_ESTIMATOR_LEVELS = {  # method -> (level parameter, levels from mild to extreme); Figure 2
    "subset": ("n", (100, 20, 5)),
    "mask": ("q", (0.1, 0.01, 0.001)),
    "outputs": ("m", (16, 4, 1)),
    "hutchinson": ("probes", (4, 1)),
}


def estimator_key(method, level):
    """The record key of one estimator at one level, e.g. ``gc_mask_0.001``."""
    return f"gc_{method}_{level:g}"


@register_extra("gc_estimators")
def gc_estimators(model, params, data, seed, step):
    """One draw of every GC estimator of ``GC_ESTIMATOR_LEVELS`` on the evaluation subset (Figure 2).

    The draws use ``default_rng([seed, step])``: fresh at every checkpoint, reproducible for the run.
    Levels larger than the data (n > N, m > p) are clipped. Each call is timed too (``seconds_<key>``, and
    ``seconds_gc`` for the exact GC): wall seconds, so only their ratios within one run mean much.
    """
    rng = onp.random.default_rng([seed, step])
    N, p = data.X_eval.shape[0], model.embed_dim
    t0 = time.perf_counter()
    gc.geometric_complexity(model, params, data.X_eval)
    out = {"seconds_gc": time.perf_counter() - t0}
    for method, (param, levels) in GC_ESTIMATOR_LEVELS.items():
        for level in levels:
            level = min(level, N) if param == "n" else (min(level, p) if param == "m" else level)
            kw = {param: level, **({"dist": "gaussian"} if method == "hutchinson" else {})}
            key = estimator_key(method, level)
            t0 = time.perf_counter()
            out[key] = gc.geometric_complexity(model, params, data.X_eval, method=method, rng=rng, **kw)
            out[f"seconds_{key}"] = time.perf_counter() - t0
    return out


def _embeddings_and_means(model, params, data):
    """(train embeddings, test embeddings, train class means, test class means) on the host."""
    Ztr = to_numpy(embed_in_chunks(model, params, data.X_train))
    Zte = to_numpy(embed_in_chunks(model, params, data.X_test))
    return Ztr, Zte, collapse.class_means(Ztr, data.y_train), collapse.class_means(Zte, data.y_test)


@register_extra("moment_bounds")
def moment_bounds(model, params, data, seed, step):
    """The sharp (generalized Chebyshev) NCC bound at every evaluation (Figure 3;
    docs/theory.md#f-the-sharp-moment-bound): ``bounds.ncc_error_bound(kind="sharp")`` on the test embeddings,
    centres mu_c the train class means, each class's test mean and covariance (all test images): the best bound
    from those moments.

    - ``bound_sharp`` (class-averaged) and ``bound_sharp_class`` (per class);
    - ``seconds_moment_bounds``: wall seconds of this group (embeddings and SDP solves).

    A bound that fails (e.g. a solver failure) is NaN with the reason under the record's ``warnings``.
    """
    t0 = time.perf_counter()
    warnings = []
    _, Zte, means, _ = _embeddings_and_means(model, params, data)
    sharp = _safe(warnings, "bound_sharp", lambda: bounds.ncc_error_bound(
        Zte, data.y_test, means=means, kind="sharp", labels=onp.arange(data.n_classes)), None)
    out = {"bound_sharp": float("nan") if sharp is None else sharp.value,
           "bound_sharp_class": [float("nan")] * len(means) if sharp is None else [float(v) for v in sharp.class_terms],
           "seconds_moment_bounds": time.perf_counter() - t0}
    return {**out, "warnings": warnings} if warnings else out


@register_extra("moment_bounds_gc", at="ends")
def moment_bounds_gc(model, params, data, seed, step):
    """The GC forms of the moment bounds, at a run's first and last evaluation (Figure 3;
    docs/theory.md#h-matrix-and-covariance-weighted-poincare-steps).

    Centres mu_c: the train class means; m_c, Var_c: the test class means and variances (all test images);
    Jacobian moments ``E_c[J J^T]``, ``E_c[J Sigma_c J^T]`` (``gc.class_jacobian_moments``) on the fixed test
    evaluation subset, ``Sigma_c = F_c^T F_c`` from ``prepare.input_cov_factors(data)`` (exact for
    ``"gaussians"``, the sample covariance of the standardized training inputs otherwise), rho_c = ``data.rho``.

    - ``bound_sharp_gc``: the sharp bound with ``S_c`` replaced by ``rho_c E_c[J J^T]`` (valid when the
      Poincare inequality holds with rho_c: then ``Cov_c <= rho_c E_c[J J^T]`` in the PSD order, and the bound
      increases with the covariance);
    - ``bound_gc_weighted``: the capped Markov GC bound (``ncc_error_bound_gc``, offsets
      ``||m_c - mu_c||^2`` included) with ``rho_c GC_c`` replaced by ``E_c tr(J Sigma_c J^T)``: the
      covariance-weighted Gaussian Poincare inequality ``Var_c <= E_c tr(J Sigma_c J^T)``, valid only for
      Gaussian classes x ~ N(m_c, Sigma_c) (exact for ``"gaussians"``; a heuristic for images);
    - ``bound_sharp_gc_weighted``: the sharp bound with ``S_c`` replaced by ``E_c[J Sigma_c J^T]`` (same proviso);
    - ``weighted_poincare_margin`` per class ``E_c tr(J Sigma_c J^T) / Var_c`` on the test images (the weighted
      step holds on them when >= 1), ``weighted_poincare_margin_min`` its minimum;
    - ``seconds_moment_bounds_gc``: wall seconds of this group (embeddings, Jacobian moments, SDP solves).
    """
    t0 = time.perf_counter()
    out, warnings = {}, []
    _, Zte, means, test_means = _embeddings_and_means(model, params, data)
    JJ, JSJ = gc.class_jacobian_moments(model, params, data.X_eval_test, data.y_eval_test,
                                        prepare.input_cov_factors(data))
    rho = onp.asarray(data.rho, dtype=onp.float64)

    def sharp_from(covs, name):
        res = _safe(warnings, name, lambda: bounds.ncc_error_bound_sharp_from_moments(test_means, covs, means), None)
        return float("nan") if res is None else res.value

    out["bound_sharp_gc"] = sharp_from(rho[:, None, None] * JJ, "bound_sharp_gc")
    weighted = onp.trace(JSJ, axis1=1, axis2=2)  # (k,): E_c tr(J Sigma_c J^T)
    res = _safe(warnings, "bound_gc_weighted",
                lambda: bounds.capped(bounds.ncc_error_bound_gc(weighted, means, 1.0, test_means)), None)
    out["bound_gc_weighted"] = float("nan") if res is None else res.value
    out["bound_sharp_gc_weighted"] = sharp_from(JSJ, "bound_sharp_gc_weighted")
    margins = bounds.poincare_margins(weighted, collapse.class_variances(Zte, data.y_test), 1.0)
    out["weighted_poincare_margin"] = [float(v) for v in margins]
    out["weighted_poincare_margin_min"] = float(onp.min(margins))
    out["seconds_moment_bounds_gc"] = time.perf_counter() - t0
    return {**out, "warnings": warnings} if warnings else out


FLATNESS_IMAGES = 1000  # training images of the Hessian trace, a subset fixed by FLATNESS_SUBSET_SEED
FLATNESS_CONV_IMAGES = 250  # the same for models with convolutions (their trace costs far more than a dense one's)
FLATNESS_SUBSET_SEED = 29
FLATNESS_PROBES = 4  # Rademacher probes per evaluation


@register_extra("flatness", at="ends")
def flatness(model, params, data, seed, step):
    """The trace of the training-loss Hessian (``sharpness.hessian_trace``, Hutchinson), at a run's
    first and last evaluation (the flatness of where training starts and ends).

    On ``FLATNESS_IMAGES`` training images (all if fewer; a subset fixed by ``FLATNESS_SUBSET_SEED``, the same in
    every run) with ``FLATNESS_PROBES`` Rademacher probes drawn from ``default_rng([seed, 29])``: the same probes
    at every evaluation of a run and in every run of a seed (common random numbers across the configs of a seed).

    - ``hessian_trace``: the estimate of tr H (mean cross-entropy w.r.t. all parameters, no L2 term);
    - ``hessian_trace_se``: its standard error (sample sd of the probes' v^T H v over sqrt(probes));
    - ``seconds_flatness``: wall seconds of this group.

    Models with convolutions (or residual blocks) use ``FLATNESS_CONV_IMAGES`` images. On a device backend
    (CuPy), and for a model with a layer of a kind outside ``minigcnc.layers`` (``sharpness.twice_differentiable``
    false), the three are NaN, NaN and 0, with a warning: the Hessian-vector products are tested on the host only.
    """
    t0 = time.perf_counter()
    why = ("a layer kind outside minigcnc.layers" if not sharpness.twice_differentiable(model) else
           "a device backend: the Hessian-vector products are tested on NumPy only" if
           is_device_array(params[-1][0]) else "")
    if why:
        return {"hessian_trace": float("nan"), "hessian_trace_se": float("nan"), "seconds_flatness": 0.0,
                "warnings": [f"hessian_trace: not computed for {model.name} ({why})"]}
    N = len(data.y_train)
    conv = any(layer.kind in ("conv", "residual") for layer in model.layers)
    n = min(FLATNESS_CONV_IMAGES if conv else FLATNESS_IMAGES, N)
    idx = onp.sort(onp.random.default_rng(FLATNESS_SUBSET_SEED).choice(N, size=n, replace=False))
    X = data.X_train[get_xp(params[-1][0]).asarray(idx)]
    samples = sharpness.hessian_trace_samples(model, params, X, data.y_train[idx], probes=FLATNESS_PROBES,
                                              seed=onp.random.default_rng([seed, 29]))
    se = float(samples.std(ddof=1) / onp.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    return {"hessian_trace": float(samples.mean()), "hessian_trace_se": se,
            "seconds_flatness": time.perf_counter() - t0}


LAYER_FEWSHOT_EPISODES = 200  # 5-way 5-shot episodes per layer (the same episodes at every layer)
AGOP_IMAGES = 100  # evaluation images of the AGOP (every (N // 100)-th of the evaluation subset)
AGOP_EIGS = 64  # leading AGOP eigenvalues recorded


@register_extra("layers")
def layers(model, params, data, seed, step):
    """Per-layer collapse and GC (``layerwise.layer_metrics``) and the embedding's AGOP spectrum (figure_layers).

    Lists indexed by depth, 0 = the inputs, then every hidden (dense) layer, all on the evaluation subset of
    training images (``data.X_eval``):

    - ``layer_cdnv``: the CDNV of each layer's features;
    - ``layer_nc1``: Papyan's NC1 of each layer's features (He & Su's D_l = k NC1; rank-(k-1) pseudo-inverse);
    - ``layer_gc``: the exact GC of the map from the input to each layer (D at depth 0);
    - ``layer_target_cdnv`` (with target classes): the CDNV of each layer's features of all target images;
    - ``layer_fewshot5``, ``layer_fewshot5_ci95`` (with target classes): 5-way 5-shot NCC accuracy of each
      layer's features, ``LAYER_FEWSHOT_EPISODES`` episodes from the run's seed (the same at every layer);
    - ``agop_eigs``: the ``AGOP_EIGS`` largest eigenvalues of the embedding's AGOP (``gc.agop``) on
      ``AGOP_IMAGES`` evaluation images;
    - ``agop_trace``: its trace (the embedding's GC on those images);
    - ``agop_dirs90``: the number of its eigenvalues that carry 90% of the trace (``gc.agop_directions``);
    - ``seconds_layers``: wall seconds of this group.
    """
    t0 = time.perf_counter()
    recs = layerwise.layer_metrics(model, params, data.X_eval, data.y_eval, X_target=data.X_target,
                                   y_target=data.y_target, fewshot_episodes=LAYER_FEWSHOT_EPISODES, seed=seed)
    out = {f"layer_{key}": [r[key] for r in recs] for key in
           ("cdnv", "nc1", "gc", "target_cdnv", "fewshot5", "fewshot5_ci95") if key in recs[0]}
    out.update(agop_spectrum(model, params, data))
    out["seconds_layers"] = time.perf_counter() - t0
    return out


def agop_spectrum(model, params, data):
    """The embedding's AGOP on ``AGOP_IMAGES`` evaluation images (every (N // AGOP_IMAGES)-th of
    ``data.X_eval``; ``gc.agop``): ``agop_eigs`` its ``AGOP_EIGS`` largest eigenvalues, ``agop_trace`` its trace
    (the embedding's GC on those images), ``agop_dirs90`` how many eigenvalues carry 90% of the trace
    (``gc.agop_directions``)."""
    N = data.X_eval.shape[0]
    sub = onp.arange(0, N, max(1, N // AGOP_IMAGES))[:AGOP_IMAGES]
    A = gc.agop(model, params, data.X_eval[get_xp(params[-1][0]).asarray(sub)])
    lam = onp.sort(onp.linalg.eigvalsh(A))[::-1]
    return {"agop_eigs": [float(v) for v in lam[:AGOP_EIGS]], "agop_trace": float(onp.trace(A)),
            "agop_dirs90": gc.agop_directions(lam, 0.9)}


@register_extra("agop", at="ends")
def agop(model, params, data, seed, step):
    """The embedding's AGOP spectrum (``agop_spectrum``) at a run's first and last evaluation (Figure 3's
    runs): how many input directions carry the GC, at the start and the end of training."""
    return agop_spectrum(model, params, data)
