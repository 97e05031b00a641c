"""train.fit: the SGD and momentum updates, determinism, argument checks, divergence, checkpoints, evaluations,
and that it learns; train.batch_indices / train.batches: the deterministic mini-batches."""
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from minigcnc import data, gc, models, train
from minigcnc.backend import tree_leaves

N, D, K = 40, 6, 3


@pytest.fixture
def problem(rng):
    """A small MLP and a random 3-class problem: (model, params, X (40, 6), y (40,))."""
    model = models.mlp([D, 8, 5], K)
    return model, model.init(0), rng.standard_normal((N, D)), rng.integers(0, K, size=N)


def fit(model, params, X, y, **kw):
    kw = {"lr": 0.1, "batch_size": 8, "steps": 5, "progress": False, **kw}
    return train.fit(model, params, X, y, **kw)


def assert_same_params(a, b):
    assert all(np.array_equal(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b)))


def objective_by_hand(model, X, y, step, batch_size, seed, l2):
    """CE on batch ``step`` plus (l2 / 2) ||theta||^2, written with autograd.numpy."""
    idx = train.batch_indices(len(X), batch_size, step, seed)
    return lambda p: model.loss(p, X[idx], y[idx]) + 0.5 * l2 * sum(anp.sum(a**2) for a in tree_leaves(p))


# ---- the update rule -----------------------------------------------------------------------------------------
def test_one_sgd_step_is_theta_minus_lr_times_the_gradient_of_loss_plus_l2(problem):
    model, params, X, y = problem
    lr, l2 = 0.3, 0.01
    g = grad(objective_by_hand(model, X, y, 0, 8, 5, l2))(params)
    expected = [a - lr * b for a, b in zip(tree_leaves(params), tree_leaves(g))]
    result = fit(model, params, X, y, lr=lr, l2=l2, steps=1, seed=5)
    assert result.step == 1 and not result.diverged
    for got, want in zip(tree_leaves(result.params), expected):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    assert not np.allclose(tree_leaves(result.params)[0], tree_leaves(params)[0])  # it moved


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fit_steps_equal_the_reference_sgd_step_bit_for_bit(problem, momentum):
    """fit's in-place fast step (fast_step.sgd_update) against ``train.sgd_step`` on autograd's gradient."""
    from autograd import value_and_grad

    model, params, X, y = problem
    lr, l2, p, v, losses = 0.2, 0.01, params, None, []
    v = [tuple(np.zeros_like(a) for a in layer) for layer in params] if momentum else None
    for step in range(4):
        loss, g = value_and_grad(objective_by_hand(model, X, y, step, 8, 3, l2))(p)
        p, v = train.sgd_step(p, g, lr, momentum, v)
        losses.append(float(loss))
    result = fit(model, params, X, y, lr=lr, l2=l2, momentum=momentum, steps=4, seed=3)
    assert_same_params(result.params, p)
    assert result.losses == losses


