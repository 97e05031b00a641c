"""Figure 3 end to end at tiny scale: outputs, claims and checks, cache reuse."""
import json

import pytest

def test_figure3_tiny_writes_png_json_and_claims_then_reuses_the_cache(tmp_path, monkeypatch, capsys):
    from minigcnc import figure3

    out = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    png, js = tmp_path / "figure3_tiny.png", tmp_path / "figure3_tiny.json"
    assert png.stat().st_size > 10_000
    doc = json.loads(js.read_text())
    stats = {c["statistic"] for c in doc["claims"]}
    assert "pearson(bound_gc, ncc_test_error)" in stats
    assert "fraction(bound_markov >= ncc_test_error)" in stats
    assert len(doc["runs"]) == 2 and all(r["status"] == "finished" for r in doc["runs"])
    # the rigorous rho-free bounds really bound the measured error
    for c in doc["claims"]:
        if c["statistic"] in ("fraction(bound_markov >= ncc_test_error)", "fraction(bound_directional >= ncc_test_error)"):
            assert c["value"] == 1.0
    assert "verdict" in capsys.readouterr().out
    import minigcnc.train

    monkeypatch.setattr(minigcnc.train, "fit", lambda *a, **k: pytest.fail("figure3 retrained a cached run"))
    again = figure3.main(["--scale", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert [h["evals"] for h in again["histories"]] == [h["evals"] for h in out["histories"]]
