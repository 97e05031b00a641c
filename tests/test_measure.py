"""experiments/measure.py: every metric a run records equals the library's own function called directly.

One tiny run (rotated 8x8 digits: 3 source digits in 4 rotations each, 5 other digits as unseen target classes),
an untrained MLP, and ``measure.measure`` against ``minigcnc.gc``, ``collapse``, ``bounds`` and ``fewshot`` on
the same arrays. Every recorded key must be checked here (a new metric needs its line).
"""
import dataclasses

import numpy as np
import pytest
from scipy.special import logsumexp

from minigcnc import bounds, collapse, fewshot, gc
from minigcnc.backend import to_numpy
from minigcnc.experiments import measure
from minigcnc.experiments.config import scale_base
from minigcnc.experiments.prepare import build_model, prepare_data

EPISODES = 4
CONFIG = scale_base("tiny", dataset="digits_rot", classes=tuple(range(12)), target_classes=tuple(range(20, 40)),
                    hidden=(16, 8), eval_per_class=4, fewshot_episodes=EPISODES, fewshot_probe=True, seed=3)


@pytest.fixture(scope="module")
def run():
    """(model, params, data, the record of ``measure`` at step 0)."""
    data = prepare_data(CONFIG)
    model = build_model(CONFIG, data.n_classes, data.input_shape)
    params = model.init(CONFIG.seed, dtype=CONFIG.dtype, backend=CONFIG.backend)
    rec = measure.measure(model, params, data, CONFIG.fewshot_episodes, CONFIG.seed, probe=True)
    return model, params, data, rec


def close(a, b, what=""):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-9, atol=1e-12,
                               err_msg=what)


def cp_upper(Z, y, means):
    """The Clopper-Pearson 95% bound of the class-averaged NCC error, written out: the errors among the first n
    test samples of every class (n the smallest class count), pooled."""
    wrong = collapse.ncc_predict(means, Z) != y
    n = min(np.sum(y == c) for c in np.unique(y))
    firsts = np.concatenate([np.flatnonzero(y == c)[:n] for c in np.unique(y)])
    return bounds.clopper_pearson_upper(int(wrong[firsts].sum()), len(firsts))


