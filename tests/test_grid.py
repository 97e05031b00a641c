"""experiments/grid.py: the sweep layout, ``{field: [[config per value] per seed]}``, and back."""
import pytest

from minigcnc.experiments.config import RunConfig
from minigcnc.experiments.grid import by_sweep, flat, sweep_configs

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


def test_sweep_configs_sweeps_any_field_and_by_sweep_lays_histories_out_alike():
    sweeps = sweep_configs(TINY, {"hidden": [(8,), (16,)], "activation": ["relu", "tanh"]}, seeds=[0, 1])
    assert sweeps["activation"][1][1] == TINY.replace(seed=1, activation="tanh")
    assert sweeps["hidden"][0][1] == TINY.replace(seed=0, hidden=(16,))
    configs = flat(sweeps)
    assert len(configs) == 8 and configs[0] == TINY.replace(hidden=(8,))
    assert by_sweep(sweeps, range(8)) == {"hidden": [[0, 1], [2, 3]], "activation": [[4, 5], [6, 7]]}
    with pytest.raises(ValueError, match=r"grid: \['widht'\] are not RunConfig fields; sweepable fields: dataset"):
        sweep_configs(TINY, {"widht": [1, 2]}, seeds=[0])
