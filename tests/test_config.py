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


def test_the_activation_names_the_run_and_its_default_keeps_old_keys():
    assert TINY.replace(activation="tanh").key() != TINY.key()
    assert "activation" not in TINY.fields_that_matter()  # relu, the default: keys from before the field stay


def test_check_config_names_the_field_and_what_is_accepted():
    from minigcnc.experiments.config import check_config

    check_config(TINY.replace(activation="identity"))
    with pytest.raises(ValueError, match=r"^model: got 'transformer'; accepted: mlp, convnet, vgg11, vgg13, resnet18$"):
        check_config(TINY.replace(model="transformer"))


def test_one_table_of_scale_presets():
    assert set(SCALE_BASES) == {"tiny", "laptop", "paper"}
    assert scale_base("laptop", steps=7).steps == 7 and SCALE_BASES["laptop"].steps != 7  # a copy, not the table
    with pytest.raises(ValueError, match="scale must be one of tiny, laptop, paper; got 'huge'"):
        scale_base("huge")


def test_numpy_at_paper_scale_computes_in_float64_and_the_gpu_in_float32():
    paper = scale_base("paper")
    assert paper.backend == "cupy" and paper.dtype == "float32"
    assert with_options(paper, "paper", backend="numpy").dtype == "float64"
    assert with_options(scale_base("laptop"), "laptop", backend="numpy").dtype == "float32"  # laptop keeps float32
    assert with_options(paper, "paper", data_root="/d", model="vgg11").replace(data_root=None) == \
        paper.replace(model="vgg11")



def test_one_run_gets_every_field_checked_too():
    from minigcnc.experiments.sweep import check_configs

    check_configs([TINY])
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1; got 0; fix: set batch_size to an "
                                         r"accepted value$"):
        check_configs([TINY.replace(batch_size=0)])
    with pytest.raises(ValueError, match=r"^dataset must be one of .*; got 'imagenet'; fix: give another --dataset$"):
        check_configs([TINY.replace(dataset="imagenet")], options={"dataset": "--dataset"})