def direct(model, params, data):
    """{metric: value} computed here with the library's functions, the way the module docstring defines them."""
    Ztr, Zte = to_numpy(model.embed(params, data.X_train)), to_numpy(model.embed(params, data.X_test))
    ytr, yte = data.y_train, data.y_test
    means, test_means = collapse.class_means(Ztr, ytr), collapse.class_means(Zte, yte)
    class_gc = gc.class_gc(model, params, data.X_eval, data.y_eval)  # training images
    class_gc_test = gc.class_gc(model, params, data.X_eval_test, data.y_eval_test)  # test images
    var_test, rho = collapse.class_variances(Zte, yte), data.rho
    out = {}
    for split, Z, y in (("train", Ztr, ytr), ("test", Zte, yte)):
        logits = to_numpy(model.head(params, Z))
        out[f"{split}_loss"] = np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
        out[f"{split}_acc"] = np.mean(logits.argmax(axis=1) == y)
    out.update({
        "gc": gc.geometric_complexity(model, params, data.X_eval),  # the mean over the whole subset
        "class_gc": class_gc,
        "logit_gc": gc.geometric_complexity(model, params, data.X_eval, target="logits"),
        "gc_test": gc.geometric_complexity(model, params, data.X_eval_test),
        "class_gc_test": class_gc_test,
        "gcol": collapse.geometric_collapse(class_gc, means),
        "nc_train": collapse.cdnv(Ztr, ytr),
        "nc_test": collapse.cdnv(Zte, yte),
        "nc1": collapse.nc1(Ztr, ytr),
        "nc2_equinorm": collapse.nc2_equinorm(Ztr, ytr),
        "nc2_equiangularity": collapse.nc2_equiangularity(Ztr, ytr),
        "nc2_maxangle": collapse.nc2_maxangle(Ztr, ytr),
        "nc3": collapse.nc3_self_duality(to_numpy(params[-1][0]), Ztr, ytr),
        "nc4": collapse.nc4_ncc_mismatch(to_numpy(model.head(params, Ztr)), Ztr, ytr),
        "ncc_test_error": collapse.ncc_error(Zte, yte, means=means),
        "ncc_test_error_balanced": collapse.ncc_error(Zte, yte, means=means, balanced=True),
        "ncc_train_error": collapse.ncc_error(Ztr, ytr, means=means),
        "bound_markov": bounds.ncc_error_bound(Zte, yte, means=means, kind="markov").value,
        "bound_directional": bounds.ncc_error_bound(Zte, yte, means=means, kind="directional").value,
        "bound_markov_capped": bounds.capped(bounds.ncc_error_bound(Zte, yte, means=means, kind="markov")).value,
        "bound_directional_capped": bounds.capped(
            bounds.ncc_error_bound(Zte, yte, means=means, kind="directional")).value,
        "ncc_test_error_cp_upper": cp_upper(Zte, yte, means),
        "rho": rho,
        "rho_max": np.max(rho),
        "offset_sq": np.sum((test_means - means) ** 2, axis=1),
        "bound_gc": bounds.ncc_error_bound_gc(class_gc_test, means, rho, test_means).value,
        "bound_gc_capped": bounds.capped(bounds.ncc_error_bound_gc(class_gc_test, means, rho, test_means)).value,
        "bound_gc_directional": bounds.ncc_error_bound_directional_gc(
            gc.directional_gc(model, params, data.X_eval_test, data.y_eval_test, means), means, rho, test_means).value,
        "nc_gc_bound": bounds.nc_gc_bound(class_gc, means, rho).value,
        "implied_rho": bounds.implied_rho(Ztr, ytr, class_gc),
        "implied_rho_test": var_test / class_gc_test,
        "implied_rho_test_max": np.max(var_test / class_gc_test),
        "poincare_margin": bounds.poincare_margins(class_gc_test, var_test, rho),
        "poincare_margin_min": np.min(bounds.poincare_margins(class_gc_test, var_test, rho)),
    })
    Zt = to_numpy(model.embed(params, data.X_target))
    out["target_nc"] = collapse.cdnv(Zt, data.y_target)
    for classifier, suffix in (("ncc", ""), ("logreg", "_logreg")):
        for shots in (5, 1):
            res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=5, shots=shots, queries=15, n_episodes=EPISODES,
                                              rng=CONFIG.seed, classifier=classifier)
            out[f"fewshot{shots}{suffix}"], out[f"fewshot{shots}{suffix}_ci95"] = res.mean, res.ci95
    res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=5, shots=5, queries=15, n_episodes=EPISODES,
                                      rng=CONFIG.seed, classifier="logreg", normalize=False)  # the raw-feature probe
    out["fewshot5_logreg_raw"], out["fewshot5_logreg_raw_ci95"] = res.mean, res.ci95
    res = fewshot.evaluate_embeddings(Zt, data.y_target, ways=5, shots=5, queries=15, n_episodes=EPISODES,
                                      rng=CONFIG.seed, groups=data.target_groups)
    out["fewshot5_distinct"], out["fewshot5_distinct_ci95"] = res.mean, res.ci95
    return out


def test_every_recorded_metric_equals_the_library_function_called_directly(run):
    model, params, data, rec = run
    assert "warnings" not in rec, rec.get("warnings")
    expected = direct(model, params, data)
    assert set(rec) == set(expected), f"recorded but not checked here: {set(rec) - set(expected)}; checked but " \
                                      f"not recorded: {set(expected) - set(rec)}"
    for key, value in expected.items():
        close(rec[key], value, key)
    assert all(isinstance(v, (float, list)) for v in rec.values())  # JSON-able: floats and lists of floats


