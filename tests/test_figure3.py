"""Figure 3 end to end at tiny scale (outputs, claims, checks, the terminal's final values, cache reuse), and its
claims on hand-made histories: configs as units with the shared trend removed, a control that must track, the
Poincare slack that can fail, and the power of the design."""
import json

import numpy as np
import pytest

from minigcnc import figure3
from minigcnc.experiments import claims as C


def test_figure3_tiny_writes_png_json_and_claims_then_reuses_the_cache(tmp_path, monkeypatch, capsys):
    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet", "--cache",
                        str(tmp_path / "cache")])
    png, js = tmp_path / "figure3_tiny.png", tmp_path / "figure3_tiny.json"
    assert png.stat().st_size > 10_000
    doc = json.loads(js.read_text())
    d = figure3.design("tiny")
    assert len(doc["runs"]["digits"]) == sum(len(s) for _, s in d["digits"]) == 5 * 2  # 5 distinct configs x 2 seeds
    assert len(doc["runs"]["gaussians"]) == 3 * 2
    statements = [c["statement"] for c in doc["claims"]]
    for _, label in figure3.TRACKED:
        assert any(s.startswith(f"the {label} tracks") for s in statements)
    kinds = {c["statement"]: c["kind"] for c in doc["claims"]}
    assert kinds[next(s for s in statements if s.startswith("positive control"))] == "check"
    assert kinds[next(s for s in statements if s.startswith("yardstick"))] == "description"
    for c in doc["claims"]:  # the rho-free and sharp bounds really bound the class-averaged error
        if c["by_construction"]:
            assert c["value"] == 1.0, c["statement"]
    assert set(doc["final_means"]) == {"digits", "gaussians"}
    assert set(doc["final_means"]["digits"]) == {m for m, _, _ in figure3.FINALS}
    assert set(doc["power"]) == {"trend removed", "trend kept"}
    assert set(doc["power"]["trend removed"]) == {"power", "false_holds", "control_snr", "draws"}
    text = capsys.readouterr().out
    assert "PLUMBING CHECK" in text and "Final values, mean over runs" in text and "Power of the tracking test" in text
    assert "beside the positive control" in text and "the control)" in text
    for _, label, _ in figure3.FINALS:
        assert label in text
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("figure3 retrained a cached run"))
    again = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet", "--cache",
                          str(tmp_path / "cache")])
    assert [h["evals"] for h in again["histories"]] == [h["evals"] for h in out["histories"]]


def test_the_figure3_configs_are_figure1s_runs():
    """Figure 3's digits runs are Figure 1's lr and batch-size runs (one cache key each), so reproduce trains
    them once for both figures."""
    from minigcnc import figure1
    from minigcnc.experiments.cache import run_key

    f1 = {run_key(c) for c in figure1.configs("laptop", seeds=3)}
    d = figure3.design("laptop")
    digits = [c for _, per_seed in d["digits"] for c in per_seed]
    assert len(digits) == 9 * 3 and len({run_key(c) for c in digits}) == 27
    assert {run_key(c) for c in digits} <= f1
    assert all(c.dataset == "gaussians" for _, per_seed in d["gaussians"] for c in per_seed)


STEPS = list(range(0, 250 * 9, 250))


def _history(seed, cfg, curves):
    evals = [{"step": s, **{k: v[i] for k, v in curves.items()}} for i, s in enumerate(STEPS)]
    return {"config": {"seed": seed, "lr": 0.1 * (cfg + 1), "batch_size": 128}, "status": "finished", "message": "",
            "evals": evals, "key": f"k{cfg}-{seed}"}


def _runs(linked, rng, n_cfg=9, n_seeds=3, margin=2.0, noise=0.002):
    """[[history per seed] per config]: errors that fall at config-specific speeds; bounds (and the control)
    follow their own config's error when ``linked``, an unrelated config speed otherwise."""
    t = np.arange(len(STEPS)) / len(STEPS)
    taus = np.exp(rng.uniform(np.log(0.05), np.log(0.6), n_cfg))
    other = rng.permutation(taus) if not linked else taus
    out = []
    for c in range(n_cfg):
        per_seed = []
        for s in range(n_seeds):
            err = 0.1 + 0.5 * np.exp(-t / taus[c]) + noise * rng.standard_normal(len(t))
            bound = 10 * (0.1 + 0.5 * np.exp(-t / other[c])) + 10 * noise * rng.standard_normal(len(t))
            acc = 1 - (0.1 + 0.5 * np.exp(-t / taus[c])) - noise * rng.standard_normal(len(t))
            curves = {figure3.ERROR: list(err), "test_acc": list(acc), "nc_test": list(bound / 10)}
            for m, _, _ in figure3.FINALS[1:]:
                curves[m] = list(bound)
            curves["bound_sharp"] = list(np.minimum(bound / 20, 1.0))
            curves["poincare_margin"] = [[margin, 3.0]] * len(t)
            curves["weighted_poincare_margin"] = [[1.5, 2.0]] * len(t)
            per_seed.append(_history(s, c, curves))
        out.append(per_seed)
    return out


