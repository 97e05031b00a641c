"""The one sweep layout every figure uses: ``{field: [[config per value] per seed]}``.

- ``sweep_configs(base, grid, seeds)``: each sweep changes one field (any field of ``RunConfig``) of ``base``;
- ``flat(sweeps)``: every config in a fixed order, the list ``sweep.run_many`` takes;
- ``by_sweep(sweeps, histories)``: ``run_many``'s flat list laid out as ``sweep_configs`` lays the configs.
"""
from .config import RunConfig


def sweep_configs(base, grid, seeds):
    """{field: [[config per value] per seed]}: every sweep changes one field of ``base``; any field works."""
    unknown = [f for f in grid if f not in RunConfig.__dataclass_fields__]
    if unknown:
        raise ValueError(f"grid: {unknown} are not RunConfig fields; sweepable fields: "
                         f"{', '.join(RunConfig.__dataclass_fields__)}")
    return {field: [[base.replace(seed=s, **{field: v}) for v in values] for s in seeds]
            for field, values in grid.items()}


def flat(sweeps):
    """All configs of ``sweeps`` in a fixed order (duplicates share a cache key and train once)."""
    return [c for per_seed in sweeps.values() for cs in per_seed for c in cs]


def by_sweep(sweeps, histories):
    """{field: [[history per value] per seed]} matching ``sweep_configs``, from ``run_many``'s flat list."""
    it = iter(histories)
    return {field: [[next(it) for _ in cs] for cs in per_seed] for field, per_seed in sweeps.items()}
