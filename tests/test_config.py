"""experiments/config.py: what names a run, and the scale presets."""
import pytest

from minigcnc.experiments.config import SCALE_BASES, RunConfig, scale_base, with_options

TINY = RunConfig(dataset="digits", model="mlp", hidden=(16, 8), lr=0.1, batch_size=32, steps=60, eval_every=20,
                 eval_per_class=5)


def test_key_depends_on_what_changes_the_result():
    assert TINY.key() == TINY.replace().key()
    assert TINY.key() != TINY.replace(lr=0.2).key()
    assert TINY.key() != TINY.replace(seed=1).key()


def test_key_ignores_data_root_and_fields_at_their_defaults():
    assert TINY.key() == TINY.replace(data_root="/somewhere").key()
    assert RunConfig().key() == RunConfig(lr=RunConfig().lr).key()
