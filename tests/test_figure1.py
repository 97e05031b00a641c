"""Figure 1, its MNIST/convnet appendix and the GC-regularization figure at tiny scale: outputs, claim tables,
run status, cache reuse."""
import json

import numpy as np
import pytest

from minigcnc import figure1, figure_gc_regularization, figure_mnist
from minigcnc.experiments import claims as C
from minigcnc.experiments import stats as S
from minigcnc.experiments.driver import METRICS, sweep_claims
from minigcnc.experiments.plotting import draw_sweep_row

FIGURES = {"figure1": figure1, "figure_gc_regularization": figure_gc_regularization, "figure_mnist": figure_mnist}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Both figures drawn once at tiny scale into one folder (they share its cache)."""
    folder = tmp_path_factory.mktemp("figures")
    results = {name: mod.main(["--scale", "tiny", "--out", str(folder), "--cache", str(folder / "cache"), "--jobs", "1",
                               "--quiet"])
               for name, mod in FIGURES.items()}
    return folder, results


def _json(folder, name):
    with open(folder / f"{name}_tiny.json") as f:
        return json.load(f)


@pytest.mark.parametrize("name", list(FIGURES))
def test_each_figure_writes_its_png_and_json(out, name):
    folder, _ = out
    assert (folder / f"{name}_tiny.png").stat().st_size > 10_000
    assert _json(folder, name)["figure"] == name


@pytest.mark.parametrize("name", ["figure1", "figure_mnist"])
def test_figure1_claim_table_has_four_rank_correlations_per_sweep(out, name):
    claims = _json(out[0], name)["claims"]
    stats = [c["statistic"] for c in claims]
    for field in ("lr", "batch_size", "l2"):  # the swept values the units; each seed alone beside, a description
        for stat in (f"spearman({field}, gc)", f"spearman({field}, nc_train)"):
            assert stat + " over config means" in stats and "per-seed " + stat in stats
    for stat in ("spearman(gc, nc_train)", "spearman(gc, gcol)"):
        assert stats.count(stat + " over config means") == 3 and stats.count("per-seed " + stat) == 3
    if name == "figure1":  # GCol beside GC, and the bound across runs
        assert stats.count("spearman(gcol, nc_train) over config means") == 3
        across = {f"spearman({m}, ncc_test_error) over config means" for m in ("bound_gc", "gcol", "gc", "nc_test")}
        assert across | {"partial spearman(bound_gc, ncc_test_error | nc_test)"} <= set(stats)
        for c in claims:  # configs the units: one value per distinct config, each seed's Spearman beside
            if c["statistic"] in across:
                assert len(c["per_unit"]) == 7 and "configs the units" in c["detail"]
        assert (out[0] / "figure1_across_runs_tiny.png").stat().st_size > 10_000
    expected = {c["statistic"].replace(" over config means", ""): c["expected"] for c in claims}
    assert expected["spearman(lr, gc)"] == "negative"
    assert expected["spearman(batch_size, gc)"] == "positive"
    assert expected["spearman(l2, gc)"] == "negative"
    assert expected["spearman(gc, nc_train)"] == "positive"
    for c in claims:
        assert c["n_seeds"] == 2 and len(c["per_seed"]) == 2
        if c["kind"] == "claim":  # every verdict is the rule applied to the stored q-value
            used = [v for v in c["per_seed"] if v is not None]
            sign = 1 if c["expected"] == "positive" else -1
            assert c["verdict"] == S.verdict_of(c["value"], used, c["q_value"], sign, c["alpha"], c["ci"])
    # derived: only what the counted claims force, computed (claims.mark_forced; its own tests in test_claims)
    for c in claims:
        if c["kind"] == "derived":
            assert c["derived_from"].startswith(("forced", "a copy"))


def test_gc_regularization_claim_table_correlates_strength_with_gc_and_gc_with_nc(out):
    claims = _json(out[0], "figure_gc_regularization")["claims"]
    expected = {c["statistic"].replace(" over config means", "").replace("per-seed ", ""): c["expected"]
                for c in claims}
    assert expected == {"spearman(gc_reg, gc)": "negative", "spearman(gc_reg, nc_train)": "negative",
                        "spearman(gc, nc_train)": "positive", "spearman(gc, gcol)": "positive",
                        "spearman(gcol, nc_train)": "positive"}


def test_a_stronger_gc_penalty_lowers_gc_in_every_seed_even_at_tiny_scale(out):
    claims = _json(out[0], "figure_gc_regularization")["claims"]
    claim = next(c for c in claims if c["statistic"] == "spearman(gc_reg, gc) over config means")
    assert claim["per_seed"] == [-1.0, -1.0] and claim["value"] == -1.0
    # three strengths allow 3! orderings of their means: the best two-sided p is 2/6 > 0.05, so the claim cannot
    # hold at this scale, however clear the effect, and it is a description (and so is each seed alone: 2/36)
    assert claim["p_value"] == pytest.approx(2 / 6) and claim["kind"] == "description"
    alone = next(c for c in claims if c["statistic"] == "per-seed spearman(gc_reg, gc)")
    assert alone["p_value"] == pytest.approx(2 / 36) and alone["kind"] == "description"


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_run_finished_or_is_recorded_as_diverged(out, name):
    runs = _json(out[0], name)["runs"]
    rows = [r for rs in runs.values() for r in rs] if isinstance(runs, dict) else runs
    assert rows
    for r in rows:
        assert r["status"] in ("finished", "diverged")
        assert r["steps"][0] == 0
        if r["status"] == "finished":
            assert r["steps"][-1] == FIGURES[name].scale_setup("tiny")[0].steps


def test_figure1_trains_the_shared_base_run_once(out):
    cfgs = figure1.configs("tiny")
    base = figure1.scale_setup("tiny")[0]
    assert sum(c == base.replace(seed=0) for c in cfgs) == 3  # in all three sweeps ...
    assert len({c.key() for c in cfgs}) == len(cfgs) - 2 * 2  # ... but one key per seed


def test_gc_regularization_at_strength_zero_is_the_plain_run(out):
    cfgs = figure_gc_regularization.configs("tiny")
    plain = figure1.scale_setup("tiny")[0]
    assert {c.key() for c in cfgs if c.gc_reg == 0} == {plain.replace(seed=s).key() for s in (0, 1)}


@pytest.mark.parametrize("name", list(FIGURES))
def test_a_second_call_reuses_the_cache_without_training(out, name, monkeypatch):
    folder, first = out

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr("minigcnc.train.fit", no_training)
    again = FIGURES[name].main(["--scale", "tiny", "--out", str(folder), "--cache", str(folder / "cache"), "--jobs",
                                "1", "--quiet"])
    assert [c.value for c in again["claims"]] == pytest.approx([c.value for c in first[name]["claims"]], nan_ok=True)


def _fake_history(seed, gc, nc, status="finished", steps=(0, 100, 200)):
    evals = [{"step": s, "gc": gc * (1 + i), "gcol": gc / 100 * (1 + i), "nc_train": nc * (1 + i)}
             for i, s in enumerate(steps)]
    return {"config": {"seed": seed}, "key": f"k{seed}{gc}", "status": status, "message": "", "seconds": 0.0,
            "evals": evals}


def test_a_diverged_run_is_drawn_with_an_x_and_drops_out_of_its_seeds_correlation():
    import matplotlib.pyplot as plt

    values = [0.1, 0.2, 0.4]
    hist = [[_fake_history(s, 30, 0.3), _fake_history(s, 20, 0.2),
             _fake_history(s, 10, 0.1, status="diverged" if s == 1 else "finished", steps=(0, 100))]
            for s in (0, 1, 2)]
    claims = sweep_claims("figure1", "learning rate", values, hist, -1, "lr")
    # the value 0.4 is averaged over the two seeds that finished it; seed 1 keeps two finished runs, too few for
    # a rank correlation of its own: it drops out of the per-seed numbers
    counted, alone = claims[0], claims[1]
    assert counted.per_unit == pytest.approx([90.0, 60.0, 20.0])  # the final GC, mean over the seeds that finished
    assert counted.per_seed[0] == pytest.approx(-1.0) and counted.per_seed[2] == pytest.approx(-1.0)
    assert np.isnan(counted.per_seed[1]) and np.isnan(alone.per_seed[1]) and alone.n_seeds == 2
    # 3 values: 3! orderings, the best p is 2/6 (a description); each seed alone, 3 x 3 orderings, 2/36
    assert counted.p_value == pytest.approx(2 / 6) and alone.p_value == pytest.approx(2 / 36)
    assert {c.kind for c in C.mark_forced(claims)} == {"description"}
    fig, axes = plt.subplots(1, 3)
    draw_sweep_row(axes, values, hist, "learning rate", METRICS)
    xs = [ln for ln in axes[0].get_lines() if ln.get_marker() == "x"]
    assert len(xs) == 1 and list(xs[0].get_xdata()) == [100]
    plt.close(fig)


def test_a_sweep_picture_names_the_x_of_a_diverged_run_only_when_a_run_diverged():
    import matplotlib.pyplot as plt

    from minigcnc.experiments.driver import draw_sweeps

    values = [0.1, 0.2]
    for diverged in (False, True):
        hist = {"lr": [[_fake_history(s, 30, 0.3), _fake_history(s, 20, 0.2, status="diverged" if diverged and s else
                                                                 "finished")] for s in (0, 1)]}
        fig = draw_sweeps({"lr": values}, hist, "t")
        title = fig._suptitle.get_text()
        assert title.startswith("t: lines = mean over seeds, bands = min-max over seeds, bars at the right = min-max")
        assert ("x = a diverged run" in title) == diverged
        plt.close(fig)


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_sweep_figure_draws_the_same_min_max_bands(out, name, monkeypatch):
    """The convnet appendix included: one convention for the seeds' spread across the figures."""
    import minigcnc.experiments.driver as driver

    folder, _ = out
    mod, titles = FIGURES[name], []

    def spy(*args, **kwargs):
        fig = driver.draw_sweeps(*args, **kwargs)
        titles.append(fig._suptitle.get_text())
        return fig

    monkeypatch.setattr(mod, "draw_sweeps", spy)
    mod.main(["--scale", "tiny", "--out", str(folder), "--cache", str(folder / "cache"), "--jobs", "1", "--quiet"])
    assert titles and all("bands = min-max over seeds" in t and "standard error" not in t for t in titles)


def test_the_mnist_appendix_trains_a_convnet_and_names_vgg11_on_mnist_at_paper_scale(out):
    data = _json(out[0], "figure_mnist")
    assert data["base"]["model"] == "convnet" and data["base"]["dataset"] == "digits"
    assert all(c["model"] == "convnet" for c in data["configs"])
    base, grid, seeds = figure_mnist.scale_setup("paper")
    assert (base.model, base.dataset, base.backend) == ("vgg11", "mnist", "cupy")
    assert grid["l2"] == (0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4) and len(seeds) == 3
    laptop, _, _ = figure_mnist.scale_setup("laptop")
    assert (laptop.model, laptop.dataset) == ("convnet", "mnist5k")
    # the Hessian trace of every convnet run at its first and last evaluation (tiny and laptop scale; not on the GPU)
    assert laptop.extras == ("flatness",) and base.extras == ()
    histories = out[1]["figure_mnist"]["histories"]
    assert histories and all(np.isfinite(e["hessian_trace"]) and e["hessian_trace"] > 0 and "warnings" not in e
                             for h in histories for e in (h["evals"][0], h["evals"][-1]))
    assert not any("hessian_trace" in e for h in histories for e in h["evals"][1:-1])
