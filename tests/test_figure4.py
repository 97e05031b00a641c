"""Figure 4: source GC, target NC and few-shot accuracy across lr / batch / L2 sweeps, and the data behind it."""
import json

import numpy as np
import pytest

from minigcnc import data as data_mod
from minigcnc import figure4
from minigcnc.experiments import claims as C
from minigcnc.experiments import stats as S
from minigcnc.experiments import prepare
from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.measure import measure


def test_tiny_figure4_writes_both_figures_the_json_and_the_claim_table_and_reuses_its_cache(tmp_path, capsys):
    out = figure4.main(["--scale", "tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--jobs", "1",
                        "--quiet"])
    png, js = tmp_path / "figure4_tiny.png", tmp_path / "figure4_tiny.json"
    scatter = tmp_path / "figure4_scatter_tiny.png"
    assert out["png"] == str(png) and out["scatter"] == str(scatter) and out["json"] == str(js)
    for path in (png, scatter, js):
        assert path.stat().st_size > 0
    table = capsys.readouterr().out
    for statistic in ("spearman(source_gc, target_nc)", "spearman(source_gc, fewshot5)",
                      "spearman(target_nc, fewshot5)", "spearman(lr, source_gc)"):
        assert statistic in table
    assert "Sensitivity (figure4.ANALYSIS)" in table and "raw probe" in table and "not computed" not in table
    summary = json.loads(js.read_text())
    claims = summary["claims"]
    # per sweep: GC moves, GC and GCol vs target NC, GC vs 5-shot NCC and probe accuracy, each over the value
    # means and, beside it, each seed alone; over all runs: GC and GCol vs target NC, and GC, GCol, target NC vs
    # each of 5-shot NCC, 5-shot probe, 1-shot NCC and (rotated classes) 5-shot NCC accuracy on episodes of 5
    # different digits
    assert len(claims) == 3 * 5 * 2 + 2 + 3 * 4 and all(c["n_seeds"] >= 3 for c in claims)
    per_sweep = [c for c in claims if not c["statement"].startswith("all configs")]
    assert [c["statistic"].startswith("per-seed ") for c in per_sweep] == [False, True] * 15
    # three values per sweep at tiny scale: no ordering of 3 value means reaches 0.05, so none is counted
    assert {c["kind"] for c in per_sweep} == {"description"} and all(len(c["per_unit"]) == 3 for c in per_sweep[::2])
    expected = {c["statistic"]: c["expected"] for c in claims}
    for statistic in ("spearman(source_gc, fewshot5_logreg) over config means",
                      "spearman(target_nc, fewshot1) over config means",
                      "spearman(source_gcol, fewshot5_logreg) over config means",
                      "spearman(source_gc, fewshot5_distinct) over config means",
                      "spearman(target_nc, fewshot5_distinct) over config means"):  # probe, 1-shot, distinct digits
        assert expected[statistic] == "negative"
    assert expected["spearman(source_gc, target_nc) over config means"] == "positive"
    assert expected["per-seed spearman(source_gc, fewshot5)"] == "negative"
    across = [c for c in claims if c["statement"].startswith("all configs")]
    assert len(across) == 2 + 3 * 4 and all(len(c["per_unit"]) == 7 for c in across)  # 7 distinct configs
    for c in claims:  # every verdict is the rule applied to the stored q-value (BH over the figure's claims)
        if c["kind"] != "claim":
            continue
        sign = 1 if c["expected"] == "positive" else -1
        used = [v for v in c["per_seed"] if v is not None]
        assert c["verdict"] == S.verdict_of(c["value"], used, c["q_value"], sign, c["alpha"], c["ci"])
        assert c["q_value"] is None or c["q_value"] >= c["p_value"]
        assert c["verdict_by"] == S.verdict_of(c["value"], used, c["q_by"], sign, c["alpha"], c["ci"])
    # the sensitivity table: the pre-specified analysis, distinct-digit episodes and the 18-class pool (same
    # networks: the source GC of every 18-class run is the 20-class run's)
    sens = summary["sensitivity"]
    assert sens["variants"] == ["pre-specified", "distinct episodes", "raw probe", "18 classes", "18 cl., distinct",
                                "18 cl., raw probe"]
    assert [r["statement"] for r in sens["rows"]] == [c["statement"] for c in claims if c["kind"] == "claim"]
    for r in sens["rows"]:
        assert (r["robust"] == "robust") == all(v == "holds" for v in r["verdicts"].values())
    # the raw-feature probe: the same statements, every probe claim reading fewshot5_logreg_raw, the others as is
    raw = sens["claims"]["raw probe"]
    assert [c["statement"] for c in raw] == [c["statement"] for c in claims]
    for a, b in zip(claims, raw):
        if "fewshot5_logreg" in a["statistic"]:
            assert b["statistic"] == a["statistic"].replace("fewshot5_logreg", "fewshot5_logreg_raw")
        else:
            assert b["statistic"] == a["statistic"] and b["value"] == a["value"]
    assert any(b["value"] != a["value"] for a, b in zip(claims, raw) if "fewshot5_logreg" in a["statistic"])
    assert "raw-feature probe" in dict((r["choice"], r["history"]) for r in summary["analysis"])["probe features"]
    v18 = sens["claims"]["18 classes"]
    assert [c["per_seed"] for c in v18[:1]] == [claims[0]["per_seed"]]  # lr -> source GC: the same networks
    hist = {h["key"]: h for h in out["histories"]}.values()  # (the shared baseline is listed once per sweep)
    by_key = {}
    for h in hist:
        cfg = {k: v for k, v in h["config"].items() if k != "target_classes"}
        by_key.setdefault(repr(sorted(cfg.items())), []).append(h)
    pairs = [hs for hs in by_key.values() if len(hs) == 2]
    assert len(pairs) == 21 and {len(hs[1]["config"]["target_classes"]) for hs in pairs} == {18}
    for a, b in pairs:  # trained alike: the same source GC at every evaluation
        assert [e["gc"] for e in a["evals"]] == [e["gc"] for e in b["evals"]]
    assert [r["choice"] for r in summary["analysis"]] == [row[0] for row in figure4.ANALYSIS]
    run = summary["sweeps"]["lr"][0]
    assert {"gc", "target_nc", "fewshot5", "fewshot5_ci95", "fewshot1", "fewshot5_logreg", "fewshot1_logreg",
            "fewshot5_distinct", "fewshot5_distinct_ci95"} <= set(run["final"])
    assert summary["probe_features"] == "L2-normalized"
    assert any("probe on L2-normalized features" in c["statement"] for c in claims)
    assert 0 < run["final"]["fewshot5_ci95"] < 0.2

    files = sorted((tmp_path / "cache" / "runs").glob("*.json"))
    assert len(files) == 2 * 3 * (3 + 2 + 2)  # the baseline runs once per seed; 20 and 18 target classes
    stamps = [f.stat().st_mtime_ns for f in files]
    again = figure4.main(["--scale", "tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--jobs", "1",
                          "--quiet"])
    assert [f.stat().st_mtime_ns for f in files] == stamps  # nothing was recomputed
    assert [c.value for c in again["claims"]] == pytest.approx([c.value for c in out["claims"]], nan_ok=True)