def test_tracking_is_counted_by_config_and_the_shared_trend_is_not_evidence():
    linked = C.judge(figure3.make_claims(_runs(True, np.random.default_rng(0))))
    tracking = [c for c in linked if " tracks the NCC test error over training" in c.statement]
    assert len(tracking) == 4 and all(c.kind == "claim" and c.verdict == "holds" for c in tracking)
    control = next(c for c in linked if c.statement.startswith("positive control"))
    assert control.kind == "check" and control.verdict == "holds"
    unlinked = C.judge(figure3.make_claims(_runs(False, np.random.default_rng(1))))
    tracking = [c for c in unlinked if " tracks the NCC test error over training" in c.statement]
    assert all(c.verdict != "holds" for c in tracking)  # the bound follows another config's error
    # every curve falls, so within a run the bound "follows" the error anyway: the trend is not the test
    h = _runs(False, np.random.default_rng(1))[0][0]
    a, b = figure3.curve(h, "bound_gc"), figure3.curve(h, figure3.ERROR)
    assert np.corrcoef(a, b)[0, 1] > 0.8


def test_removing_the_shared_trend_keeps_the_config_pairing_exact():
    rng = np.random.default_rng(3)
    cs = [[rng.standard_normal(6) for _ in range(2)] for _ in range(4)]
    centred = figure3.without_shared_trend(cs)
    perm = [2, 0, 3, 1]
    again = figure3.without_shared_trend([cs[p] for p in perm])
    for i, p in enumerate(perm):
        for s in range(2):
            np.testing.assert_allclose(again[i][s], centred[p][s])
    for s in range(2):
        np.testing.assert_allclose(sum(centred[c][s] for c in range(4)), 0, atol=1e-12)


def test_the_poincare_slack_check_fails_when_a_class_slack_is_below_one():
    ok = figure3.slack_check(figure3.flat_runs(_runs(True, np.random.default_rng(0), margin=1.5)), "digits",
                             "poincare_margin", "Poincare step", "rho_c GC_c / Var_c")
    assert ok.verdict == "holds" and ok.value == pytest.approx(1.5) and ok.kind == "check"
    assert "1 = tight, larger = looser" in ok.statement and "median slack" in ok.detail
    bad = figure3.slack_check(figure3.flat_runs(_runs(True, np.random.default_rng(0), margin=0.01)), "digits",
                              "poincare_margin", "Poincare step", "rho_c GC_c / Var_c")
    assert bad.verdict == "fails" and bad.value == pytest.approx(0.01)


def test_print_finals_says_which_bounds_are_vacuous_and_why(capsys):
    means = {m: 0.5 for m, _, _ in figure3.FINALS}
    means.update(bound_gc=900.0, bound_markov=12.0, bound_gc_capped=1.0)
    figure3.print_finals({"digits": means}, {"trend removed": (0.9, 0.03, 1.2), "trend kept": (0.1, 0.02, 1.2)})
    text = capsys.readouterr().out
    assert "    GC bound (paper's form): the isotropic Poincare step, Markov and the union\n" in text
    assert "    CDNV (Markov) bound: Markov" in text and "    GC bound, capped: the isotropic" in text
    assert "  Non-vacuous: sharp moment bound (SDP);" in text
    assert "holds in 90% of draws, independent curves in 3%; with the shared trend kept (the variant) 10% and 2%" in text


def test_the_design_power_sees_a_tracker_and_not_independent_curves():
    power, null, snr = figure3.design_power(_runs(True, np.random.default_rng(0)), n_draws=40)
    assert power >= 0.8 and null <= 0.1 and snr > 1