def test_the_gc_bound_is_built_from_the_test_images_class_gc_not_the_training_images(run):
    model, params, data, rec = run
    Ztr, Zte = to_numpy(model.embed(params, data.X_train)), to_numpy(model.embed(params, data.X_test))
    means, test_means = collapse.class_means(Ztr, data.y_train), collapse.class_means(Zte, data.y_test)
    train_gc = gc.class_gc(model, params, data.X_eval, data.y_eval)
    test_gc = gc.class_gc(model, params, data.X_eval_test, data.y_eval_test)
    assert not np.allclose(train_gc, test_gc, rtol=1e-3)  # the two subsets differ, so a slip would show
    wrong_gc = bounds.ncc_error_bound_gc(train_gc, means, data.rho, test_means).value
    wrong_offsets = bounds.ncc_error_bound_gc(test_gc, means, data.rho, means).value  # offsets of 0
    right = bounds.ncc_error_bound_gc(test_gc, means, data.rho, test_means).value
    assert rec["bound_gc"] == pytest.approx(right, rel=1e-9)
    assert not np.isclose(rec["bound_gc"], wrong_gc, rtol=1e-6) and not np.isclose(rec["bound_gc"], wrong_offsets,
                                                                                    rtol=1e-6)
    assert rec["class_gc_test"] == pytest.approx(test_gc.tolist(), rel=1e-9)


def test_the_fewshot_metrics_are_left_out_without_target_classes_or_episodes(run):
    model, params, data, _ = run
    no_target = dataclasses.replace(data, X_target=None, y_target=None, n_target_classes=0, target_groups=None)
    rec = measure.measure(model, params, no_target, fewshot_episodes=EPISODES, seed=CONFIG.seed)
    assert not [k for k in rec if k.startswith(("fewshot", "target_"))]
    rec = measure.measure(model, params, data, fewshot_episodes=0, seed=CONFIG.seed)
    assert "target_nc" in rec and not [k for k in rec if k.startswith("fewshot")]


def test_a_metric_that_cannot_be_computed_is_nan_with_its_reason_and_the_run_goes_on(run):
    model, _, data, _ = run
    dead = [tuple(0.0 * np.asarray(a) for a in layer) for layer in model.init(0)]  # every embedding is 0
    rec = measure.measure(model, dead, data)
    assert np.isnan(rec["nc_train"]) and any(w.startswith("nc_train:") for w in rec["warnings"])
    assert np.isfinite(rec["train_loss"])


def test_an_unknown_extra_is_refused_and_a_registered_one_is_recorded(run, monkeypatch):
    model, params, data, _ = run
    with pytest.raises(ValueError, match=r"unknown extra metrics 'nope'; registered: \['agop', 'flatness', 'gc_estimators', 'layers', 'moment_bounds', 'moment_bounds_gc'\]"):
        measure.measure(model, params, data, extras=("nope",))
    monkeypatch.setitem(measure.EXTRAS, "mine", lambda model, params, data, seed, step: {"mine": float(seed + step)})
    assert measure.measure(model, params, data, seed=2, extras=("mine",), step=5)["mine"] == 7.0


MOMENT_EXTRAS = ("moment_bounds", "moment_bounds_gc")
MOMENT_KEYS = ("bound_sharp", "bound_sharp_class", "bound_sharp_gc", "bound_gc_weighted", "bound_sharp_gc_weighted",
               "weighted_poincare_margin", "weighted_poincare_margin_min", "seconds_moment_bounds",
               "seconds_moment_bounds_gc")


@pytest.fixture(scope="module")
def gaussian_run():
    """(model, params, data) of an untrained tanh MLP (no dead units) on the synthetic Gaussian classes."""
    config = scale_base("tiny", dataset="gaussians", hidden=(16, 6), activation="tanh", eval_per_class=20,
                        extras=MOMENT_EXTRAS, seed=1)
    data = prepare_data(config)
    model = build_model(config, data.n_classes, data.input_shape)
    return model, model.init(config.seed, dtype="float64", backend="numpy"), data