def test_laptop_default_is_20_rotated_source_classes_and_20_rotated_target_classes():
    base, grid, seeds = figure4.scale_setup("laptop")
    assert base.dataset == "mnist5k_rot" and base.model == "mlp" and base.dtype == "float32"
    assert base.classes == tuple(range(20))  # digits 0-4 at 4 rotations
    assert base.target_classes == tuple(range(20, 40))  # digits 5-9 at 4 rotations: no near-duplicate left out
    assert "= 20 target" in figure4._title("laptop", "rotations", "mnist5k")
    assert base.fewshot_episodes == 600 and base.fewshot_probe  # the linear probe beside NCC, on by default
    assert not figure4.scale_setup("laptop", probe=False)[0].fewshot_probe
    assert grid["lr"] == sorted(grid["lr"]) and grid["batch_size"] == sorted(grid["batch_size"], reverse=True)
    assert grid["l2"] == sorted(grid["l2"])
    # every row starts from or passes through the same baseline run
    assert base.lr in grid["lr"] and base.batch_size in grid["batch_size"] and base.l2 in grid["l2"]
    n_values = sum(len(v) for v in grid.values())
    assert len({c.key() for c in figure4.configs("laptop", sensitivity=False)}) == len(seeds) * (n_values - 2)
    # with the sensitivity runs (the default): the same networks evaluated on the 18 classes of 12722d4 too
    both = {c.key(): c for c in figure4.configs("laptop")}
    assert len(both) == 2 * len(seeds) * (n_values - 2)
    assert {len(c.target_classes) for c in both.values()} == {20, 18}
    dropped = set(range(20, 40)) - set(figure4.scale_setup("laptop", pool="hand18")[0].target_classes)
    assert dropped == {4 * 6 + 2, 4 * 9 + 2}  # a 6 and a 9 turned 180 degrees