def test_momentum_accumulates_v_then_steps_theta_minus_lr_v(problem):
    model, params, X, y = problem
    lr, mu, l2 = 0.2, 0.9, 0.001
    theta = tree_leaves(params)
    v = [np.zeros_like(a) for a in theta]
    for step in range(3):
        p = [tuple(theta[2 * i : 2 * i + 2]) for i in range(len(theta) // 2)]
        g = tree_leaves(grad(objective_by_hand(model, X, y, step, 8, 0, l2))(p))
        v = [mu * vi + gi for vi, gi in zip(v, g)]
        theta = [t - lr * vi for t, vi in zip(theta, v)]
    result = fit(model, params, X, y, lr=lr, l2=l2, momentum=mu, steps=3)
    for got, want in zip(tree_leaves(result.params), theta):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_losses_are_the_objective_of_each_step_before_its_update(problem):
    model, params, X, y = problem
    result = fit(model, params, X, y, steps=1, seed=2)
    assert result.losses == [pytest.approx(objective_by_hand(model, X, y, 0, 8, 2, 0.0)(params), rel=1e-14)]


# ---- determinism ---------------------------------------------------------------------------------------------
def test_a_seed_makes_a_run_bit_for_bit_reproducible(problem):
    model, params, X, y = problem
    a = fit(model, params, X, y, steps=12, momentum=0.9, l2=1e-3, seed=3)
    b = fit(model, params, X, y, steps=12, momentum=0.9, l2=1e-3, seed=3)
    assert_same_params(a.params, b.params)
    assert a.losses == b.losses


def test_different_seeds_see_different_batches_and_end_elsewhere(problem):
    model, params, X, y = problem
    a = fit(model, params, X, y, steps=3, seed=3)
    b = fit(model, params, X, y, steps=3, seed=4)
    assert not np.array_equal(tree_leaves(a.params)[0], tree_leaves(b.params)[0])


# ---- argument checks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"lr": float("nan")}, ValueError, r"lr must be a finite number > 0; got nan"),
        ({"lr": float("inf")}, ValueError, r"lr must be a finite number > 0; got inf"),
        ({"lr": 0.0}, ValueError, r"lr must be a finite number > 0; got 0.0"),
        ({"lr": -0.1}, ValueError, r"lr must be a finite number > 0; got -0.1"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an integer >= 1; got 0"),
        ({"batch_size": N + 1}, ValueError, r"batch_size must be at most the number of samples \(40\); got 41"),
        ({"batch_size": 2.5}, TypeError, r"batch_size must be an integer"),  # the wrong type: TypeError
        ({"steps": -1}, ValueError, r"steps must be an integer >= 0; got -1"),
        ({"momentum": 1.0}, ValueError, r"momentum must be a finite number >= 0 and < 1; got 1.0"),
        ({"l2": -1e-3}, ValueError, r"l2 must be a finite number >= 0; got -0.001"),
        ({"eval_every": 0}, ValueError, r"eval_every must be an integer >= 1; got 0"),
        ({"seed": -1}, ValueError, r"seed must be an integer >= 0; got -1"),
    ],
    ids=["lr-nan", "lr-inf", "lr-zero", "lr-negative", "batch-zero", "batch-too-big", "batch-float", "steps",
         "momentum", "l2", "eval_every", "seed"],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_parameter(problem, kwargs, error, message):
    model, params, X, y = problem
    with pytest.raises(error, match=message):
        fit(model, params, X, y, **kwargs)


def test_a_nan_in_x_raises_value_error_naming_x_before_any_step(problem, tmp_path):
    model, params, X, y = problem
    X = X.copy()
    X[3, 2] = np.nan
    calls = []
    ckpt = tmp_path / "run.npz"
    with pytest.raises(ValueError, match=r"X contains 1 non-finite values .* first at index \(3, 2\)"):
        fit(model, params, X, y, steps=50, on_eval=lambda step, p: calls.append(step), checkpoint=str(ckpt))
    assert calls == [] and not ckpt.exists()  # not even the step-0 evaluation ran


@pytest.mark.parametrize("bad", [K, -1])
def test_labels_out_of_range_raise_value_error_naming_the_range(problem, bad):
    model, params, X, y = problem
    y = y.copy()
    y[7] = bad
    with pytest.raises(ValueError, match=r"labels out of range: y has values in \[-?\d+, \d+\] but the model has 3 "
                                         r"classes \(labels must be in \[0, 2\]\)"):
        fit(model, params, X, y)


def test_x_and_y_of_different_lengths_raise_value_error(problem):
    model, params, X, y = problem
    with pytest.raises(ValueError, match="X has 40 samples but y has 39 labels"):
        fit(model, params, X, y[:-1])


def test_non_integer_labels_raise_value_error(problem):
    model, params, X, y = problem
    with pytest.raises(ValueError, match="y must hold integer class labels"):
        fit(model, params, X, y + 0.5)


def test_string_labels_raise_value_error_saying_how_to_map_them(problem):
    model, params, X, _ = problem
    y = np.array(list("abc") * 13 + ["a"])
    with pytest.raises(ValueError) as error:
        fit(model, params, X, y)
    assert str(error.value) == ("y must hold integer class labels; got strings (dtype <U1): map them to 0..k-1, "
                                "e.g. numpy.unique(y, return_inverse=True)[1]")


def test_params_of_another_model_are_refused_before_any_step(problem):
    model, _, X, y = problem
    calls = []
    wider = models.mlp([D, 16, 5], K).init(0)
    with pytest.raises(ValueError) as error:
        fit(model, wider, X, y, on_eval=lambda step, p: calls.append(step))
    assert str(error.value) == ("params were built for another model: layer 1 weight has shape (6, 16), the model "
                                "needs (6, 8); build them with model.init(seed)")
    assert calls == []
    with pytest.raises(ValueError, match=r"the head bias has shape \(4,\), the model needs \(3,\)"):
        fit(model, models.mlp([D, 8, 5], 4).init(0)[:-1] + [model.init(0)[-1][:1] + (np.zeros(4),)], X, y)
    with pytest.raises(ValueError, match=r"^params were built for another model: they hold 4 arrays, the model "
                                         r"needs 6; build them with model.init\(seed\)$"):
        fit(model, models.mlp([D, 5], K).init(0), X, y)


def test_mlp_784_128_params_given_to_an_mlp_784_256_name_the_layer_and_both_shapes(rng):
    X, y = rng.standard_normal((8, 784)), np.arange(8) % 3
    with pytest.raises(ValueError, match=r"layer 1 weight has shape \(784, 128\), the model needs \(784, 256\); "
                                         r"build them with model.init\(seed\)"):
        fit(models.mlp([784, 256, 10], 3), models.mlp([784, 128, 10], 3).init(0), X, y)


# ---- divergence ----------------------------------------------------------------------------------------------
def test_divergence_mid_run_is_reported_with_step_and_lr_without_raising(problem):
    model, params, X, y = problem
    with np.errstate(over="ignore", invalid="ignore"):
        result = fit(model, params, X, y, lr=1e30, steps=50)
    assert result.diverged
    assert 0 < result.step < 50 and len(result.losses) == result.step and np.all(np.isfinite(result.losses))
    # FitResult.step and the message name the same step: the last one applied (the next one's loss diverged)
    assert result.message.startswith(f"diverged after step {result.step}: the loss of step {result.step + 1} is ")
    assert "lr=1e+30" in result.message
    with np.errstate(over="ignore", invalid="ignore"):
        before = fit(model, params, X, y, lr=1e30, steps=result.step)
    assert_same_params(result.params, before.params)  # the parameters of the last finite step come back


def test_a_huge_but_finite_loss_counts_as_divergence(problem):
    """ReLU nets blown up by a large lr often give losses like 1e80 rather than NaN."""
    model, params, X, y = problem
    with np.errstate(over="ignore", invalid="ignore"):
        result = fit(model, params, X, y, lr=1e10, steps=50)
    assert result.diverged and result.step < 50 and np.all(np.isfinite(result.losses))
    assert f"diverged after step {result.step}: the loss of step {result.step + 1}" in result.message
    assert "lr=10000000000.0" in result.message


def test_a_run_that_does_not_diverge_says_so(problem):
    model, params, X, y = problem
    result = fit(model, params, X, y)
    assert not result.diverged and result.message == "" and result.step == 5


# ---- checkpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_run_resumed_from_a_checkpoint_equals_an_uninterrupted_run_bit_for_bit(problem, tmp_path, momentum):
    model, params, X, y = problem
    kw = {"momentum": momentum, "l2": 1e-3, "seed": 1, "checkpoint_every": 5}
    whole = fit(model, params, X, y, steps=20, checkpoint=str(tmp_path / "whole.npz"), **kw)
    ckpt = str(tmp_path / "resumed.npz")
    first = fit(model, params, X, y, steps=10, checkpoint=ckpt, **kw)
    assert first.step == 10
    resumed = fit(model, model.init(0), X, y, steps=20, checkpoint=ckpt, **kw)  # as a fresh process would
    assert resumed.step == 20
    assert_same_params(resumed.params, whole.params)
    assert resumed.losses == whole.losses


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_run_killed_between_checkpoints_resumes_from_the_last_one_bit_for_bit(problem, tmp_path, momentum):
    model, params, X, y = problem
    kw = {"momentum": momentum, "seed": 1, "checkpoint_every": 5, "eval_every": 1}
    record = lambda step, p: {"w00": float(p[0][0][0, 0])}  # noqa: E731
    whole = fit(model, params, X, y, steps=20, on_eval=record, **kw)

    def crash_at_12(step, p):
        if step == 12:
            raise KeyboardInterrupt
        return record(step, p)

    ckpt = str(tmp_path / "run.npz")
    with pytest.raises(KeyboardInterrupt):
        fit(model, params, X, y, steps=20, on_eval=crash_at_12, checkpoint=ckpt, **kw)
    resumed = fit(model, params, X, y, steps=20, on_eval=record, checkpoint=ckpt, **kw)
    assert_same_params(resumed.params, whole.params)
    assert resumed.history == whole.history  # evaluations 0..10 came from the checkpoint, 11..20 were redone


def test_a_hutchinson_penalized_run_resumed_from_a_checkpoint_equals_an_uninterrupted_run(problem, tmp_path):
    """The penalty's probes are keyed by the training step, not by how many times it was called."""
    model, params, X, y = problem
    penalty = lambda seed=3: gc.make_gc_penalty(model, 0.5, method="hutchinson", seed=seed)  # noqa: E731
    kw = {"momentum": 0.9, "seed": 1, "checkpoint_every": 3}
    whole = fit(model, params, X, y, steps=6, penalty=penalty(), **kw)
    ckpt = str(tmp_path / "resumed.npz")
    assert fit(model, params, X, y, steps=3, penalty=penalty(), checkpoint=ckpt, **kw).step == 3
    resumed = fit(model, model.init(0), X, y, steps=6, penalty=penalty(), checkpoint=ckpt, **kw)
    assert_same_params(resumed.params, whole.params)
    assert resumed.losses == whole.losses
    other = fit(model, params, X, y, steps=6, penalty=penalty(seed=4), **kw)  # the probes matter
    assert not np.array_equal(other.params[0][0], whole.params[0][0])


def edited_checkpoint(path, keep_digest=False, **changes):
    """Rewrite the checkpoint at ``path`` with some arrays replaced (its digest kept as it was, or redone)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    arrays.update({k: np.asarray(v) for k, v in changes.items()})
    if not keep_digest:
        arrays["digest"] = np.array(train._checkpoint_digest(arrays))
    with open(path, "wb") as out:
        np.savez(out, **arrays)


def meta_with(path, **changes):
    import json

    with np.load(path, allow_pickle=False) as f:
        return json.dumps({**json.loads(str(f["meta"])), **changes}, sort_keys=True)


def discarded(model, params, X, y, ckpt, **kw):
    """fit resumed from ``ckpt``: it warns once, in one line, that the checkpoint was discarded, and starts over."""
    with pytest.warns(UserWarning) as caught:
        result = fit(model, params, X, y, checkpoint=ckpt, **kw)
    (message,) = [str(w.message) for w in caught if "checkpoint" in str(w.message)]
    assert message.startswith(f"checkpoint {ckpt} ") and message.endswith("; discarded, the run starts from step 0")
    assert "\n" not in message
    return result, message


def test_a_checkpoint_of_another_model_is_discarded_with_a_warning(problem, tmp_path):
    model, params, X, y = problem
    ckpt = str(tmp_path / "run.npz")
    fit(model, params, X, y, steps=2, checkpoint=ckpt)
    wider = models.mlp([D, 9, 5], K)
    result, message = discarded(wider, wider.init(0), X, y, ckpt, steps=4)
    assert "does not match this model" in message
    assert_same_params(result.params, fit(wider, wider.init(0), X, y, steps=4).params)  # trained from step 0


@pytest.mark.parametrize("case,why", [
    ("another seed", "is of another run: seed 2 (this run: 1)"),
    ("another key", "is of another run: key 'run-b' (this run: 'run-a')"),
    ("step beyond the run", "claims step 1000000 of a run of 6 steps"),
    ("edited parameters", "does not match its digest"),
    ("no digest", "has no digest"),
    ("damaged file", "is damaged ("),
    ("truncated file", "is damaged ("),
])
def test_a_checkpoint_that_is_not_this_runs_is_discarded_and_the_run_trains_from_step_0(problem, tmp_path, case, why):
    """Each case of issue 33 item 1 for checkpoints: the run is trained from scratch, bit-identical, and the
    discarded file is replaced by the run's own."""
    model, params, X, y = problem
    kw = {"seed": 1, "steps": 6, "checkpoint_every": 3, "checkpoint_key": "run-a"}
    whole = fit(model, params, X, y, **kw)
    ckpt = str(tmp_path / "run.npz")
    if case == "another seed":
        fit(model, params, X, y, **{**kw, "seed": 2, "steps": 3})
        fit(model, params, X, y, checkpoint=ckpt, **{**kw, "seed": 2, "steps": 3})
    else:
        fit(model, params, X, y, checkpoint=ckpt, **{**kw, "steps": 3})
    if case == "another key":
        edited_checkpoint(ckpt, meta=meta_with(ckpt, key="run-b"))
    elif case == "step beyond the run":
        edited_checkpoint(ckpt, step=np.array(1_000_000))
    elif case == "edited parameters":
        with np.load(ckpt, allow_pickle=False) as f:
            p0 = f["p0"].copy()
        p0[0, 0] += 1e-3
        edited_checkpoint(ckpt, keep_digest=True, p0=p0)
    elif case == "no digest":
        with np.load(ckpt, allow_pickle=False) as f:
            arrays = {n: f[n] for n in f.files if n not in ("digest", "meta")}
        with open(ckpt, "wb") as out:
            np.savez(out, **arrays)
    elif case == "damaged file":
        Path(ckpt).write_bytes(b"PK\x03\x04 not a zip")
    elif case == "truncated file":
        data = Path(ckpt).read_bytes()
        Path(ckpt).write_bytes(data[: len(data) // 2])
    kw.pop("seed")
    result, message = discarded(model, params, X, y, ckpt, seed=1, **kw)
    assert why in message, message
    assert result.step == 6 and result.losses == whole.losses
    assert_same_params(result.params, whole.params)
    assert Path(ckpt).exists()  # the run's own final checkpoint
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit(model, params, X, y, checkpoint=ckpt, seed=1, **kw).losses == whole.losses  # resumed, silently


def test_a_checkpoint_path_without_npz_suffix_is_written_whole_and_resumed(problem, tmp_path):
    model, params, X, y = problem
    whole = fit(model, params, X, y, steps=8, seed=2)
    ckpt = tmp_path / "run.ckpt"
    fit(model, params, X, y, steps=4, seed=2, checkpoint=str(ckpt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary file left behind
    resumed = fit(model, params, X, y, steps=8, seed=2, checkpoint=str(ckpt))
    assert_same_params(resumed.params, whole.params)


# ---- evaluations ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps,expected", [(23, [0, 10, 20, 23]), (20, [0, 10, 20])])
def test_on_eval_runs_at_step_0_every_eval_every_steps_and_at_the_last_step(problem, steps, expected):
    model, params, X, y = problem
    result = fit(model, params, X, y, steps=steps, eval_every=10,
                 on_eval=lambda step, p: {"loss": float(model.loss(p, X, y))})
    assert [h["step"] for h in result.history] == expected
    assert result.history[0]["loss"] == model.loss(params, X, y)
    assert result.history[-1]["loss"] == model.loss(result.params, X, y)


# ---- mini-batches --------------------------------------------------------------------------------------------
def test_batch_indices_shuffle_each_epoch_without_repeats_and_resume_exactly():
    n, bs, seed = 10, 3, 4
    epoch0 = np.concatenate([train.batch_indices(n, bs, s, seed) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # 3 full batches, no repeats; one example sits the epoch out
    epoch1 = np.concatenate([train.batch_indices(n, bs, s, seed) for s in range(3, 6)])
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(train.batch_indices(n, bs, 4, seed), train.batch_indices(n, bs, 4, seed))
    assert not np.array_equal(train.batch_indices(n, bs, 4, seed), train.batch_indices(n, bs, 4, seed + 1))
    full = list(train.batches(n, bs, seed, num_steps=20))
    resumed = list(train.batches(n, bs, seed, start_step=7, num_steps=13))
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a, b)
    for step, batch in enumerate(full):
        np.testing.assert_array_equal(batch, train.batch_indices(n, bs, step, seed))


def test_batch_size_larger_than_n_is_an_error():
    with pytest.raises(ValueError, match="batch_size: received 11 for n = 10"):
        train.batch_indices(10, 11, 0, 0)
    with pytest.raises(TypeError, match="step"):
        train.batch_indices(10, 2, 1.5, 0)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 0; got -1"):
        train.batches(10, 2, 0, num_steps=-1)


# ---- learning ------------------------------------------------------------------------------------------------
def accuracy(model, params, X, y):
    return float(np.mean(np.argmax(model.logits(params, X), axis=1) == y))


def test_a_small_mlp_learns_mnist5k_well_above_chance():
    X, y = data.load("mnist5k", "train")
    _, _, X = data.standardize(X)
    model = models.mlp([784, 32, 32], 10)
    params = model.init(0)
    before = accuracy(model, params, X, y)
    result = fit(model, params, X, y, lr=0.1, batch_size=32, steps=200)
    after = accuracy(model, result.params, X, y)
    assert before < 0.3 and after > 0.85, (before, after)  # chance is 0.1
    assert np.mean(result.losses[-20:]) < 0.5 * np.mean(result.losses[:20])


@pytest.mark.slow
def test_mlp_reaches_93_percent_test_accuracy_on_mnist5k():
    (Xtr, ytr), (Xte, yte) = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    _, _, Xtr, Xte = data.standardize(Xtr, Xte)
    model = models.mlp([784, 256, 256, 64], 10)
    result = fit(model, model.init(0), Xtr, ytr, lr=0.1, batch_size=64, steps=400)
    assert accuracy(model, result.params, Xte, yte) >= 0.93


# ---- the fused loss, and updates that leave the caller's arrays alone ---------------------------------------
@pytest.mark.parametrize("momentum,l2", [(0.0, 0.0), (0.9, 1e-3)])
def test_fit_on_the_fused_loss_equals_fit_on_the_reference_route(rng, momentum, l2):
    model = models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,))
    X, y = rng.standard_normal((24, 1, 8, 8)), rng.integers(0, 3, size=24)
    kw = {"lr": 0.05, "batch_size": 8, "steps": 12, "momentum": momentum, "l2": l2}
    fused = fit(model, model.init(0), X, y, **kw)
    ref = fit(model, model.init(0), X, y, fused=False, **kw)
    np.testing.assert_allclose(fused.losses, ref.losses, rtol=1e-12)
    for a, b in zip(tree_leaves(fused.params), tree_leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("with_penalty", [False, True])
def test_fit_leaves_the_callers_params_and_every_evaluated_params_untouched(problem, momentum, with_penalty):
    model, params, X, y = problem
    before = [a.copy() for a in tree_leaves(params)]
    seen = []  # params handed to on_eval, kept: a later in-place update must not change them
    on_eval = lambda step, p: seen.append((p, [a.copy() for a in tree_leaves(p)])) or {}  # noqa: E731
    penalty = (lambda p, Xb, yb: 0.01 * sum(anp.sum(a * a) for a in tree_leaves(p))) if with_penalty else None
    fit(model, params, X, y, momentum=momentum, penalty=penalty, steps=6, eval_every=2, on_eval=on_eval)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(params), before))
    assert len(seen) == 4
    for p, copy in seen:
        assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(p), copy))


# ---- BLAS threads (minigcnc.threads) --------------------------------------------------------------------------
def blas_threads_now():
    from threadpoolctl import threadpool_info

    return min(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_the_automatic_rule_gives_a_small_mlp_one_thread_on_numpy_and_leaves_a_device_alone(monkeypatch):
    from minigcnc import threads

    work = threads.fit_work(models.mlp([64, 32, 16], 10), 32)  # fit's work: the batch's forward multiply-adds
    assert work < threads.SMALL_WORK and threads.auto_threads(work) == 1 and threads.resolve(work=work) == 1
    monkeypatch.setattr(threads, "idle_cores", lambda window=threads.LOAD_WINDOW: threads.usable_cores())
    assert threads.auto_threads(threads.usable_cores() * threads.SMALL_WORK) is None  # big, idle: BLAS left alone
    assert threads.auto_threads(work, on_host=False) is None
    for asked in (None, 1, 4, "all"):
        assert threads.resolve(asked, work=work, on_host=False) is None
    assert [threads.resolve(v, work=work) for v in (None, "auto", 3, 0, "all")] == [1, 1, 3, None, None]
    monkeypatch.setenv("MINIGCNC_BLAS_THREADS", "all")
    assert threads.resolve(work=work) is None and threads.resolve(2, work=work) == 2  # the keyword wins
    monkeypatch.setenv("MINIGCNC_BLAS_THREADS", "3")
    assert threads.resolve(work=work) == 3 and threads.resolve(work=work, on_host=False) is None
    monkeypatch.setenv("MINIGCNC_BLAS_THREADS", "many")
    with pytest.raises(ValueError, match="MINIGCNC_BLAS_THREADS must be None or 'auto'.*got 'many'"):
        threads.resolve(work=work)
    with pytest.raises(TypeError, match="blas_threads must be .* got float 1.5"):
        threads.resolve(1.5)


def test_blas_limit_limits_never_raises_a_users_limit_and_leaves_a_device_alone():
    from threadpoolctl import threadpool_limits

    from minigcnc import threads

    before = blas_threads_now()
    with threads.blas_limit(work=0) as n:
        assert n == 1 and blas_threads_now() == 1
    assert blas_threads_now() == before
    with threads.blas_limit(1, on_host=False) as n:
        assert n is None and blas_threads_now() == before
    with threadpool_limits(1, user_api="blas"), threads.blas_limit(2):  # the user's own limit stays
        assert blas_threads_now() == 1


def test_fit_trains_under_the_thread_limit_and_its_float64_results_do_not_depend_on_it(rng, monkeypatch):
    """300-image MLP 784-256-256-64 (where multi-threaded BLAS does split the products): same numbers to 1e-12."""
    from threadpoolctl import threadpool_limits

    from minigcnc import threads

    monkeypatch.setattr(threads, "idle_cores", lambda window=threads.LOAD_WINDOW: 1)  # as beside a busy process
    model = models.mlp([784, 256, 256, 64], 10)
    X, y = rng.standard_normal((300, 784)), rng.integers(0, 10, 300)
    seen = {}

    def run(blas_threads):
        def record(step, p):
            seen.setdefault(blas_threads, blas_threads_now())

        return fit(model, model.init(0), X, y, lr=0.01, batch_size=64, steps=10, momentum=0.9, on_eval=record,
                   blas_threads=blas_threads)

    alone, one, auto = run("all"), run(1), run(None)
    assert seen == {"all": blas_threads_now(), 1: 1, None: 1}
    for a, b, c in zip(tree_leaves(alone.params), tree_leaves(one.params), tree_leaves(auto.params)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        assert np.array_equal(b, c)  # the automatic rule is one thread here (no idle core beside this one)
    np.testing.assert_allclose(alone.losses, one.losses, rtol=1e-12)
    with threadpool_limits(1, user_api="blas"):
        seen.clear()
        run(4)
    assert seen == {4: 1}  # a limit already in place is never raised


def test_fit_on_a_device_leaves_blas_alone(rng):
    import strict_device
    from minigcnc import backend

    strict_device.register()
    model = models.mlp([D, 8, 5], K)
    params = model.init(0, dtype="float64", backend="strict")
    seen = []

    def record(step, p):
        seen.append(blas_threads_now())

    fit(model, params, rng.standard_normal((N, D)), rng.integers(0, K, N), blas_threads=1, on_eval=record)
    assert seen == [blas_threads_now()] * 2 and backend.get_backend() == "numpy"


# ---- library edges (issue 33 item 8) -------------------------------------------------------------------------
def test_complex_inputs_are_refused_not_cast(problem):
    model, params, X, y = problem
    with pytest.raises(TypeError, match="X must be real; got dtype complex128"):
        fit(model, params, X + 1j, y)


def test_inputs_that_overflow_the_params_dtype_are_named_before_training(problem):
    model, _, X, y = problem
    X = X.copy()
    X[0, 0] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="X holds values too large for the params' dtype float32"):
        fit(model, model.init(0, dtype="float32"), X, y)


@pytest.mark.parametrize("factor", [float("nan"), -1.0, float("inf")])
def test_a_nan_negative_or_infinite_divergence_factor_is_refused(problem, factor):
    model, params, X, y = problem
    with pytest.raises(ValueError, match="divergence_factor must be a finite number >= 0"):
        fit(model, params, X, y, divergence_factor=factor)
