"""Figure 3 end to end at tiny scale (outputs, claims, checks, the terminal's final values, cache reuse), and
its claims and checks on hand-made histories: the seed-pairing test, the Poincare check that can fail."""
import json

import numpy as np
import pytest

from minigcnc import figure3
from minigcnc.experiments import claims as C


def test_figure3_tiny_writes_png_json_and_claims_then_reuses_the_cache(tmp_path, monkeypatch, capsys):
    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    png, js = tmp_path / "figure3_tiny.png", tmp_path / "figure3_tiny.json"
    assert png.stat().st_size > 10_000
    doc = json.loads(js.read_text())
    by_stat = {c["statistic"]: c for c in doc["claims"]}
    assert by_stat["matched - mismatched pearson(bound_gc, ncc_test_error_balanced)"]["kind"] == "description"  # 2 seeds
    assert by_stat["pearson(bound_gc, ncc_test_error_balanced)"]["kind"] == "description"
    assert by_stat["min rho_c GC_c / Var_c"]["kind"] == "check" and "Poincare" in by_stat["min rho_c GC_c / Var_c"]["statement"]
    # the rigorous rho-free bounds really bound the class-averaged error
    for metric in ("bound_markov", "bound_directional"):
        c = by_stat[f"fraction({metric} >= ncc_test_error_balanced)"]
        assert c["value"] == 1.0 and c["by_construction"]
    assert len(doc["runs"]) == 2 and all(r["status"] == "finished" for r in doc["runs"])
    assert set(doc["final_means"]) == {m for m, _ in figure3.FINALS}
    text = capsys.readouterr().out
    assert "PLUMBING CHECK" in text and "Final values, mean over seeds" in text and "vacuous" in text
    for metric, label in figure3.FINALS:
        assert label in text
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("figure3 retrained a cached run"))
    again = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert [h["evals"] for h in again["histories"]] == [h["evals"] for h in out["histories"]]


def _history(seed, steps, **curves):
    """A finished run's history with the given curves (same length as ``steps``); per-class lists as given."""
    evals = [{"step": s, **{k: (v[i] if not isinstance(v[i], list) else v[i]) for k, v in curves.items()}}
             for i, s in enumerate(steps)]
    return {"config": {"seed": seed}, "status": "finished", "message": "", "evals": evals, "key": f"k{seed}"}


def _runs(linked, rng, k=5, n=21, margin=2.0):
    t = np.arange(n) / n
    out = []
    for s in range(k):
        tau = np.exp(rng.uniform(np.log(0.05), np.log(0.5)))
        tau_b = tau if linked else np.exp(rng.uniform(np.log(0.05), np.log(0.5)))
        err = 0.1 + 0.5 * np.exp(-t / tau) + 0.002 * rng.standard_normal(n)
        bound = 10 * (0.1 + 0.5 * np.exp(-t / tau_b)) + 0.02 * rng.standard_normal(n)
        curves = {"ncc_test_error_balanced": list(err), "gc": list(100 + 50 * t)}
        for m, *_ in figure3.BOUNDS:
            curves[m] = list(bound)
        curves["poincare_margin"] = [[margin, 3.0]] * n
        out.append(_history(s, list(range(0, 150 * n, 150)), **curves))
    return out


def test_figure3_counts_the_seed_pairing_claims_and_the_shared_trend_is_not_evidence():
    rng = np.random.default_rng(0)
    linked = C.judge(figure3.make_claims(_runs(True, rng)))
    tracking = [c for c in linked if c.statistic.startswith("matched - mismatched")]
    assert len(tracking) == 4 and all(c.kind == "claim" and c.verdict == "holds" for c in tracking)
    independent = C.judge(figure3.make_claims(_runs(False, np.random.default_rng(1))))
    tracking = [c for c in independent if c.statistic.startswith("matched - mismatched")]
    within = [c for c in independent if c.statistic == "pearson(bound_gc, ncc_test_error_balanced)"][0]
    assert within.kind == "description" and within.value > 0.8  # both fall: "tracks" within a run
    assert all(c.verdict != "holds" for c in tracking)  # but no seed's bound follows its own error
    assert C.verdict_counts(independent)["holds"] == 0


def test_the_poincare_check_fails_when_a_class_margin_is_below_one():
    ok = figure3.poincare_check(_runs(True, np.random.default_rng(0), margin=1.5))
    assert ok.verdict == "holds" and ok.value == pytest.approx(1.5) and ok.kind == "check"
    bad = figure3.poincare_check(_runs(True, np.random.default_rng(0), margin=0.01))
    assert bad.verdict == "fails" and bad.value == pytest.approx(0.01) and "Poincare" in bad.statement


def test_print_finals_says_which_bounds_are_vacuous(capsys):
    means = {m: 0.5 for m, _ in figure3.FINALS}
    means.update(bound_gc=900.0, bound_markov=12.0)
    figure3.print_finals(means)
    text = capsys.readouterr().out
    assert "Vacuous (above 1, so they say nothing about the error): GC bound, CDNV (Markov) bound." in text
    assert "Non-vacuous: directional GC bound, directional (Chebyshev) bound." in text
    figure3.print_finals({m: 2.0 for m, _ in figure3.FINALS})
    assert "All four bounds are vacuous" in capsys.readouterr().out