def test_swapped_split_exchanges_the_source_and_target_digits_and_is_registered():
    from minigcnc.registry import FIGURES, figure_configs

    base, grid, seeds = figure4.scale_setup("laptop", split="swapped")
    assert base.dataset == "mnist5k_rot" and base.classes == tuple(range(20, 40))  # digits 5-9 at 4 rotations
    assert base.target_classes == tuple(range(20))  # digits 0-4 at 4 rotations: no near-duplicate left out
    assert figure4.near_duplicates(digits=figure4.SOURCE_DIGITS) == figure4.NEAR_DUPLICATES_SWAPPED == ()
    cfgs = figure_configs("figure4_swapped", "laptop")
    assert FIGURES["figure4_swapped"][:2] == ("figure4", ["--split", "swapped"])
    assert {c.classes for c in cfgs} == {tuple(range(20, 40))} and len({c.key() for c in cfgs}) == 5 * 11
    assert "digits 5-9 x 4 rotations = 20 source classes -> digits 0-4" in figure4._title("laptop", "swapped",
                                                                                           "mnist5k")
    with pytest.raises(ValueError, match="swapped"):
        figure4.classes_of("laptop", "swapped", "fashion_mnist")
    with pytest.raises(ValueError, match="rotation split only"):
        figure4.scale_setup("laptop", split="swapped", pool="hand18")


def test_tiny_swapped_figure_writes_its_own_outputs(tmp_path):
    out = figure4.main(["--scale", "tiny", "--split", "swapped", "--out", str(tmp_path), "--cache",
                        str(tmp_path / "cache"), "--jobs", "1", "--quiet"])
    assert out["png"].endswith("figure4_swapped_tiny.png") and out["scatter"].endswith("figure4_scatter_swapped_tiny.png")
    doc = json.loads((tmp_path / "figure4_swapped_tiny.json").read_text())
    assert doc["split"] == "swapped" and doc["source_digits"] == [5, 6, 7, 8, 9] and doc["target_digits"] == [0, 1, 2, 3, 4]
    assert doc["sensitivity"]["variants"] == ["pre-specified", "distinct episodes", "raw probe"]  # no 18-class pool


def test_scatter_titles_print_the_tables_claims_never_a_pooled_coefficient():
    claims = [C.config_rank_claim("figure4", "all configs: lower source GC, lower target NC",
                                  [[1, 2], [2, 3], [3, 4], [4, 5]], [[1, 2], [2, 3], [3, 5], [4, 6]], +1, "source_gc",
                                  "target_nc")]
    assert figure4._claim_of(claims, "gc", "target_nc") is claims[0]
    assert figure4._claim_of(claims, "gc", "fewshot5") is None
    # a per-sweep claim over the same pair (the same statistic, over the sweep's values) is not the title's
    sweep = C.config_rank_claim("figure4", "learning rate: lower source GC, lower target NC", [[1, 2], [2, 3], [3, 4]],
                                [[3, 2], [2, 3], [1, 4]], +1, "source_gc", "target_nc")
    assert figure4._claim_of([sweep] + claims, "gc", "target_nc") is claims[0]


def test_the_claims_variants_name_what_they_read_and_refuse_an_unknown_choice():
    with pytest.raises(ValueError, match="probe_features must be one of"):
        figure4.make_claims({}, {}, probe_features="whitened")
    with pytest.raises(ValueError, match="episodes must be one of"):
        figure4.make_claims({}, {}, episodes="some")
    run = lambda keys: {"status": "finished", "evals": [dict.fromkeys(keys, 0.5)]}  # noqa: E731
    assert figure4.records_raw_probe({"lr": [[run(["fewshot5_logreg", "fewshot5_logreg_raw"])]]})
    assert not figure4.records_raw_probe({"lr": [[run(["fewshot5_logreg"])]]})  # a run from before acea088


