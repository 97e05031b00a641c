"""experiments/config.py: what names a run, the scale presets, and every field of every run checked before any
trains."""
import pytest

from minigcnc.experiments.config import (SCALE_BASES, RunConfig, check_config, check_configs, field_checks, scale_base,
                                         with_options)

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
    check_config(TINY.replace(activation="identity"))
    with pytest.raises(ValueError, match=r"^model: got 'transformer'; accepted: mlp, convnet, vgg11, vgg13, resnet18$"):
        check_config(TINY.replace(model="transformer"))
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1; got 0$"):  # every field, in one place
        check_config(TINY.replace(batch_size=0))
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0; got str '0.1'$"):  # (a TypeError of checks)
        check_config(TINY.replace(lr="0.1"))


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
    check_configs([TINY])
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1; got 0; fix: set batch_size to an "
                                         r"accepted value$"):
        check_configs([TINY.replace(batch_size=0)])
    with pytest.raises(ValueError, match=r"^dataset must be one of .*; got 'imagenet'; fix: give another --dataset$"):
        check_configs([TINY.replace(dataset="imagenet")], options={"dataset": "--dataset"})


BAD_FIELDS = [
    ("lr", 0.0, "lr must be a finite number > 0; got 0.0"),
    ("lr", "0.1", "lr must be a finite number > 0; got str '0.1'"),  # (a TypeError of checks, as a ValueError)
    ("batch_size", 0, "batch_size must be an integer >= 1; got 0"),
    ("steps", 0, "steps must be an integer >= 1; got 0"),
    ("l2", -1e-4, "l2 must be a finite number >= 0; got -0.0001"),
    ("momentum", 1.0, "momentum must be a finite number >= 0 and < 1; got 1.0"),
    ("gc_reg_method", "fast", "gc_reg_method must be one of 'exact', 'hutchinson'; got 'fast'"),
    ("hidden", (16, 0), "hidden[1] must be an integer >= 1; got 0"),
    ("classes", (3, 10), "classes must be empty (every class) or 2 or more distinct labels among the 10 classes of "
                         "digits (0..9); got (3, 10)"),
    ("classes", (4,), "classes must be empty (every class) or 2 or more distinct labels"),
    ("target_dataset", "imagenet", "target_dataset must be one of '', 'mnist5k'"),
    ("extras", ("nope",), "extras must be one of 'gc_estimators', 'moment_bounds'"),  # then the other extras
    ("dtype", "float16", "dtype must be one of 'float32', 'float64'; got 'float16'"),
    ("model", "transformer", "model: got 'transformer'; accepted: mlp, convnet"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_check_configs_names_the_field_the_value_what_is_accepted_and_the_fix(field, value, message):
    with pytest.raises(ValueError) as bad:
        check_configs([TINY, TINY.replace(**{field: value})])
    assert str(bad.value).startswith(message)
    assert str(bad.value).endswith(f"; fix: set {field} to an accepted value in run 2 of 2 (seed 0) of the sweep")


def test_check_configs_knows_the_classes_of_each_dataset_and_every_figures_runs_pass():
    import importlib

    rot = TINY.replace(dataset="mnist5k_rot", classes=tuple(range(20)), target_classes=tuple(range(20, 40)))
    cifarfs = TINY.replace(dataset="cifarfs", target_classes=tuple(range(20)))
    check_configs([rot, cifarfs, TINY.replace(target_dataset="cifarfs", target_classes=(0, 19))])
    with pytest.raises(ValueError, match=r"among the 20 target classes of cifarfs \(0..19\); got \(0, 20\)"):
        check_configs([cifarfs.replace(target_classes=(0, 20))])
    with pytest.raises(ValueError, match=r"among the 40 classes of mnist5k_rot"):
        check_configs([rot.replace(classes=(0, 40))])
    for name in ("figure1", "figure2", "figure3", "figure4", "figure_gc_regularization", "figure_mnist"):
        for scale in ("tiny", "laptop", "paper"):
            check_configs(importlib.import_module(f"minigcnc.{name}").configs(scale))


def test_check_configs_checks_every_field():
    checked = [field for field, _ in field_checks(TINY)]
    assert checked[:2] == ["model", "activation"] and len(set(checked)) == len(checked)
    assert set(RunConfig.__dataclass_fields__) - set(checked) == {"data_root"}  # a folder, looked at when data loads


@pytest.mark.parametrize("model", ["convnet", "vgg11", "resnet18"])
def test_a_non_mlp_model_on_the_gaussian_vectors_is_refused_naming_the_dataset_and_the_fix(model):
    with pytest.raises(ValueError, match=r"dataset: 'gaussians' holds vectors .*use model='mlp'"):
        check_configs([TINY.replace(dataset="gaussians", model=model)])
    check_configs([TINY.replace(dataset="gaussians", model="mlp")])


def test_the_sharp_bound_extras_are_refused_on_a_hundred_classes_before_any_work():
    from minigcnc.experiments.config import check_config, scale_base

    with pytest.raises(ValueError, match=r"too slow for the 100 classes of cifar100 .* pass classes="):
        check_config(scale_base("laptop", dataset="cifar100", extras=("moment_bounds",)))
    check_config(scale_base("laptop", dataset="cifar100", extras=("moment_bounds",), classes=tuple(range(10))))
    check_config(scale_base("laptop", dataset="cifar100", extras=("flatness",)))
