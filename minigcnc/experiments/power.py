"""The power of a tracking design: can these configs, seeds and checkpoints see a bound that tracks the error?

A design is curves ``x[c, s, t]`` (config c, seed s, checkpoint t). ``variance_parts`` splits them into a
shared trend ``m(t)`` (the mean over configs and seeds), the config effects ``d_c(t)`` (each config's mean over
seeds minus the trend) and the seed noise (what is left); ``signal_to_noise`` is the spread of the config
effects' *shape over training* (each curve's own mean over checkpoints removed, as a correlation over
checkpoints removes it) over the spread of the noise's shape.

``tracking_power(error, control, claim)`` simulates the design many times from the measured parts of the error
curves: the observed error is ``m + d_c + noise`` (noise at the measured level); a *tracker* follows the true
config curve ``m + d_c`` with its own noise at the signal-to-noise ratio the positive control shows; an
*independent* curve has the same trend and config spread but config effects unrelated to the error's (a random
rotation of the config effects in the space orthogonal to their mean). ``claim(tracker, error)`` is the
figure's own test (a ``Claim``); the power is the fraction of draws where it ``holds`` for the tracker, the
false-"holds" rate the fraction for independent curves.
"""
import numpy as onp


def variance_parts(x):
    """``(trend (T,), config_effects (C, T), noise_sd, signal_sd)`` of curves ``x`` (C, S, T), S >= 2 seeds.

    ``noise_sd``: the pooled standard deviation of ``x - trend - effect`` with S - 1 degrees of freedom per
    config and checkpoint; ``signal_sd``: the standard deviation of the config effects with the noise's share
    removed (``var(d) - noise^2 / S``, floored at 0).
    """
    x = onp.asarray(x, dtype=float)
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2 or x.shape[2] < 3:
        raise ValueError(f"x must be curves of shape (configs >= 2, seeds >= 2, checkpoints >= 3); got {x.shape}")
    C, S, T = x.shape
    trend = x.mean(axis=(0, 1))
    effects = x.mean(axis=1) - trend
    resid = x - trend - effects[:, None, :]
    noise_sd = float(onp.sqrt(onp.sum(resid ** 2) / (C * (S - 1) * T)))
    signal_sd = float(onp.sqrt(max(float(onp.mean(effects ** 2)) - noise_sd ** 2 / S, 0.0)))
    return trend, effects, noise_sd, signal_sd


def shape_over_training(x):
    """Each curve with its own mean over checkpoints removed (what a correlation over checkpoints sees)."""
    x = onp.asarray(x, dtype=float)
    return x - x.mean(axis=-1, keepdims=True)


def signal_to_noise(x):
    """The spread of the config effects' shape over training divided by the seed noise's (``variance_parts`` of
    ``shape_over_training(x)``); inf when there is no noise."""
    _, _, noise, signal = variance_parts(shape_over_training(x))
    return signal / noise if noise > 0 else float("inf")


def unrelated_effects(effects, rng):
    """Config effects with the same total size as ``effects`` (C, T) but unrelated to them: a uniformly random
    rotation in the (C - 1)-dimensional space of effects that sum to zero over configs."""
    C = effects.shape[0]
    Q, R = onp.linalg.qr(rng.standard_normal((C, C)))
    Q = Q * onp.sign(onp.diag(R))  # Haar-distributed
    P = onp.eye(C) - 1.0 / C
    out = P @ Q @ P @ effects
    norm = onp.linalg.norm(out)
    return out * (onp.linalg.norm(effects) / norm if norm > 0 else 0.0)


def simulate(error, control_snr, rng, tracker=True):
    """One simulated design: (bound curves, error curves), both (C, S, T), from the measured parts of ``error``.

    The bound follows the true config curves (``tracker=True``) or unrelated config effects (``False``), with
    noise chosen so its shape signal-to-noise equals ``control_snr``."""
    trend, effects, noise_sd, _ = variance_parts(error)
    _, shape_effects, _, shape_signal = variance_parts(shape_over_training(error))
    obs = trend + effects[:, None, :] + noise_sd * rng.standard_normal(error.shape)
    fx = effects if tracker else unrelated_effects(effects, rng)
    bound_noise = shape_signal / control_snr if control_snr > 0 else 10 * noise_sd
    bound = trend + fx[:, None, :] + bound_noise * rng.standard_normal(error.shape)
    return bound, obs


def tracking_power(error, control, claim, n_draws=200, seed=0):
    """``(power, false_holds)``: the fraction of ``n_draws`` simulated designs where ``claim(bound, error)`` holds
    for a tracker at the signal-to-noise of ``control`` (C, S, T), and for unrelated curves (module docstring).

    ``error``, ``control``: curves (C, S, T) of the real design; ``claim(a, b) -> Claim`` judged alone (its
    verdict on p). Returns also the control's signal-to-noise as a third value."""
    error, control = onp.asarray(error, dtype=float), onp.asarray(control, dtype=float)
    if error.shape != control.shape:
        raise ValueError(f"error and control must have the same shape (C, S, T); got {error.shape} and {control.shape}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be a positive number of simulated designs; got {n_draws}")
    snr = signal_to_noise(control)
    rng = onp.random.default_rng(seed)
    hits = {True: 0, False: 0}
    for _ in range(n_draws):
        for tracker in (True, False):
            bound, obs = simulate(error, snr, rng, tracker)
            hits[tracker] += claim(bound, obs).verdict == "holds"
    return hits[True] / n_draws, hits[False] / n_draws, snr
