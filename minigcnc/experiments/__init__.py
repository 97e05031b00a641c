"""The experiment engine: configs, data preparation, measurement, cache, sweeps, command line, claims, plots."""
