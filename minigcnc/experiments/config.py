"""What one run is: ``RunConfig``, the checks of its fields, and the one table of scale presets every figure
starts from.

- ``RunConfig``: every field that changes a run's result (data, model, optimizer, evaluation, seed, floats,
  backend); ``key()`` hashes them (with the code, see ``cache.py``) to name the run in the cache.
- ``SCALE_BASES``: the base run at each scale -- ``tiny`` (scikit-learn 8x8 digits, seconds: the tests),
  ``laptop`` (the embedded mnist5k, minutes on 2 cores: the default) and ``paper`` (the paper's VGG-13 on
  CIFAR-10, on a GPU). A figure starts from ``scale_base(scale)`` and changes the few fields it needs, in
  plain sight in its own module.
- ``check_config(config)``: every field checked in one place (``field_checks``: model, activation, data,
  optimizer, evaluation, floats, backend), a ValueError naming the field, the bad value and what is accepted.
  ``check_configs(configs, options)`` checks every run of a sweep before any trains (``sweep.run_many`` calls it)
  and adds the fix to the message: which run, or which command-line option.
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
    """Raise a ValueError naming the field, the bad value and what is accepted when a field of ``config`` is wrong.

    Every field but ``data_root`` is checked, in this one place (``field_checks``), so that a run that cannot be
    built or trained stops before anything trains."""
    bad = _first_bad_field(config)
    if bad:
        raise ValueError(str(bad[1])) from None  # (a TypeError of ``checks`` too: one kind of error)


def _first_bad_field(config):
    """(field, the error its check raised) of the first field of ``config`` that fails ``field_checks``, or None."""
    for field, check in field_checks(config):
        try:
            check(getattr(config, field))
        except (TypeError, ValueError) as e:
            return field, e
    return None


def check_configs(configs, options=None):
    """Check every field of every config before any run trains; a bad one raises one ValueError.

    The message names the field, the bad value, what is accepted and the fix (``options``: {field: the
    command-line option that set it}, named in the fix). ``sweep.run_many`` and ``cli.run_sweep`` call it.
    """
    configs = list(configs)
    for i, c in enumerate(configs):
        bad = _first_bad_field(c)
        if bad:
            field, e = bad
            raise ValueError(f"{e}{_fix_of(field, i, configs, options)}") from None


def _fix_of(field, i, configs, options):
    """The end of ``check_configs``'s message: which run, and where to change the value."""
    if options and field in options:
        return f"; fix: give another {options[field]}"
    value, n = getattr(configs[i], field), len(configs)
    if n == 1:
        return f"; fix: set {field} to an accepted value"
    if all(getattr(c, field) == value for c in configs):
        return f"; fix: set {field} to an accepted value (all {n} runs have this one)"
    return f"; fix: set {field} to an accepted value in run {i + 1} of {n} (seed {configs[i].seed}) of the sweep"


SHARP_EXTRAS = ("moment_bounds", "moment_bounds_gc")  # the extras that solve the sharp bound's SDPs
SHARP_MAX_CLASSES = 20  # the most classes they are run on (each class: an SDP of k - 1 PSD blocks of size <= k)


def _n_classes(dataset, target=False):
    """How many classes ``dataset`` has (``target``: as a pool of target classes), without loading it."""
    from .. import data

    if dataset.endswith(data.ROTATED_SUFFIX):
        return data.N_ROTATIONS * _n_classes(dataset[: -len(data.ROTATED_SUFFIX)])
    if dataset == "cifarfs":  # its 64 train classes are the source; its 20 test classes the target pool
        return len(data.CIFARFS_TEST) if target else len(data.cifarfs_class_names("train"))
    return 100 if dataset == "cifar100" else 10


