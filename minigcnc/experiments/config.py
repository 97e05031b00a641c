"""What one run is: ``RunConfig``, and the one table of scale presets every figure starts from.

- ``RunConfig``: every field that changes a run's result (data, model, optimizer, evaluation, seed, floats,
  backend); ``key()`` hashes them (with the code, see ``cache.py``) to name the run in the cache.
- ``SCALE_BASES``: the base run at each scale -- ``tiny`` (scikit-learn 8x8 digits, seconds: the tests),
  ``laptop`` (the embedded mnist5k, minutes on 2 cores: the default) and ``paper`` (the paper's VGG-13 on
  CIFAR-10, on a GPU). A figure starts from ``scale_base(scale)`` and changes the few fields it needs, in
  plain sight in its own module.
- ``check_config(config)``: a ValueError naming the field and the accepted values (model, activation) when a
  run cannot be built. ``sweep.check_configs(configs)`` checks these and every other field of every run before
  a sweep trains any (it lives there because this module is part of the code hash: a new check here would
  make every cached run look like a run of other code).
- ``with_options(base, scale, ...)``: the command line's choices applied to a base run, including the
  one rule "NumPy at paper scale computes in float64".
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..layers import ACTIVATIONS  # noqa: F401 - the activations a layer accepts by name (relu, tanh, identity)

SCHEMA = 2  # bump when the recorded metrics change meaning, so old cached runs are not reused
SCALES = ("tiny", "laptop", "paper")
MODELS = ("mlp", "convnet", "vgg11", "vgg13", "resnet18")


@dataclass
class RunConfig:
    """One training run. ``hidden``/``channels``/``width``/``activation`` shape the model (``models.build``)."""

    dataset: str = "mnist5k"
    model: str = "mlp"
    hidden: tuple = (256, 256, 64)
    channels: tuple = ()
    width: float = 1.0
    activation: str = "relu"
    classes: tuple = ()  # source classes (empty: all)
    target_classes: tuple = ()  # unseen classes for transfer metrics (empty: none, or all of target_dataset)
    target_dataset: str = ""  # dataset of the target classes (empty: the source dataset; "cifarfs": its test classes)
    lr: float = 0.05
    batch_size: int = 128
    steps: int = 3000
    l2: float = 0.0
    gc_reg: float = 0.0
    gc_reg_method: str = "exact"
    momentum: float = 0.0
    eval_every: int = 250
    eval_per_class: int = 50
    fewshot_episodes: int = 0
    fewshot_probe: bool = False  # also a logistic-regression probe per few-shot episode (measure: fewshot5_logreg)
    extras: tuple = ()  # names of extra metric groups (measure.register_extra), e.g. ("gc_estimators",)
    seed: int = 0
    dtype: str = "float64"
    backend: str = "numpy"
    data_root: str = None  # where local dataset files live; not part of the hash

    def fields_that_matter(self):
        """The fields that change the result, as a JSON-able dict: those not at their default, but never
        ``data_root``, nor ``gc_reg_method`` without a penalty; leaving defaults out keeps the keys of old runs
        when a field is added."""
        defaults = RunConfig()
        same = lambda a, b: json.dumps(a, default=list) == json.dumps(b, default=list)  # noqa: E731
        ignored = {"data_root"} | ({"gc_reg_method"} if not self.gc_reg else set())
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ignored and not same(v, getattr(defaults, k))}

    def key(self, code=""):
        """A short hash of everything that changes the result: the fields that matter, the schema and ``code``
        (a hash of the source that computes the run, given by ``cache.code_hash``)."""
        d = {**self.fields_that_matter(), "schema": SCHEMA}
        if code:
            d["code"] = code
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:16]

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


SCALE_BASES = {
    # seconds: scikit-learn's 8x8 digits and a small MLP, for the tests
    "tiny": RunConfig(dataset="digits", model="mlp", hidden=(32, 16), lr=0.1, batch_size=32, steps=200, eval_every=50,
                      eval_per_class=10),
    # minutes on 2 cores: the embedded mnist5k (400 train / 100 test images per digit), MLP 784-256-256-64
    "laptop": RunConfig(dataset="mnist5k", model="mlp", hidden=(256, 256, 64), lr=0.05, batch_size=128, steps=2000,
                        eval_every=250, eval_per_class=50, dtype="float32"),
    # the paper's network and data, on a GPU
    "paper": RunConfig(dataset="cifar10", model="vgg13", lr=0.02, batch_size=256, steps=20000, eval_every=1000,
                       eval_per_class=20, dtype="float32", backend="cupy"),
}


def scale_base(scale, **changes):
    """The base run of ``scale`` (``SCALE_BASES``) with ``changes``."""
    if scale not in SCALE_BASES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return SCALE_BASES[scale].replace(**changes)


def check_config(config):
    """Raise a ValueError naming the field and what is accepted when ``config`` cannot be built (model,
    activation), so that a sweep stops before anything trains; ``sweep.check_configs`` adds every other field."""
    if config.model not in MODELS:
        raise ValueError(f"model: got {config.model!r}; accepted: {', '.join(MODELS)}")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation: got {config.activation!r}; accepted: {', '.join(ACTIVATIONS)}")
    if config.activation != "relu" and config.model not in ("mlp", "convnet"):
        raise ValueError(f"activation: {config.model} is built with ReLU only; activation={config.activation!r} "
                         "works with model 'mlp' or 'convnet'")


def with_options(base, scale, backend=None, data_root=None, dataset=None, model=None):
    """``base`` with the command line's choices: data root, backend, and a dataset or model in place of the
    scale's. NumPy at paper scale computes in float64 (float32 is the GPU's choice, for speed)."""
    base = base.replace(data_root=data_root, **({"backend": backend} if backend else {}))
    if backend == "numpy" and scale == "paper":
        base = base.replace(dtype="float64")
    if dataset:
        base = base.replace(dataset=dataset)
    if model:
        base = base.replace(model=model)
    return base