def test_every_panel_draws_one_kind_of_spread_the_seeds_and_names_a_diverged_run_only_when_one_did():
    """Mean lines, min-max bands and the final values' min-max bars in every panel; the episodes' 95% intervals
    stay in the JSON (no second kind of bar beside the seeds' spread); the title's x only with a diverged run."""
    import matplotlib.pyplot as plt

    metrics = ("gc", "target_nc", "fewshot5", "fewshot5_ci95", "fewshot5_logreg", "fewshot5_logreg_ci95")

    def run(seed, v, status="finished"):
        return {"key": f"{seed}-{v}", "status": status, "config": {"seed": seed},
                "evals": [{"step": t, **{m: 0.5 + 0.01 * (seed + t) + v for m in metrics}} for t in (0, 10, 20)]}

    grid = {"lr": (0.1, 0.2), "batch_size": (64, 32), "l2": (0.0, 0.01)}
    for status, named in (("finished", False), ("diverged", True)):
        hist = {f: [[run(s, i, status if (f, s, i) == ("l2", 1, 1) else "finished") for i in range(2)]
                    for s in range(3)] for f in grid}
        fig = figure4.draw(grid, hist, "test")
        title = fig._suptitle.get_text()
        assert "bands = min-max over seeds" in title and ("diverged" in title) == named
        assert "episodes" not in title
        for ax in fig.axes:
            bars = [c for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer"]
            assert bars and all(b.lines[0].get_xdata()[0] > 20 for b in bars)  # the final bars only, right of the end
        plt.close(fig)


def test_near_duplicates_is_the_rule_recomputed_from_mnist5k_and_treats_the_four_6_9_pairs_alike():
    assert figure4.near_duplicates() == figure4.NEAR_DUPLICATES == ()
    conf = figure4.pair_confusability
    upright = {(a, b): conf(4 * a, 4 * b) for a in range(10) for b in range(a + 1, 10)}
    assert max(upright, key=upright.get) == (3, 5) and upright[3, 5] == pytest.approx(0.13)
    six_nine = [conf(24 + r, 36 + (r + 2) % 4) for r in range(4)]  # 6 at r*90 vs 9 at r*90 + 180 degrees
    assert six_nine == pytest.approx([0.075] * 4) and max(six_nine) < upright[3, 5]
    assert conf(28, 36) == upright[7, 9] == pytest.approx(0.105)  # 7 vs 9 upright: the most confusable target pair


def test_rotated_target_classes_know_their_digit_and_record_accuracy_on_episodes_of_distinct_digits():
    base = figure4.scale_setup("tiny", seeds=1)[0].replace(eval_per_class=2, fewshot_episodes=4)
    d = prepare.prepare_data(base)
    np.testing.assert_array_equal(d.target_groups, np.repeat([5, 6, 7, 8, 9], 4))
    model = prepare.build_model(base, d.n_classes, d.input_shape)
    rec = measure(model, model.init(0), d, base.fewshot_episodes, base.seed)
    assert 0 <= rec["fewshot5_distinct"] <= 1 and rec["fewshot5_distinct_ci95"] >= 0
    plain = figure4.scale_setup("tiny", split="digits", seeds=1)[0]
    assert prepare.prepare_data(plain).target_groups is None
    assert [m for m, _ in figure4.pooled_accuracy_metrics(True)] == ["fewshot5", "fewshot5_logreg", "fewshot1"]
    assert figure4.pooled_accuracy_metrics(False, distinct=True)[-1][0] == "fewshot5_distinct"


def test_digits_split_is_five_source_digits_and_the_five_others_as_target():
    base = figure4.configs("laptop", split="digits")[0]
    assert base.dataset == "mnist5k" and base.classes == (0, 1, 2, 3, 4) and base.target_classes == (5, 6, 7, 8, 9)
    assert base.eval_per_class * len(base.classes) == 500


def test_fashion_source_without_its_files_ends_as_figure1_does_for_the_same_cause(monkeypatch, tmp_path, capsys):
    """One exit code per cause: a missing dataset ends figure4 --source fashion_mnist exactly as it ends figure1
    --dataset fashion_mnist (status 1, the same message naming where it looked), before anything trains."""
    from minigcnc import figure1

    monkeypatch.setitem(data_mod.files.SYSTEM_DIRS, "fashion_mnist", (tmp_path / "nowhere",))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIGCNC_DATA", raising=False)
    ends = {}
    for name, argv in (("figure4", ["--source", "fashion_mnist"]), ("figure1", ["--dataset", "fashion_mnist"])):
        main = figure4.main if name == "figure4" else figure1.main
        with pytest.raises(SystemExit) as e:
            main(["--scale", "tiny", *argv, "--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--quiet"])
        ends[name] = str(e.value.code)
        assert ends[name].startswith(f"{name}: a dataset file is missing (give its folder with --data-root DIR).")
        assert str(tmp_path / "nowhere") in ends[name]
    assert ends["figure4"].replace("figure4", "figure1") == ends["figure1"]
    assert not list(tmp_path.glob("*.png")) and not list((tmp_path / "cache").glob("runs/*.json"))


def test_fashion_source_transfers_to_all_mnist_digits():
    base = figure4.configs("laptop", source="fashion_mnist", split="digits")[0]
    assert base.dataset == "fashion_mnist" and base.target_dataset == "mnist5k"
    assert base.classes == () and base.target_classes == ()


def test_target_dataset_gives_every_image_of_another_dataset_standardized_with_the_source_statistics():
    cfg = RunConfig(dataset="digits", classes=(0, 1, 2), target_dataset="digits_rot", target_classes=(4, 5))
    d = prepare.prepare_data(cfg)
    X, y = data_mod.load("digits", "train")
    Xt, yt = data_mod.load("digits_rot", "train")
    Xs, _ = data_mod.class_split(X, y, [0, 1, 2])
    mean, std = Xs.mean(), Xs.std()
    n_target = int(np.sum(np.isin(yt, [4, 5]))) + int(np.sum(np.isin(data_mod.load("digits_rot", "test")[1], [4, 5])))
    assert d.n_classes == 3 and d.n_target_classes == 2 and len(d.y_target) == n_target
    first = Xt[yt == 4][0]
    np.testing.assert_allclose(np.asarray(d.X_target)[0], (first - mean) / std, rtol=1e-4, atol=1e-4)


def test_paper_scale_pretrains_resnet18_on_the_64_cifarfs_train_classes_and_targets_the_20_test_classes(monkeypatch):
    base, grid, _ = figure4.scale_setup("paper", backend="numpy", data_root="/data")
    assert base.model == "resnet18" and base.dataset == base.target_dataset == "cifarfs" and base.data_root == "/data"
    assert grid["l2"] == [0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4]  # the paper's L2 grid

    def fake_load(name, split="train", root=None):  # CIFAR-FS class splits: 6 images per class, no archive needed
        k = {"train": 64, "test": 20}[split]
        assert name == "cifarfs" and root == "/tiny"
        return np.random.default_rng(k).random((6 * k, 3, 4, 4)).astype(np.float32), np.repeat(np.arange(k), 6)

    monkeypatch.setattr(prepare.data_mod, "load", fake_load)
    prepare.host_data.cache_clear()
    d = prepare.prepare_data(base.replace(data_root="/tiny", eval_per_class=1))
    assert d.n_classes == 64 and d.n_target_classes == 20
    assert np.array_equal(np.bincount(d.y_train), np.full(64, 5)) and np.array_equal(np.bincount(d.y_test), np.ones(64))
    assert np.array_equal(np.bincount(d.y_target), np.full(20, 6))


def test_the_probe_records_a_second_few_shot_accuracy_on_the_same_episodes():
    cfg = RunConfig(dataset="digits", hidden=(16,), classes=(0, 1, 2, 3, 4), target_classes=(5, 6, 7, 8, 9),
                         eval_per_class=3, fewshot_episodes=6, fewshot_probe=True)
    d = prepare.prepare_data(cfg)
    model = prepare.build_model(cfg, d.n_classes, d.input_shape)
    rec = measure(model, model.init(0), d, cfg.fewshot_episodes, cfg.seed, probe=True)
    for key in ("fewshot5", "fewshot1", "fewshot5_logreg", "fewshot1_logreg", "fewshot5_logreg_ci95"):
        assert 0 <= rec[key] <= 1
    assert "fewshot5_logreg" not in measure(model, model.init(0), d, cfg.fewshot_episodes, cfg.seed)
    # the new fields at their defaults leave the cache keys of older runs unchanged
    assert RunConfig().key() == RunConfig(fewshot_probe=False, target_dataset="").key()