def field_checks(config):
    """(field, check) for every field of ``config`` but ``data_root`` (a folder, looked at when the data loads).

    Each check raises a ValueError or TypeError saying what is accepted: the checkers of ``minigcnc.checks``,
    with the bounds ``train.fit`` uses too. Model and activation come first: what the run is built from.
    """
    from numbers import Integral

    from .. import checks, data
    from ..backend import backend_module
    from ..gc import PENALTY_METHODS
    from .measure import EXTRAS

    def model(v):
        if v not in MODELS:
            raise ValueError(f"model: got {v!r}; accepted: {', '.join(MODELS)}")

    def activation(v):
        if v not in ACTIVATIONS:
            raise ValueError(f"activation: got {v!r}; accepted: {', '.join(ACTIVATIONS)}")
        if v != "relu" and config.model not in ("mlp", "convnet"):
            raise ValueError(f"activation: {config.model} is built with ReLU only; activation={v!r} works with "
                             "model 'mlp' or 'convnet'")

    def dataset(v):
        checks.one_of("dataset", v, data.DATASETS)
        if v in data.SYNTHETIC and config.model != "mlp":
            raise ValueError(f"dataset: {v!r} holds vectors (N, 1, 1, D), not images, so model={config.model!r} "
                             "(convolutions over an image) cannot take it; use model='mlp'")

    def sequence(name, v):
        if not isinstance(v, (tuple, list)):
            raise TypeError(f"{name} must be a tuple; got {type(v).__name__} {v!r}")
        return v

    def backend(v):
        """numpy, cupy (CuPy itself is loaded, and checked, when the backends load) or a device backend
        registered with ``backend.register_device`` (``backend_module`` names them all when ``v`` is unknown)."""
        if v in ("numpy", "cupy"):
            return
        if not isinstance(v, str) or v != v.lower():
            checks.one_of("backend", v, ("numpy", "cupy"))
        backend_module(v)

    def sizes(name):
        return lambda v: [checks.integer(f"{name}[{i}]", x, minimum=1) for i, x in enumerate(sequence(name, v))]

    def labels(name, dataset, target=False):
        n = _n_classes(dataset, target)

        def check(v):
            ints = all(isinstance(c, Integral) and not isinstance(c, bool) and 0 <= c < n for c in sequence(name, v))
            if not ints or len(v) == 1 or len(set(v)) < len(v):
                raise ValueError(f"{name} must be empty (every class) or 2 or more distinct labels among the {n} "
                                 f"{'target ' if target else ''}classes of {dataset} (0..{n - 1}); got {v!r}")
        return check

    def extras(v):
        for x in sequence("extras", v):
            checks.one_of("extras", x, tuple(EXTRAS))
        k = len(config.classes) if config.classes else (_n_classes(config.dataset) if known else 0)
        sharp = [x for x in v if x in SHARP_EXTRAS]
        if sharp and k > SHARP_MAX_CLASSES:
            raise ValueError(f"extras {sharp} solve k - 1 semidefinite blocks per class, too slow for the {k} "
                             f"classes of {config.dataset} (at most {SHARP_MAX_CLASSES}); leave them out, or pass "
                             f"classes= (at most {SHARP_MAX_CLASSES} labels)")

    known = config.dataset in data.DATASETS and config.target_dataset in ("",) + data.DATASETS
    target = config.target_dataset or config.dataset
    return [
        ("model", model),
        ("activation", activation),
        ("dataset", dataset),
        ("target_dataset", lambda v: checks.one_of("target_dataset", v, ("",) + data.DATASETS)),
        ("hidden", sizes("hidden")),
        ("channels", sizes("channels")),
        ("width", lambda v: checks.number("width", v, 0.0, low_open=True)),
        ("classes", labels("classes", config.dataset) if known else lambda v: None),
        ("target_classes", labels("target_classes", target, target=True) if known else lambda v: None),
        ("lr", lambda v: checks.number("lr", v, 0.0, low_open=True)),
        ("batch_size", lambda v: checks.integer("batch_size", v, minimum=1)),
        ("steps", lambda v: checks.integer("steps", v, minimum=1)),
        ("l2", lambda v: checks.number("l2", v, 0.0)),
        ("gc_reg", lambda v: checks.number("gc_reg", v, 0.0)),
        ("gc_reg_method", lambda v: checks.one_of("gc_reg_method", v, PENALTY_METHODS)),
        ("momentum", lambda v: checks.number("momentum", v, 0.0, high=1.0)),
        ("eval_every", lambda v: checks.integer("eval_every", v, minimum=1)),
        ("eval_per_class", lambda v: checks.integer("eval_per_class", v, minimum=1)),
        ("fewshot_episodes", lambda v: checks.integer("fewshot_episodes", v, minimum=0)),
        ("fewshot_probe", lambda v: checks.one_of("fewshot_probe", v, (False, True))),
        ("extras", extras),
        ("seed", lambda v: checks.integer("seed", v, minimum=0)),
        ("dtype", lambda v: checks.one_of("dtype", v, ("float32", "float64"))),
        ("backend", backend),
    ]


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