def test_the_moment_bounds_extra_records_every_key_finite_and_the_sharp_bound_is_the_tightest(run, gaussian_run):
    for model, params, data in (run[:3], gaussian_run):
        rec = measure.measure(model, params, data, extras=MOMENT_EXTRAS)
        assert "warnings" not in rec, rec["warnings"]
        assert all(np.all(np.isfinite(rec[k])) for k in MOMENT_KEYS)
        assert len(rec["bound_sharp_class"]) == len(rec["weighted_poincare_margin"]) == data.n_classes
        assert rec["bound_sharp"] <= rec["bound_directional_capped"] + 1e-6  # the best bound from these moments
        assert rec["bound_sharp"] == pytest.approx(np.mean(rec["bound_sharp_class"]), rel=1e-12)
        assert 0 <= rec["bound_sharp"] <= 1 and 0 <= rec["bound_gc_weighted"] <= 1
        Zte = to_numpy(model.embed(params, data.X_test))
        means = collapse.class_means(to_numpy(model.embed(params, data.X_train)), data.y_train)
        expected = bounds.ncc_error_bound(Zte, data.y_test, means=means, kind="sharp").value
        assert rec["bound_sharp"] == pytest.approx(expected, rel=1e-9)
        assert rec["ncc_test_error_balanced"] <= rec["ncc_test_error_cp_upper"] <= 1


def test_the_sharp_gc_bound_is_at_least_the_sharp_bound_when_the_poincare_step_holds(gaussian_run):
    """With rho large enough that rho_c E_c[J J^T] >= Cov_c in the PSD order (which the trace margins >= 1 do not
    imply alone, so it is checked), the sharp bound only grows: bound_sharp_gc >= bound_sharp."""
    model, params, data = gaussian_run
    data = dataclasses.replace(data, rho=4.0 * data.rho)
    rec = measure.measure(model, params, data, extras=MOMENT_EXTRAS)
    assert rec["poincare_margin_min"] >= 1
    JJ, _ = gc.class_jacobian_moments(model, params, data.X_eval_test, data.y_eval_test)
    Zte = to_numpy(model.embed(params, data.X_test))
    for c in range(data.n_classes):
        S = np.cov(Zte[data.y_test == c].T, ddof=0)
        assert np.linalg.eigvalsh(data.rho[c] * JJ[c] - S).min() >= 0  # the matrix Poincare step holds here
    assert rec["bound_sharp_gc"] >= rec["bound_sharp"] - 1e-6
    # on Gaussian classes the weighted step uses the true Sigma_c: the same as rho_c E[J J^T] (Sigma_c = rho_c I)
    d0 = gaussian_run[2]
    rec0 = measure.measure(model, params, d0, extras=MOMENT_EXTRAS)
    assert rec0["bound_sharp_gc_weighted"] == pytest.approx(rec0["bound_sharp_gc"], rel=1e-6, abs=1e-8)
    assert rec0["weighted_poincare_margin"] == pytest.approx(rec0["poincare_margin"], rel=1e-9)


def test_an_extra_at_the_ends_is_recorded_at_step_0_and_the_last_step_only(run, monkeypatch):
    model, params, data, _ = run
    monkeypatch.setitem(measure.EXTRAS, "ends", lambda model, params, data, seed, step: {"ends": float(step)})
    monkeypatch.setattr(measure, "AT_ENDS", measure.AT_ENDS | {"ends"})
    recorded = [measure.measure(model, params, data, extras=("ends",), step=s, last_step=200).get("ends")
                for s in (0, 50, 200)]
    assert recorded == [0.0, None, 200.0]
    assert {"moment_bounds_gc", "agop", "flatness"} <= measure.AT_ENDS and "moment_bounds" not in measure.AT_ENDS
    with pytest.raises(ValueError, match="at must be one of"):
        measure.register_extra("x", at="sometimes")


