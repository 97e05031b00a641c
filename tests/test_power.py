"""experiments/power.py: the parts of a design's curves, unrelated config effects, and the power of Figure 3's
tracking test measured on the committed Figure 3 runs (trend, config spread and noise as they are)."""
import json
from pathlib import Path

import numpy as np
import pytest

from minigcnc import figure3
from minigcnc.experiments import claims as C
from minigcnc.experiments import power

FIGURE3_JSON = Path(__file__).resolve().parents[1] / "figures" / "figure3.json"


def test_variance_parts_recover_a_known_trend_config_spread_and_noise():
    rng = np.random.default_rng(0)
    C_, S, T = 40, 6, 12
    trend = np.linspace(1, 0.2, T)
    effects = 0.3 * rng.standard_normal((C_, T))
    x = trend + effects[:, None, :] + 0.1 * rng.standard_normal((C_, S, T))
    m, d, noise, signal = power.variance_parts(x)
    assert noise == pytest.approx(0.1, rel=0.05)
    assert signal == pytest.approx(0.3, rel=0.1)
    np.testing.assert_allclose(m, trend + effects.mean(0), atol=0.03)
    with pytest.raises(ValueError, match="configs >= 2, seeds >= 2"):
        power.variance_parts(x[:, :1])


def test_unrelated_effects_keep_size_and_zero_sum_and_forget_the_configs():
    rng = np.random.default_rng(1)
    effects = rng.standard_normal((9, 8))
    effects -= effects.mean(0)
    corr = []
    for _ in range(300):
        u = power.unrelated_effects(effects, rng)
        assert np.linalg.norm(u) == pytest.approx(np.linalg.norm(effects))
        np.testing.assert_allclose(u.sum(0), 0, atol=1e-10)
        corr.append(np.sum(u * effects) / np.linalg.norm(effects) ** 2)
    assert abs(np.mean(corr)) < 0.05  # unrelated on average


def _digits_curves(doc, metric):
    runs = doc["runs"]["digits"]
    n_cfg = max(r["config"] for r in runs) + 1
    by = [[r for r in runs if r["config"] == c] for c in range(n_cfg)]
    if metric == "head_test_error":
        return np.array([[1 - np.asarray(r["test_acc"][1:], float) for r in rs] for rs in by])
    return np.array([[np.asarray(r[metric][1:], float) for r in rs] for rs in by])


def test_figure3s_design_sees_a_tracker_at_the_controls_strength_and_not_independent_curves():
    """The issue's power requirement, on the committed runs' own trend, config spread and noise: a tracker with the
    positive control's signal-to-noise holds in at least 80% of simulated designs, unrelated curves in at most 5%."""
    doc = json.loads(FIGURE3_JSON.read_text())
    err, ctl = _digits_curves(doc, figure3.ERROR), _digits_curves(doc, "head_test_error")
    assert err.shape[0] >= 5 and err.shape[1] >= 3  # configs x seeds x checkpoints

    def claim(a, b):
        return C.config_tracking_claim("t", "power", figure3.without_shared_trend(a), figure3.without_shared_trend(b),
                                       "a", "b", n_perm=999)

    p, null, snr = power.tracking_power(err, ctl, claim, n_draws=100, seed=1)
    assert p >= 0.8, (p, snr)
    assert null <= 0.05, null