def test_the_agop_extra_is_the_spectrum_of_gc_agop_whose_trace_is_the_gc(run):
    model, params, data, _ = run
    rec = measure.measure(model, params, data, extras=("agop",), step=0, last_step=10)
    N = data.X_eval.shape[0]
    sub = np.arange(0, N, max(1, N // measure.AGOP_IMAGES))[:measure.AGOP_IMAGES]
    lam = np.sort(np.linalg.eigvalsh(gc.agop(model, params, data.X_eval[sub])))[::-1]
    assert rec["agop_eigs"] == pytest.approx(lam[:measure.AGOP_EIGS], rel=1e-10, abs=1e-12)
    assert rec["agop_trace"] == pytest.approx(gc.geometric_complexity(model, params, data.X_eval[sub]), rel=1e-9)
    assert rec["agop_dirs90"] == gc.agop_directions(lam, 0.9)


def test_the_flatness_extra_is_hutchinsons_trace_on_the_fixed_subset_with_the_runs_probes(run):
    from minigcnc import sharpness

    model, params, data, _ = run
    rec = measure.measure(model, params, data, seed=3, extras=("flatness",), step=0, last_step=100)
    N = len(data.y_train)
    idx = np.sort(np.random.default_rng(measure.FLATNESS_SUBSET_SEED).choice(N, size=min(measure.FLATNESS_IMAGES, N),
                                                                            replace=False))
    samples = sharpness.hessian_trace_samples(model, params, data.X_train[idx], data.y_train[idx],
                                              probes=measure.FLATNESS_PROBES, seed=np.random.default_rng([3, 29]))
    assert rec["hessian_trace"] == pytest.approx(samples.mean(), rel=1e-12)
    assert rec["hessian_trace_se"] == pytest.approx(samples.std(ddof=1) / np.sqrt(len(samples)), rel=1e-12)
    assert rec["seconds_flatness"] > 0
    # the same probes at every evaluation of the run
    assert measure.measure(model, params, data, seed=3, extras=("flatness",), step=100,
                           last_step=100)["hessian_trace"] == rec["hessian_trace"]
    assert "hessian_trace" not in measure.measure(model, params, data, seed=3, extras=("flatness",), step=50,
                                                  last_step=100)  # recorded at the ends only


def test_the_layers_extra_records_every_layer_and_its_last_layer_is_the_embedding(run):
    from minigcnc import layerwise

    model, params, data, rec0 = run
    rec = measure.measure(model, params, data, seed=3, extras=("layers",))
    L = len(model.layers)
    for key in ("layer_cdnv", "layer_nc1", "layer_gc", "layer_target_cdnv", "layer_fewshot5", "layer_fewshot5_ci95"):
        assert len(rec[key]) == L + 1, key
    assert rec["layer_gc"][0] == model.input_dim
    assert rec["layer_gc"][-1] == pytest.approx(rec0["gc"], rel=1e-9)  # the embedding's GC on the same images
    Z = to_numpy(model.embed(params, data.X_eval))
    close(rec["layer_cdnv"][-1], collapse.cdnv(Z, data.y_eval))
    close(rec["layer_nc1"][-1], collapse.nc1(Z, data.y_eval))
    close(rec["layer_target_cdnv"][-1], rec0["target_nc"])
    expected = layerwise.layer_metrics(model, params, data.X_eval, data.y_eval, X_target=data.X_target,
                                       y_target=data.y_target, fewshot_episodes=measure.LAYER_FEWSHOT_EPISODES, seed=3)
    close(rec["layer_fewshot5"], [r["fewshot5"] for r in expected])
    N = data.X_eval.shape[0]
    sub = np.arange(0, N, max(1, N // measure.AGOP_IMAGES))[:measure.AGOP_IMAGES]
    assert rec["agop_trace"] == pytest.approx(gc.geometric_complexity(model, params, data.X_eval[sub]), rel=1e-9)
    assert len(rec["agop_eigs"]) == min(measure.AGOP_EIGS, model.input_dim)
    assert sum(rec["agop_eigs"]) <= rec["agop_trace"] * (1 + 1e-9)
    assert 1 <= rec["agop_dirs90"] <= model.input_dim and rec["seconds_layers"] > 0
